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

from ._commands import COMMANDS
from ._complete import Suggestion, suggest
from ._config import ShellConfig, load_config
from ._lexer import highlight
from ._parse import ParseError, quote, tokenize, unescape
from ._table import Arg, Command, Kind, bind, help_text, usage

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
