"""bitcask-server's entry point: parse the config, run the Server on uvloop, exit.

Exit codes:
    0  stopped cleanly (SIGTERM/SIGINT, everything drained, store closed)
    1  shutdown ran out of its budget, or an unexpected error
    2  bad flags or BITCASK_* environment values
    3  the store could not be opened (locked by another process, not a directory,
       unwritable, ...)
    4  a port could not be bound

Signals: SIGHUP is logged and ignored, and so are SIGUSR1, SIGUSR2 and the other
signals whose default would end the process without a word (IGNORED_SIGNALS).
SIGTERM first drains (--drain-seconds: /readyz answers 503 while everything
is still served), then stops gracefully; SIGINT (Ctrl-C) and SIGQUIT (Ctrl-\\) skip the
drain, as does a SIGTERM that arrives during start-up (a large store still being opened:
nothing was routed to a server that never listened). A second signal during the drain
ends it; one during the graceful stop, or during start-up, exits at once (1).

Run as PID 1 (a container without an init), the process also reaps the orphans the
kernel hands it (a `kubectl exec` shell's background children), and it answers the
same signals the same way: the kernel drops a signal PID 1 has no handler for.
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import json
import logging
import os
import signal
import socket
import stat
import sys
import threading
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TextIO

import uvloop

import bitcask
from protocol.address import host_port

from ._flags import ENV_PREFIX, build_parser, unknown_variables
from ._outcome import loop_exception_handler
from .app import FD_RESERVE, ListenError, Server, StoreOpenError
from .config import ConfigError, ServerConfig

__all__ = ["main"]

log = logging.getLogger("bitcask.server")

EXIT_OK, EXIT_FAILED, EXIT_CONFIG, EXIT_STORE, EXIT_BIND = 0, 1, 2, 3, 4
# Past the graceful budget, a watchdog thread ends the process even if the loop is stuck.
FORCE_GRACE = 5.0
# Signals whose default action ends the process without a word, which the server
# ignores with a log line (SIGHUP too, at INFO: logrotate sends it routinely).
# Left to their default: SIGXCPU (a CPU limit reached is the operator's own stop),
# and SIGPROF and SIGVTALRM, the interval timers an in-process CPU profiler (scalene,
# vmprof) arms for itself: a handler here would replace the profiler's.
IGNORED_SIGNALS = (signal.SIGUSR1, signal.SIGUSR2, signal.SIGALRM, signal.SIGIO, signal.SIGPWR)


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
    logging.basicConfig(level=config.log_level.upper(), handlers=[log_handler(sys.stderr)])
    args = argv if argv is not None else sys.argv[1:]
    for warning in [*unknown_variables(), *exposure_warnings(config, args)]:
        log.warning("%s", warning)
    runner = asyncio.Runner(loop_factory=uvloop.new_event_loop)  # uvloop.run, less a crash
    try:
        return runner.run(_serve(config))
    finally:
        try:
            runner.close()
        except RuntimeError as exc:
            # Joining the default executor takes a new thread, which a process at its
            # memory limit (ulimit -v) cannot start: that was a traceback and exit 1
            # after a clean stop. Its idle threads end with the process anyway.
            log.warning("at exit: %s (the store was closed before)", exc)


# logging level -> syslog priority, for journald's `<N>` line prefix (sd-daemon(3))
_PRIORITY = {
    logging.DEBUG: 7,
    logging.INFO: 6,
    logging.WARNING: 4,
    logging.ERROR: 3,
    logging.CRITICAL: 2,
}


class JournalFormatter(logging.Formatter):
    r"""Every line of a record prefixed `<N>` with its syslog priority, no timestamp.

    journald (SyslogLevelPrefix=yes, the default) takes the prefix as the entry's
    priority and stamps the time itself; without it every line of the service was
    priority 6 (info), so `journalctl -p warning` showed no fsync failure. Each line
    of a multi-line record (a traceback) is its own journal entry: each gets the prefix.

    Example:
        >>> rec = logging.LogRecord("bitcask", logging.ERROR, "", 0, "a\nb", None, None)
        >>> JournalFormatter().format(rec)
        '<3>ERROR bitcask: a\n<3>ERROR bitcask: b'
    """

    def __init__(self) -> None:
        super().__init__("%(levelname)s %(name)s: %(message)s")

    def format(self, record: logging.LogRecord) -> str:
        prefix = f"<{_PRIORITY.get(record.levelno, 6)}>"
        lines = super().format(record).split("\n")
        head = lines[0].split(": ", 1)[0] + ": "
        return "\n".join([prefix + lines[0], *(prefix + head + line for line in lines[1:])])


def log_handler(stream: TextIO, environ: Mapping[str, str] = os.environ) -> logging.Handler:
    """The server's log handler: plain timestamped lines, or journald's priority
    prefixes when `stream` is the journal stream systemd connected (JOURNAL_STREAM
    names its device and inode, systemd.exec(5))."""
    handler = logging.StreamHandler(stream)
    if _is_journal(stream, environ.get("JOURNAL_STREAM", "")):
        handler.setFormatter(JournalFormatter())
    else:
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    return handler


def _is_journal(stream: TextIO, journal: str) -> bool:
    dev, _, ino = journal.partition(":")
    try:
        st = os.fstat(stream.fileno())
        return bool(ino) and (st.st_dev, st.st_ino) == (int(dev), int(ino))
    except (OSError, ValueError, AttributeError):  # no descriptor (a test's StringIO)
        return False


def exposure_warnings(
    config: ServerConfig, argv: Sequence[str], env: dict[str, str] | None = None
) -> list[str]:
    """What an operator should know about how exposed the store is (docs/security.md).

    Warnings, not refusals: a store bound to a pod network behind twemproxy without
    a token is a deployment docs/scaling.md shows, and exposing it took an explicit
    --host (the default is loopback, which is what Redis's protected mode ensures).
    """
    env = dict(os.environ) if env is None else env
    flags = build_parser().parse_args(argv)
    out: list[str] = []
    if config.auth is None:
        exposed = sorted(a for a in _addresses(config.host) if not a.is_loopback)
        if exposed:
            out.append(
                f"listening on {config.host} ({', '.join(map(str, exposed[:4]))}) without "
                "--auth: any host that reaches these ports can read and change every key "
                "(set BITCASK_AUTH or --auth-file, or bind 127.0.0.1)"
            )
    elif flags.auth is not None:
        out.append(
            "the --auth token is on the command line, where every local user can read it "
            "(ps, /proc/PID/cmdline): use BITCASK_AUTH or --auth-file instead"
        )
    with contextlib.suppress(OSError):
        mode = stat.S_IMODE(config.data.stat().st_mode)
        if mode & (stat.S_IWGRP | stat.S_IWOTH):
            out.append(
                f"the data directory {config.data} is writable by other users (mode "
                f"{mode:04o}): they can delete or replace the store's files; chmod 700 it"
            )
    token_file = flags.auth_file or env.get(ENV_PREFIX + "AUTH_FILE")
    if token_file:
        with contextlib.suppress(OSError):
            mode = Path(token_file).stat().st_mode
            if mode & (stat.S_IRWXG | stat.S_IRWXO):
                out.append(
                    f"--auth-file {token_file} is readable by other users (mode "
                    f"{stat.S_IMODE(mode):04o}): chmod 600 it (a Kubernetes Secret volume: "
                    "defaultMode: 0400)"
                )
    return out


def _addresses(host: str) -> set[ipaddress.IPv4Address | ipaddress.IPv6Address]:
    """The addresses `host` binds (a name may resolve to several); none if unresolvable
    (the bind itself then fails with its own message)."""
    try:
        infos = socket.getaddrinfo(host, None, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
    except (OSError, UnicodeError):
        return set()
    out: set[ipaddress.IPv4Address | ipaddress.IPv6Address] = set()
    for info in infos:
        with contextlib.suppress(ValueError):
            out.add(ipaddress.ip_address(str(info[4][0]).split("%")[0]))
    return out


async def _serve(config: ServerConfig) -> int:
    server = Server(config)
    # The handlers go in before the ports open: a SIGTERM/SIGINT that arrives as soon as
    # a client (a probe, a test) can connect must still stop the server cleanly, not
    # find Python's default handler (killed by SIGTERM; KeyboardInterrupt for SIGINT).
    # A signal during start-up is acted on once the server has started.
    loop = asyncio.get_running_loop()
    loop.set_exception_handler(loop_exception_handler)
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
        # No drain for a pod stopped while it opened its store: no Service routed to a
        # server that never listened, and the drain would only spend the grace period.
        drain = config.drain_seconds if sig == signal.SIGTERM and not starting else 0.0
        stop_requested.set()

    # SIGQUIT's default dumps core with no log line, no hints, requests cut; as PID 1 the
    # kernel drops it instead (an image's STOPSIGNAL SIGQUIT then waited for SIGKILL).
    for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGQUIT):
        loop.add_signal_handler(sig, on_signal, sig)
    if os.getpid() == 1:
        # PID 1 of a PID namespace adopts every orphan in it and nobody else waits for
        # them: with SIGCHLD ignored the kernel reaps them itself (the server starts no
        # process of its own whose exit status it would need; uvloop refuses a handler)
        signal.signal(signal.SIGCHLD, signal.SIG_IGN)
    # SIGHUP's default ends the process on the spot (no drain, no hints, in-flight
    # requests cut): a closed terminal or a logrotate `kill -HUP` must not do that.
    # Logs go to stderr, so there is nothing to reopen; ignored, as Redis does.
    loop.add_signal_handler(signal.SIGHUP, log.info, "SIGHUP ignored (SIGTERM stops the server)")
    # The others whose default ends the process as silently (exit 138 for a stray
    # `kill -USR1` meant for another daemon): the server gives them no meaning, so
    # each is ignored, with one line that says so.
    for sig in IGNORED_SIGNALS:
        loop.add_signal_handler(
            sig,
            log.warning,
            f"{sig.name} ignored: bitcask-server gives it no meaning (SIGTERM stops the server)",
        )
    try:
        await server.start()
    except ConfigError as exc:
        log.error("bad configuration: %s", exc)
        return EXIT_CONFIG
    except StoreOpenError as exc:
        log.error("%s", exc)
        return EXIT_STORE
    except bitcask.StoreLockedError as exc:  # its message names the holder's pid
        log.error(
            "cannot open the store at %s: %s (another bitcask-server on it? `make run` is "
            "one): stop it, or pass another --data",
            config.data,
            exc,
        )
        return EXIT_STORE
    except bitcask.BitcaskError as exc:
        log.error("cannot open the store at %s: %s", config.data, exc)
        return EXIT_STORE
    except ListenError as exc:
        log.error("%s", exc.strerror)
        return EXIT_BIND
    except OSError as exc:
        log.error("cannot listen on %s: %s", config.host, exc)
        return EXIT_BIND
    except (MemoryError, RuntimeError) as exc:
        if not _out_of_memory(exc):
            raise
        log.error(
            "cannot start: out of memory (%s): raise the limit (ulimit -v counts every "
            "thread's stack and malloc arena: docs/operations.md, flags and limits)",
            exc or "MemoryError",
        )
        return EXIT_FAILED
    starting = False
    stats = server.db.stats()
    log.info(
        "bitcask-server listening binary=%s http=%s data=%s sync=%s writer=%s auth=%s "
        "keys=%d version=%s stop=Ctrl-C/SIGTERM recovery=%s",
        host_port(config.host, server.port),
        host_port(config.host, server.http_port),
        config.data,
        config.sync,
        server.writer.mode if server.writer else "-",
        "on" if config.auth is not None else "off",
        stats.get("keys", len(server.db)),
        bitcask.__version__,
        json.dumps(_short_report(stats.get("recovery")), sort_keys=True, default=str),
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
            _first(recovery.get("events", ()), SHOWN_EVENTS),
            config.data,
        )
    if server.readonly_reason() is not None:
        log.warning("serving reads only: %s", server.readonly_reason())
    watchdog = Watchdog()
    await stop_requested.wait()
    watchdog.arm(drain + config.shutdown_timeout + FORCE_GRACE)
    try:
        clean = await server.stop(drain=drain)
    except Exception:
        log.exception("shutdown failed")
        return EXIT_FAILED
    finally:
        watchdog.disarm()
    return EXIT_OK if clean else EXIT_FAILED


class Watchdog:
    """Ends the process (exit 1) once a graceful stop overruns its budget, even if the
    event loop is stuck.

    Its thread starts with the server, not at SIGTERM: a process at its memory limit
    (`ulimit -v`, `prlimit --as`) could not start one then, and the stop died on the
    spot with a traceback, the store never closed and no hint written.
    """

    def __init__(self) -> None:
        self._cond = threading.Condition()
        self._deadline: float | None = None
        thread = threading.Thread(target=self._run, name="bitcask-stop-watchdog", daemon=True)
        thread.start()

    def arm(self, seconds: float) -> None:
        with self._cond:
            self._deadline = time.monotonic() + seconds
            self._cond.notify()

    def disarm(self) -> None:
        with self._cond:
            self._deadline = None
            self._cond.notify()

    def _run(self) -> None:
        with self._cond:
            while self._deadline is None or time.monotonic() < self._deadline:
                left = None if self._deadline is None else self._deadline - time.monotonic()
                self._cond.wait(left)
        _force_exit()


# Recovery events shown in the start-up line: one per damaged record could make it
# megabytes long (journald splits a line past 48 KiB); /stats keeps them all.
SHOWN_EVENTS = 5


def _short_report(recovery: object) -> object:
    """The recovery report with its first SHOWN_EVENTS events, then how many more."""
    if not isinstance(recovery, dict):
        return recovery
    events = recovery.get("events") or []
    if len(events) <= SHOWN_EVENTS:
        return recovery
    more = f"{len(events) - SHOWN_EVENTS} more in /stats"
    return {**recovery, "events": [*events[:SHOWN_EVENTS], more]}


def _first(events: Sequence[object], n: int) -> str:
    """The first n events, then how many more (a log line stays one screen long)."""
    shown = "; ".join(map(str, events[:n]))
    return shown + (f"; {len(events) - n} more in /stats" if len(events) > n else "")


def _out_of_memory(exc: BaseException) -> bool:
    """A MemoryError, or the RuntimeError of a thread that could not get its stack."""
    return isinstance(exc, MemoryError) or "can't start new thread" in str(exc)


def _force_exit() -> None:
    log.error("shutdown exceeded its budget: forcing exit")
    logging.shutdown()
    os._exit(EXIT_FAILED)
