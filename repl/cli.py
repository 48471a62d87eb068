"""The `bitcask` console script's entry point (the command line itself: `_cli.py`).

Kept to the standard library so that a Ctrl-C while the rest loads (about 0.2 s of
imports: the client, the protocol, asyncio) ends quietly with status 130, as one
during a command does, instead of a traceback from the middle of an import.

Exit status: 0 ok; 1 "no" (get: no such key, exists/delete: false, ttl: no such
key, check: damage found); 2 error (usage, connection, server error); 130 Ctrl-C;
143 SIGTERM in the middle of a command (`_signals.py`).
"""

from __future__ import annotations

import sys

from . import run_main

__all__ = ["main"]


def main(argv: list[str] | None = None) -> int:
    """`bitcask [options] COMMAND [ARGS...]`; returns the exit status."""
    return run_main("._cli", argv)


def __getattr__(name: str) -> object:  # repl.cli.TABLE, build_parser...: _cli's names
    if name.startswith("__"):  # the import system's probes (__path__): not _cli's
        raise AttributeError(name)
    from . import _cli

    return getattr(_cli, name)


if __name__ == "__main__":
    sys.exit(main())
