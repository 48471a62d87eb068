"""The shape of the command table and everything derived from it.

The rows themselves live in `_commands.py`. Strategy: each `Command` row carries its name and aliases, its arguments (with a
kind: which are keys, values, numbers, paths; which are optional, which follow a
keyword such as `TTL`), a one-line summary, the help text, where it is offered
(shell, one-shot CLI, or both), the implementation `run(ctx, args)` (the client
call) and the exit-code rule. Everything else is derived from these rows:

- `bind()` turns tokens into typed arguments (used by the shell and the CLI),
- `slots()` says what each word of a half-typed line is (used by completion and
  highlighting),
- `usage()` and `help_text()` (used by `help` and by error messages),
- `exit_code()` (used by `bitcask`: 0 ok, 1 not found / "no", 2 error).
"""

from __future__ import annotations

import enum
import shutil
import textwrap
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Any, TextIO

from ._context import Context, UsageError

__all__ = [
    "CLI",
    "SHELL",
    "Arg",
    "Command",
    "Kind",
    "Slot",
    "bind",
    "help_text",
    "lazy",
    "lookup",
    "names",
    "slots",
    "unknown",
    "usage",
]

SHELL = "shell"
CLI = "cli"
BOTH = frozenset({SHELL, CLI})


class Kind(enum.Enum):
    """What an argument is; decides conversion, completion and colour."""

    KEY = "key"
    VALUE = "value"
    PREFIX = "prefix"  # a key prefix: completes like a key
    CURSOR = "cursor"  # a key returned by scan: completes like a key
    INT = "int"
    FLOAT = "float"
    PATH = "path"
    COMMAND = "command"  # a command name (for `help`)

    @property
    def is_key(self) -> bool:
        return self in (Kind.KEY, Kind.PREFIX, Kind.CURSOR)


# Arg, Command and Slot are dataclasses of __init__ alone (no eq, repr, hash, frozen):
# the table is built at every `bitcask` start, and those methods, which nothing uses
# (rows are compared by identity, never printed, never assigned to), cost 10M
# instructions at import (dataclasses exec()s each; callgrind, CPython 3.11)
@dataclass(slots=True, eq=False, repr=False)
class Arg:
    """One argument. `keyword` set: written as `KEYWORD value` anywhere after the command."""

    name: str
    kind: Kind
    optional: bool = False
    keyword: str | None = None
    minimum: float | None = None  # numbers: smallest allowed value (inclusive)
    positive: bool = False  # numbers: must be > 0
    meta: str | None = None  # the placeholder in usage (default: the name upper-cased)

    @property
    def metavar(self) -> str:
        return self.meta or self.name.upper()

    @property
    def keyword_text(self) -> str:
        """How the keyword is written in usage and completion: `TTL`, `--count`."""
        kw = self.keyword or ""
        return kw.upper() if kw.isalpha() else kw

    def recognised(self, filled_required: bool) -> bool:
        """A keyword like `TTL` counts only after the required arguments, so
        `put TTL v` stores a key named TTL; option-style `--count` counts anywhere."""
        return self.keyword is not None and (self.keyword.startswith("-") or filled_required)


Args = dict[str, Any]
Run = Callable[[Context, Args], Awaitable[Any]]
ExitRule = Callable[[Any], int]


def lazy(module: str, name: str) -> Run:
    """`run` of a command implemented in `module` (relative to `repl`), imported on
    first use.

    One-shot commands import only what they use: `bitcask ping` must not pay for
    the engine (`check`), urllib (`health`) or the transfer code (`import`). Rows
    for new tools should use it too: `run=lazy("._reshard", "reshard")`.
    """

    async def run(ctx: Context, a: Args) -> Any:
        import importlib

        fn = getattr(importlib.import_module(module, __package__), name)
        return await fn(ctx, a)

    run.__name__ = run.__qualname__ = f"{module.lstrip('.')}.{name}"
    return run


def always_ok(_reply: Any) -> int:
    return 0


@dataclass(slots=True, eq=False, repr=False)
class Command:
    """One row of the table."""

    name: str
    args: tuple[Arg, ...]
    summary: str
    help: str
    run: Run
    exit_rule: ExitRule = always_ok
    repeat: bool = False  # the positional arguments repeat as a group, at least once
    aliases: tuple[str, ...] = ()
    scope: frozenset[str] = BOTH
    group: str = "keys"  # keys | server | tools | shell (sections in `help`)
    paged: bool = False  # long output goes through the pager in the shell
    idempotent: bool = False  # safe to send again on a fresh connection after a loss
    examples: tuple[str, ...] = ()
    single: bool = False  # exactly one request and nothing else: may be pipelined
    shell_help: str = ""  # help that is true only in the shell (quoting, escapes)
    cli_help: str = ""  # help that is true only in `bitcask` (argv, stdin)

    @property
    def positional(self) -> tuple[Arg, ...]:
        return tuple(a for a in self.args if a.keyword is None)

    @property
    def keywords(self) -> dict[str, Arg]:
        return {a.keyword.lower(): a for a in self.args if a.keyword is not None}

    def exit_code(self, reply: Any) -> int:
        return self.exit_rule(reply)

    def help_for(self, scope: str) -> str:
        """The help text as it is true in `scope`: the common part plus that front end's."""
        extra = self.shell_help if scope == SHELL else self.cli_help
        return "\n".join(part for part in (self.help, extra) if part)


