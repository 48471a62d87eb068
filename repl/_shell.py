"""`bitcask-shell` (entry point: shell.py): the interactive shell (prompt_toolkit), or a
line-by-line pipe.

    bitcask-shell [--host H] [--port P] [--url bitcask://...|redis://...] [--redis]
                  [--auth TOKEN] [--config F]

On a terminal: a prompt with completion (commands, arguments, keys from the server),
highlighting, fish-style suggestions from a persistent history, and a bottom toolbar
(server address, version, key count, last round trip). A failed command prints one
`(error) ...` line and the shell stays open; a lost connection is re-established by
the next command. Long output (keys, stats) goes through the pager.

Given a redis:// URL or --redis, the same commands drive any Redis-protocol endpoint
(a bitcask-server's RESP dialect, redis-server, twemproxy) through `client.RespClient`;
the commands with no Redis equivalent say so in one line (docs/shell.md).

With stdin not a terminal (`printf 'put a 1\\nget a\\n' | bitcask-shell`): one command
per line, pipelined (`_piped.py`), results on stdout in input order (raw bytes when
stdout is not a terminal, else formatted: quoted, escaped; --raw / --no-raw as in
`bitcask`), errors on stderr, no prompt and no colours; exit status 2 if any line
failed, else 0.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
from dataclasses import replace
from pathlib import Path

from ._config import ConfigError, ShellConfig, load_config
from ._context import CommandError
from ._options import (
    Parser,
    add_connection_options,
    add_output_options,
    add_version_option,
    options_from,
    raw_output,
)

__all__ = ["main"]


def build_parser() -> argparse.ArgumentParser:
    parser = Parser(
        prog="bitcask-shell",
        description="Interactive shell for a bitcask server (type help inside).",
    )
    add_version_option(parser)
    add_connection_options(parser)
    add_output_options(parser, piped=" (commands read from a pipe or file)")
    parser.add_argument(
        "--config",
        type=Path,
        help="config file (BITCASK_SHELL_CONFIG; default "
        "$XDG_CONFIG_HOME/bitcask/shell.toml, ~/.config/bitcask/shell.toml)",
    )
    return parser


def _config(path: Path | None) -> ShellConfig | None:
    """The settings, every problem of the file reported on stderr; None: cannot go on.

    A bad setting costs only itself (it keeps its default; the rest of the file is
    used), in piped mode as at a terminal. A file named with --config must exist.
    """
    try:
        return load_config(path, required=path is not None)
    except ConfigError as exc:
        for problem in exc.problems:
            sys.stderr.write(f"(error) config: {problem}\n")
        if exc.config is None:
            return None
        if not exc.unreadable:
            n = len(exc.problems)
            sys.stderr.write(
                f"(error) config: {n} problem{'s' if n > 1 else ''}: using the defaults for "
                "those settings and the rest of the file as written\n"
            )
        sys.stderr.flush()
        return exc.config


def main(argv: list[str] | None = None) -> int:
    """Entry point of the `bitcask-shell` console script; returns the exit status."""
    args = build_parser().parse_args(argv)
    try:
        options = options_from(args)
    except CommandError as exc:
        sys.stderr.write(f"(error) {exc}\n")
        return 2
    config = _config(args.config)
    if config is None:
        return 2
    if args.timeout is None and not os.environ.get("BITCASK_TIMEOUT"):
        options = replace(options, timeout=config.timeout)
    if not sys.stdin.isatty():
        from ._piped import run_piped

        try:
            return asyncio.run(run_piped(options, raw_output(args)))
        except KeyboardInterrupt:
            return 130
        except BrokenPipeError:  # the reader of our output left
            os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
            return 0
    from ._interactive import Shell

    try:  # SIGTERM 143, SIGHUP 129: Shell.run gives the terminal back and says so
        return asyncio.run(Shell(options, config).run())
    except KeyboardInterrupt:
        return 130
