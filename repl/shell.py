"""The `bitcask-shell` console script's entry point (the shell itself: `_shell.py`).

Kept to the standard library so that a Ctrl-C while the rest loads (the client,
the config reader, prompt_toolkit) ends quietly with status 130 instead of a
traceback from the middle of an import.
"""

from __future__ import annotations

import sys

from . import run_main

__all__ = ["main"]


def main(argv: list[str] | None = None) -> int:
    """`bitcask-shell [options]`; returns the exit status."""
    return run_main("._shell", argv)


def __getattr__(name: str) -> object:  # repl.shell.build_parser...: _shell's names
    if name.startswith("__"):  # the import system's probes (__path__): not _shell's
        raise AttributeError(name)
    from . import _shell

    return getattr(_shell, name)


if __name__ == "__main__":
    sys.exit(main())