def usage(cmd: Command) -> str:
    """`put KEY VALUE [TTL SECONDS]`, `mget KEY [KEY ...]`, ..."""
    parts = [cmd.name]
    pos = cmd.positional
    if cmd.repeat:
        group = " ".join(a.metavar for a in pos)
        parts += [group, f"[{group} ...]"]
    else:
        for a in pos:
            parts.append(f"[{a.metavar}]" if a.optional else a.metavar)
    for a in cmd.args:
        if a.keyword is not None:
            parts.append(f"[{a.keyword_text} {a.metavar}]")
    return " ".join(parts)


# --------------------------------------------------------------------------- lookup


def lookup(table: Sequence[Command], name: str, scope: str) -> Command | None:
    """The command called `name` (case-insensitive, aliases too) offered in `scope`."""
    low = name.lower()
    for cmd in table:
        if scope in cmd.scope and (cmd.name == low or low in cmd.aliases):
            return cmd
    return None


def names(table: Sequence[Command], scope: str) -> list[str]:
    return sorted(c.name for c in table if scope in c.scope)


# Redis's names for what a command here does, as someone used to redis-cli types them:
# `unknown` answers with the command to use (difflib offered `info` -> incrfloat,
# `flushall` -> nothing). Each is shown only where its command is offered.
REDIS_NAMES: dict[str, str] = {
    "mset": "mput KEY VALUE [KEY VALUE ...]", "setnx": "set KEY VALUE NX",
    "setex": "put KEY VALUE TTL SECONDS", "psetex": "put KEY VALUE TTL SECONDS",
    "getset": "set KEY VALUE GET", "incrby": "incr KEY BY N", "decr": "incr KEY BY -1",
    "decrby": "incr KEY BY -N", "incrbyfloat": "incrfloat KEY DELTA",
    "pexpire": "expire KEY SECONDS", "pttl": "ttl KEY", "renamenx": "rename KEY NEWKEY NX",
    "unlink": "delete KEY", "flushdb": "clear all", "flushall": "clear all",
    "dbsize": "stats", "info": "stats", "save": "sync", "bgsave": "backup DIR",
    "bgrewriteaof": "merge",
}  # fmt: skip


def unknown(table: Sequence[Command], name: str, scope: str) -> UsageError:
    """The error for a command name that is not in the table: the command to use for a
    Redis name, the program that has it for the other front end's command, else
    "did you mean".

    Example:
        >>> from repl._commands import COMMANDS
        >>> str(unknown(COMMANDS, "gte", "shell"))
        "unknown command 'gte' (did you mean get?)"
        >>> str(unknown(COMMANDS, "setex", "shell"))
        "unknown command 'setex' (use: put KEY VALUE TTL SECONDS)"
        >>> str(unknown(COMMANDS, "auth", "cli"))
        "unknown command 'auth' (auth is a command of bitcask-shell; bitcask takes options instead: bitcask --help)"
    """
    import difflib

    if "://" in name:  # `bitcask redis://host get k`: shown redacted, never echoed
        from protocol.address import redact_url

        where = "give it with --url, before the command" if scope == CLI else "not a command"
        return UsageError(f"'{redact_url(name)}' is a URL: {where}")
    low = name.lower()
    instead = REDIS_NAMES.get(low)
    if instead is not None and lookup(table, instead.split()[0], scope) is not None:
        return UsageError(f"unknown command '{name}' (use: {instead})")
    for other in (SHELL, CLI):
        cmd = lookup(table, low, other)
        if other != scope and cmd is not None:
            where = (
                f"a command of bitcask, the command line: bitcask {cmd.name} ..."
                if other == CLI
                else "a command of bitcask-shell; bitcask takes options instead: bitcask --help"
            )
            return UsageError(f"unknown command '{name}' ({cmd.name} is {where})")
    known = [n for c in table if scope in c.scope for n in (c.name, *c.aliases)]
    close = difflib.get_close_matches(low, known, n=3, cutoff=0.6)
    if close:
        return UsageError(f"unknown command '{name}' (did you mean {' or '.join(close)}?)")
    hint = "try: help" if scope == SHELL else "bitcask help lists them"
    return UsageError(f"unknown command '{name}' ({hint})")


