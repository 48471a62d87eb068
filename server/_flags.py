"""bitcask-server's command line and environment: the flags, their parser, the
`BITCASK_*` variables.

Every knob is one entry of ``FLAGS`` (name -> type, help): the flag is
`--name-with-dashes`, the variable `BITCASK_NAME`. server/config.py turns what they
give into a validated ServerConfig; this module only names and parses them.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any, NoReturn

import bitcask

__all__ = [
    "ENV_PREFIX",
    "FLAGS",
    "OTHER_PROGRAMS_VARIABLES",
    "build_parser",
    "unknown_variables",
]

ENV_PREFIX = "BITCASK_"


def _path(raw: str) -> Path:
    """--data's type: Path("") is "." (the working directory), never what was meant."""
    if not raw:
        raise argparse.ArgumentTypeError("an empty path (an unset variable in the command?)")
    return Path(raw)


# name -> (type, help); the flag is --name-with-dashes, the env var BITCASK_NAME.
FLAGS: dict[str, tuple[Callable[[str], Any], str]] = {
    "data": (_path, "data directory of the store (default ./data)"),
    "host": (str, "address to bind, both ports (default 127.0.0.1)"),
    "port": (int, "binary and Redis protocol port (default 7379)"),
    "http_port": (int, "HTTP adapter port (default 7380)"),
    "sync": (str, "fsync policy: always | interval | never (default always)"),
    "sync_interval_ms": (int, "background fsync period for --sync interval, ms (default 1000)"),
    "max_file_size": (int, "rotate data files at this many bytes (default 128 MiB)"),
    "max_key_size": (int, "longest key accepted in bytes (default 64 KiB)"),
    "max_value_size": (int, "largest value accepted in bytes (default 64 MiB)"),
    "merge_trigger": (
        float,
        "auto-merge when dead/disk bytes reach this ratio, 0: off (default 0.5)",
    ),
    "merge_min_dead_bytes": (int, "... and at least this many bytes are dead (default 64 MiB)"),
    "max_keys": (
        int,
        "most keys held; past it writes of new keys are refused (default 0: no limit)",
    ),
    "auth": (
        str,
        "shared token clients must present (hello/auth, HTTP Bearer); visible in ps: "
        "prefer BITCASK_AUTH or a token file",
    ),
    "auth_file": (_path, "read the token from this file (one final newline is dropped)"),
    "auth_timeout": (
        float,
        "with a token, close a binary/Redis connection not authenticated within this many "
        "seconds; 0: never (default 60)",
    ),
    "max_connections": (int, "maximum open connections, both ports (default 1024)"),
    "max_frame": (int, "largest binary frame / HTTP body in bytes (default 64 MiB + 1 MiB)"),
    "max_batch": (int, "most operations in one batch, mput or mget (default 10000)"),
    "max_reply_bytes": (int, "most bytes of values or keys in one reply (default 128 MiB)"),
    "max_multi_bytes": (
        int,
        "bytes one Redis MULTI may queue, and its WATCHed keys, at least --max-frame "
        "(default 128 MiB)",
    ),
    "max_snapshots": (int, "snapshots one connection may hold open at once (default 4)"),
    "max_partial_input": (
        int,
        "bytes all connections may hold in unfinished requests; the largest holder is "
        "refused above; never less than one largest frame (default 512 MiB)",
    ),
    "request_timeout": (
        float,
        "seconds a started request (binary, Redis, HTTP body) may take to arrive whole; "
        "0: never (default 300)",
    ),
    "idle_timeout": (float, "close connections silent this many seconds; 0: never (default 300)"),
    "tcp_keepalive": (int, "seconds of silence before TCP keepalive probes; 0: off (default 300)"),
    "max_inflight": (int, "per-connection requests in flight before reading pauses (default 1024)"),
    "writer_queue_max": (int, "queued writes before writing connections pause (default 8192)"),
    "http_keepalive": (float, "HTTP keep-alive idle timeout, seconds (default 5)"),
    "http_header_timeout": (float, "seconds allowed to send an HTTP request head (default 10)"),
    "http_body_timeout": (float, "seconds of silence allowed inside an HTTP body (default 30)"),
    "http_max_header_bytes": (int, "HTTP request line + headers limit, bytes (default 16384)"),
    "writer": (
        str,
        "write_group runner: auto | thread | executor | aiofiles | loop (default auto)",
    ),
    "shutdown_timeout": (float, "graceful shutdown budget in seconds (default 10)"),
    "drain_seconds": (
        float,
        "after SIGTERM, keep serving this long with /readyz answering 503 (default 5)",
    ),
    "fsync_failure_grace": (
        float,
        "after a failed fsync, seconds before /livez fails so the process is restarted (default 30)",
    ),
    "log_level": (str, "debug | info | warning | error (default info)"),
}


class _Parser(argparse.ArgumentParser):
    """argparse, but a bad flag is one line (exit 2): the 20-line usage it printed
    first buried the error in a journal; --help still shows the usage."""

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"{self.prog}: {message} (--help lists the flags)\n")


def build_parser() -> argparse.ArgumentParser:
    """The argparse parser of bitcask-server (every flag defaults to None: "not given")."""
    parser = _Parser(
        prog="bitcask-server",
        description="Serve a bitcask store over the binary protocol and HTTP. "
        "Every flag can also be set as BITCASK_<FLAG> in the environment.",
    )
    # as bitcask's and bitcask-shell's (repl/_options.py): the Python is half a bug report
    # sys.version's first word is what platform.python_version() answers; importing
    # platform for it cost 4 ms of every start (its module compiles 9 regexes)
    release = f"bitcask-server {bitcask.__version__} (Python {sys.version.split()[0]})"
    parser.add_argument("--version", action="version", version=release)
    for name, (typ, help_text) in FLAGS.items():
        flag = "--" + name.replace("_", "-")
        env_name = ENV_PREFIX + name.upper()
        parser.add_argument(
            flag, dest=name, type=typ, default=None, help=f"{help_text} [{env_name}]"
        )
    return parser


# BITCASK_* variables another bitcask program reads (the shell: docs/cli.md), which a
# shared environment (a container, a developer's shell) may hold beside the server's
OTHER_PROGRAMS_VARIABLES = frozenset({"BITCASK_URL", "BITCASK_TIMEOUT", "BITCASK_SHELL_CONFIG"})


def unknown_variables(env: Mapping[str, str] | None = None) -> list[str]:
    """One warning per `BITCASK_*` variable that names no flag (any case).

    A typo (`BITCASK_PROT=7000`) was ignored without a word: the server came up on
    its default port. Each line names the variable and the closest known one, never
    the value (it may be a token).

    Example:
        >>> unknown_variables({"BITCASK_PROT": "7000", "BITCASK_SYNC": "never"})[0][-46:]
        'did you mean BITCASK_PORT? (--help lists them)'
    """
    env = os.environ if env is None else env
    known = [ENV_PREFIX + name.upper() for name in FLAGS]
    out: list[str] = []
    for name in sorted(env):
        upper = name.upper()
        if not upper.startswith(ENV_PREFIX) or name in known or upper in OTHER_PROGRAMS_VARIABLES:
            continue
        import difflib  # only for this message: 2-10 ms of start-up otherwise

        close = difflib.get_close_matches(upper, known, n=1, cutoff=0.7)
        hint = f": did you mean {close[0]}?" if close else ""
        shown = name if name.isprintable() else repr(name)
        out.append(f"{shown} is not a bitcask-server variable, ignored{hint} (--help lists them)")
    return out
