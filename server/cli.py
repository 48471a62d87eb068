"""bitcask-server's entry point: parse the config, run the Server on uvloop, exit.

Exit codes:
    0  stopped cleanly (SIGTERM/SIGINT, everything drained, store closed)
    1  shutdown ran out of its budget, or an unexpected error
    2  bad flags or BITCASK_* environment values
    3  the store could not be opened (locked by another process, unreadable, ...)
    4  a port could not be bound
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

from .app import Server
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
    try:
        await server.start()
    except ConfigError as exc:
        log.error("bad configuration: %s", exc)
        return EXIT_CONFIG
    except bitcask.StoreLockedError as exc:
        log.error("cannot open %s: %s (held by pid %s)", config.data, exc, getattr(exc, "pid", "?"))
        return EXIT_STORE
    except bitcask.BitcaskError as exc:
        log.error("cannot open %s: %s", config.data, exc)
        return EXIT_STORE
    except OSError as exc:
        log.error("cannot listen on %s: %s", config.host, exc)
        return EXIT_BIND
    stats = server.db.stats()
    log.info(
        "bitcask-server listening binary=%s:%d http=%s:%d data=%s sync=%s writer=%s keys=%d recovery=%s",
        config.host,
        server.port,
        config.host,
        server.http_port,
        config.data,
        config.sync,
        server.writer.mode if server.writer else "-",
        stats.get("keys", len(server.db)),
        json.dumps(stats.get("recovery"), sort_keys=True, default=str),
    )
    loop = asyncio.get_running_loop()
    stop_requested = asyncio.Event()

    def on_signal(signame: str) -> None:
        if stop_requested.is_set():
            log.error("second %s: exiting now", signame)
            os._exit(EXIT_FAILED)
        log.info("%s received", signame)
        stop_requested.set()

    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, on_signal, sig.name)
    await stop_requested.wait()
    watchdog = threading.Timer(config.shutdown_timeout + FORCE_GRACE, _force_exit)
    watchdog.daemon = True
    watchdog.start()
    try:
        clean = await server.stop()
    except Exception:
        log.exception("shutdown failed")
        return EXIT_FAILED
    finally:
        watchdog.cancel()
    return EXIT_OK if clean else EXIT_FAILED


def _force_exit() -> None:
    log.error("shutdown exceeded its budget: forcing exit")
    logging.shutdown()
    os._exit(EXIT_FAILED)