# --------------------------------------------------------------------------- binding


def _convert(cmd: Command, arg: Arg, raw: bytes) -> Any:
    text = raw.decode("utf-8", "surrogateescape")
    if arg.kind in (Kind.KEY, Kind.VALUE, Kind.PREFIX, Kind.CURSOR):
        return raw
    if arg.kind in (Kind.PATH, Kind.COMMAND):
        return text
    try:
        num: float = int(text) if arg.kind is Kind.INT else float(text)
    except ValueError:
        what = "an integer" if arg.kind is Kind.INT else "a number"
        raise UsageError(f"{arg.metavar} must be {what}, got {text!r}") from None
    if arg.kind is Kind.INT and not -(2**63) <= num < 2**63:  # as Redis's integers
        raise UsageError(f"{arg.metavar} must be a signed 64-bit integer, got {text!r}")
    if num != num or num in (float("inf"), float("-inf")):
        raise UsageError(f"{arg.metavar} must be a finite number, got {text!r}")
    if arg.positive and num <= 0:
        raise UsageError(f"{arg.metavar} must be greater than 0, got {text!r}")
    if arg.minimum is not None and num < arg.minimum:
        raise UsageError(f"{arg.metavar} must be at least {arg.minimum:g}, got {text!r}")
    return num


def bind(cmd: Command, words: Sequence[bytes]) -> Args:
    """Typed arguments for `cmd` from the words after the command name.

    Args:
        cmd: the table row.
        words: the argument values (already unquoted).

    Returns:
        A dict by argument name; optional arguments left out are None; for a
        repeating command, the name `"groups"` holds a list of tuples.

    Raises:
        UsageError: wrong number of arguments or a value of the wrong type; the
            message ends with the usage line.

    Example:
        >>> from repl._commands import COMMANDS
        >>> bind(lookup(COMMANDS, "put", "shell"), [b"k", b"v", b"TTL", b"5"])
        {'key': b'k', 'value': b'v', 'ttl': 5.0}
    """
    try:
        return _bind(cmd, words)
    except UsageError as exc:
        raise UsageError(f"{exc} (usage: {usage(cmd)})") from None


def _bind(cmd: Command, words: Sequence[bytes]) -> Args:
    if cmd.repeat:
        pos = cmd.positional
        if not words or len(words) % len(pos):
            need = " ".join(a.metavar for a in pos)
            raise UsageError(f"'{cmd.name}' needs one or more {need}")
        groups = [
            tuple(_convert(cmd, a, w) for a, w in zip(pos, words[i : i + len(pos)], strict=True))
            for i in range(0, len(words), len(pos))
        ]
        return {"groups": groups}
    out: Args = {a.name: None for a in cmd.args}
    keywords = cmd.keywords
    pending = list(cmd.positional)
    i = 0
    while i < len(words):
        word = words[i]
        kw = keywords.get(word.decode("utf-8", "replace").lower())
        required_done = not any(not a.optional for a in pending)
        if kw is not None and out[kw.name] is None and kw.recognised(required_done):
            if i + 1 >= len(words):
                raise UsageError(f"{kw.keyword_text} needs {kw.metavar}")
            out[kw.name] = _convert(cmd, kw, words[i + 1])
            i += 2
            continue
        if not pending:
            raise UsageError(f"too many arguments for '{cmd.name}'")
        arg = pending.pop(0)
        out[arg.name] = _convert(cmd, arg, word)
        i += 1
    missing = [a.metavar for a in pending if not a.optional]
    if missing:
        raise UsageError(f"'{cmd.name}' needs {' '.join(missing)}")
    return out


# --------------------------------------------------------------------------- slots


@dataclass(slots=True, eq=False, repr=False)
class Slot:
    """What a word of a line is: an argument's value, a keyword literal, or extra."""

    arg: Arg | None
    keyword: bool = False  # the word is the keyword itself (`TTL`), not its value

    @property
    def extra(self) -> bool:
        return self.arg is None


def slots(cmd: Command, words: Sequence[str]) -> tuple[list[Slot], list[Slot]]:
    """The role of each argument word, and the roles the next word may take.

    Used by completion and highlighting on half-typed lines, so it never raises.

    Returns:
        (one Slot per word, candidate Slots for the word after them).
    """
    roles: list[Slot] = []
    if cmd.repeat:
        pos = cmd.positional
        roles = [Slot(pos[i % len(pos)]) for i in range(len(words))]
        return roles, [Slot(pos[len(words) % len(pos)])]
    keywords = cmd.keywords
    used: set[str] = set()
    pending = list(cmd.positional)
    expect_value: Arg | None = None
    for word in words:
        if expect_value is not None:
            roles.append(Slot(expect_value))
            expect_value = None
            continue
        kw = keywords.get(word.lower())
        required_done = not any(not a.optional for a in pending)
        if kw is not None and kw.name not in used and kw.recognised(required_done):
            used.add(kw.name)
            roles.append(Slot(kw, keyword=True))
            expect_value = kw
            continue
        roles.append(Slot(pending.pop(0)) if pending else Slot(None))
    if expect_value is not None:
        return roles, [Slot(expect_value)]
    nxt = [Slot(pending[0])] if pending else []
    required_done = not any(not a.optional for a in pending)
    nxt += [
        Slot(a, keyword=True)
        for a in keywords.values()
        if a.name not in used and a.recognised(required_done)
    ]
    return roles, nxt


