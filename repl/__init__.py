"""repl: bitcask-shell and the bitcask command line.

The two console scripts are `bitcask-shell = repl.shell:main` and
`bitcask = repl.cli:main`; `python -m repl` runs the shell. Everything they do is
driven by one command table, `COMMANDS`, from which parsing (`bind`), completion
(`suggest`), highlighting (`highlight`) and `help` (`help_text`) are derived.

Example:
    >>> from repl import COMMANDS, help_text
    >>> help_text(COMMANDS, "get", "shell").splitlines()[0]
    'get KEY'
"""

from __future__ import annotations

import importlib
import os
import signal
import sys

# typing is not imported at run time: this file runs before `run_main` can catch a
# Ctrl-C (see there), so it loads nothing that is not loaded already (but signal, to
# catch one meanwhile)
TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

    from ._commands import COMMANDS
    from ._complete import Suggestion, suggest
    from ._config import ShellConfig, load_config
    from ._lexer import highlight
    from ._parse import ParseError, quote, tokenize, unescape
    from ._table import Arg, Command, Kind, bind, help_text, usage

# Where each public name lives. Imported on first use (PEP 562), so that
# `python -m repl.cli ping` does not load prompt_toolkit for the completer and
# lexer it never uses.
_WHERE = {
    "COMMANDS": "._commands",
    "Suggestion": "._complete",
    "suggest": "._complete",
    "ShellConfig": "._config",
    "load_config": "._config",
    "highlight": "._lexer",
    "ParseError": "._parse",
    "quote": "._parse",
    "tokenize": "._parse",
    "unescape": "._parse",
    "Arg": "._table",
    "Command": "._table",
    "Kind": "._table",
    "bind": "._table",
    "help_text": "._table",
    "usage": "._table",
}


def _quiet_exit(signum: int, frame: object) -> None:
    os._exit(128 + signum)  # nothing opened, nothing written yet: nothing to clean up


# The console scripts (`from repl.cli import main`) import this package before any try
# of ours can catch a Ctrl-C: one landing there printed a KeyboardInterrupt traceback
# and the process died of SIGINT. Until `run_main` takes over, a Ctrl-C ends such a
# process with 130 and not a word. Only when this process is a console script: a
# program that imports repl (pytest) keeps its own Ctrl-C. (Python's own start-up,
# site.py and the .pth files before this, cannot be reached from here.)
if os.path.basename(sys.argv[0]) in ("bitcask", "bitcask-shell") and (
    signal.getsignal(signal.SIGINT) is signal.default_int_handler
):
    signal.signal(signal.SIGINT, _quiet_exit)


def run_main(module: str, argv: list[str] | None) -> int:
    """Import `module` (relative to repl) and return its `main(argv)`: the console
    scripts' one body. A Ctrl-C at any point, the imports included, is exit status
    130 and no traceback (the modules catch it around their event loop; this catches
    it while they load, before the loop exists)."""
    try:
        if signal.getsignal(signal.SIGINT) is _quiet_exit:  # from here on, the try's
            signal.signal(signal.SIGINT, signal.default_int_handler)
        return int(importlib.import_module(module, __name__).main(argv))
    except KeyboardInterrupt:
        return 130


def __getattr__(name: str) -> Any:
    if name not in _WHERE:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(_WHERE[name], __name__), name)
    globals()[name] = value
    return value


__all__ = [
    "COMMANDS",
    "Arg",
    "Command",
    "Kind",
    "ParseError",
    "ShellConfig",
    "Suggestion",
    "bind",
    "help_text",
    "highlight",
    "load_config",
    "quote",
    "suggest",
    "tokenize",
    "unescape",
    "usage",
]
