"""bitcask-server's entry point: parse the config, run the Server on uvloop, exit.

Exit codes:
    0  stopped cleanly (SIGTERM/SIGINT, everything drained, store closed)
    1  shutdown ran out of its budget, or an unexpected error
    2  bad flags or BITCASK_* environment values
    3  the store could not be opened (locked by another process, not a directory,
       unwritable, ...)
    4  a port could not be bound

Signals: SIGHUP is logged and ignored. SIGTERM first drains (--drain-seconds: /readyz answers 503 while everything
is still served), then stops gracefully; SIGINT (Ctrl-C) skips the drain. A second
signal during the drain ends it; one during the graceful stop, or during start-up (a
large store still being opened), exits at once (1).
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import signal
import sys
import threading
from collections.abc import Sequence

import uvloop

import bitcask
from protocol.address import host_port

from .app import FD_RESERVE, Server, StoreOpenError
from .config import ConfigError, ServerConfig

__all__ = ["main"]

log = logging.getLogger("bitcask.server")

EXIT_OK, EXIT_FAILED, EXIT_CONFIG, EXIT_STORE, EXIT_BIND = 0, 1, 2, 3, 4
# Past the graceful budget, a watchdog thread ends the process even if the loop is stuck.
FORCE_GRACE = 5.0


def main(argv: Sequence[str] | None = None) -> int:
    """Run bitcask-server until SIGTERM/SIGINT.

    Args:
        argv: arguments after the program name (default: sys.argv[1:]).

    Returns:
        The process exit code (see the module docstring); the console script exits with it.

    Example:
        $ bitcask-server --data ./data --port 7379 --http-port 7380 --sync always
    """
    try:
        config = ServerConfig.from_args(argv)
    except ConfigError as exc:
        print(f"bitcask-server: {exc}", file=sys.stderr)
        return EXIT_CONFIG
    logging.basicConfig(
        level=config.log_level.upper(),
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )
    return uvloop.run(_serve(config))


async def _serve(config: ServerConfig) -> int:
    server = Server(config)
    # The handlers go in before the ports open: a SIGTERM/SIGINT that arrives as soon as
    # a client (a probe, a test) can connect must still stop the server cleanly, not
    # find Python's default handler (killed by SIGTERM; KeyboardInterrupt for SIGINT).
    # A signal during start-up is acted on once the server has started.
    loop = asyncio.get_running_loop()
    stop_requested = asyncio.Event()
    drain = 0.0
    starting = True  # the store is being opened: there is no drain to cut yet

    def on_signal(sig: signal.Signals) -> None:
        nonlocal drain
        if stop_requested.is_set():
            if starting:
                log.error("second %s during start-up: exiting now", sig.name)
                os._exit(EXIT_FAILED)
            if server.cut_drain():
                log.info("second %s: drain ended, stopping now", sig.name)
                return
            log.error("second %s: exiting now", sig.name)
            os._exit(EXIT_FAILED)
        log.info("%s received", sig.name)
        drain = config.drain_seconds if sig == signal.SIGTERM else 0.0
        stop_requested.set()

    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, on_signal, sig)
    # SIGHUP's default ends the process on the spot (no drain, no hints, in-flight
    # requests cut): a closed terminal or a logrotate `kill -HUP` must not do that.
    # Logs go to stderr, so there is nothing to reopen; ignored, as Redis does.
    loop.add_signal_handler(signal.SIGHUP, log.info, "SIGHUP ignored (SIGTERM stops the server)")
    try:
        await server.start()
    except ConfigError as exc:
        log.error("bad configuration: %s", exc)
        return EXIT_CONFIG
    except StoreOpenError as exc:
        log.error("%s", exc)
        return EXIT_STORE
    except bitcask.BitcaskError as exc:  # StoreLockedError's message names the holder's pid
        log.error("cannot open the store at %s: %s", config.data, exc)
        return EXIT_STORE
    except OSError as exc:
        log.error("cannot listen on %s: %s", config.host, exc)
        return EXIT_BIND
    starting = False
    stats = server.db.stats()
    log.info(
        "bitcask-server listening binary=%s http=%s data=%s sync=%s writer=%s keys=%d recovery=%s",
        host_port(config.host, server.port),
        host_port(config.host, server.http_port),
        config.data,
        config.sync,
        server.writer.mode if server.writer else "-",
        stats.get("keys", len(server.db)),
        json.dumps(stats.get("recovery"), sort_keys=True, default=str),
    )
    if server.fd_limit is not None:
        before, after = server.fd_limit
        log.info(
            "descriptors: limit %d%s, max-connections %d, %d kept for the store",
            after,
            f" (raised from {before})" if after != before else "",
            server.max_connections,
            FD_RESERVE,
        )
    recovery = stats.get("recovery") or {}
    if recovery.get("corrupt_records") or recovery.get("skipped_bytes"):
        # damage inside the files (docs/operations.md, after a crash, step 2): at INFO
        # only, a --log-level warning journal never showed it
        log.warning(
            "the store holds damage: %d corrupt records, %d bytes not loaded (%s); "
            "run bitcask check %s",
            recovery.get("corrupt_records", 0),
            recovery.get("skipped_bytes", 0),
            _first(recovery.get("events", ()), 5),
            config.data,
        )
    if server.readonly_reason() is not None:
        log.warning("serving reads only: %s", server.readonly_reason())
    await stop_requested.wait()
    watchdog = threading.Timer(drain + config.shutdown_timeout + FORCE_GRACE, _force_exit)
    watchdog.daemon = True
    watchdog.start()
    try:
        clean = await server.stop(drain=drain)
    except Exception:
        log.exception("shutdown failed")
        return EXIT_FAILED
    finally:
        watchdog.cancel()
    return EXIT_OK if clean else EXIT_FAILED


def _first(events: Sequence[object], n: int) -> str:
    """The first n events, then how many more (a log line stays one screen long)."""
    shown = "; ".join(map(str, events[:n]))
    return shown + (f"; {len(events) - n} more in /stats" if len(events) > n else "")


def _force_exit() -> None:
    log.error("shutdown exceeded its budget: forcing exit")
    logging.shutdown()
    os._exit(EXIT_FAILED)