# --------------------------------------------------------------------------- help

_GROUPS = (
    ("keys", "Keys and values"),
    ("server", "Server"),
    ("tools", "Tools"),
    ("shell", "Other"),
)


USAGE_COLUMN = 32  # the widest usage the command list aligns summaries after
MIN_SUMMARY = 20  # narrower room than this for a summary: it goes on its own line
MIN_TEXT = 10  # wrapped text keeps this many columns beside its indent, however narrow


def help_text(
    table: Sequence[Command], name: str | None, scope: str, width: int | None = None
) -> str:
    """`help` (a list of commands by group) or `help CMD` (usage, details, examples).

    Args:
        width: the columns to fit (the terminal's); None: one line per command and
            no wrapping (what tests and docs compare against).

    Raises:
        UsageError: for an unknown command name.
    """
    if name:
        cmd = lookup(table, name, scope)
        if cmd is None:
            raise unknown(table, name, scope)
        lines = [usage(cmd), f"  {cmd.summary}", ""]
        lines += [f"  {line}" for line in cmd.help_for(scope).splitlines()]
        if cmd.aliases:
            lines += ["", f"  Also: {', '.join(cmd.aliases)}"]
        if cmd.examples:
            prefix = "" if scope == SHELL else "bitcask "
            lines += ["", "  Examples:"] + [f"    {prefix}{ex}" for ex in cmd.examples]
        return "\n".join(_fit(lines, width))
    rows = [c for c in table if scope in c.scope]
    column = max(len(usage(c)) for c in rows)
    if width is not None:
        column = max((n for c in rows if (n := len(usage(c))) <= USAGE_COLUMN), default=0)
    lines = []
    for group, title in _GROUPS:
        members = [c for c in rows if c.group == group]
        if not members:
            continue
        if lines:
            lines.append("")
        lines.append(f"{title}:")
        for c in members:
            lines += _row(usage(c), c.summary, column, width)
    more = "help CMD" if scope == SHELL else "bitcask help CMD (or bitcask CMD --help)"
    lines += ["", f"{more} for details. Commands are case-insensitive."]
    return "\n".join(_fit(lines, width))


def _row(usage_: str, summary: str, column: int, width: int | None) -> list[str]:
    """One command of the list: `  usage  summary`, the summary wrapped to `width`
    beside the column, or under a usage too wide for it (as argparse lays out options)."""
    if width is None:
        return [f"  {usage_:<{column}}  {summary}"]
    room = width - column - 4
    if len(usage_) <= column and room >= MIN_SUMMARY:
        first, *rest = textwrap.wrap(summary, room, break_on_hyphens=False) or [""]
        return [f"  {usage_:<{column}}  {first}"] + [" " * (column + 4) + r for r in rest]
    indent = " " * (6 if width >= 40 else 4)
    wrapped = textwrap.wrap(
        summary, max(width, len(indent) + MIN_TEXT), initial_indent=indent, subsequent_indent=indent,
        break_on_hyphens=False,
    )  # fmt: skip
    return [f"  {usage_}", *wrapped]


def fit(text: str, width: int | None) -> str:
    """`text` with each line longer than `width` wrapped at words, its indent kept."""
    return "\n".join(_fit(text.split("\n"), width))


def terminal_width(stream: TextIO) -> int | None:
    """The columns of the terminal `stream` writes to; None into a pipe or a file (text
    goes out as written there, for scripts and for the docs that show it)."""
    return shutil.get_terminal_size().columns if stream.isatty() else None


def _fit(lines: list[str], width: int | None) -> list[str]:
    """Each line longer than `width` wrapped at words, its indent kept (a 20-column
    terminal wrapped `help` mid-word and lost the alignment); None: as they are."""
    if width is None:
        return lines
    out: list[str] = []
    for line in lines:
        if len(line) <= width:
            out.append(line)
            continue
        indent = " " * (len(line) - len(line.lstrip(" ")))
        out += textwrap.wrap(
            line, max(width, len(indent) + MIN_TEXT), subsequent_indent=indent,
            break_on_hyphens=False,
        ) or [line]  # fmt: skip
    return out
