"""Every flag of every command is documented, and every documented flag is real.

The flags are read from the argument parsers themselves (`bitcask-server`,
`bitcask`, `bitcask-shell`, `bitcask reshard`) and from the command table (the
option-style words of `bitcask stat --count N`, `backup --force` ...), so a flag
added to the code without a line in the docs fails here, and so does a doc naming
a flag (or a `BITCASK_*` variable) that no parser has: a typo, or one removed.

- Each server flag has a row in the flag table of docs/operations.md whose default
  is the one the server uses, and `--help` states that same default.
- Each connection flag of `bitcask`/`bitcask-shell` is in docs/shell.md's table
  with the variable its `--help` names.
- A `--flag` written after `bitcask-server`, `bitcask-shell` or `bitcask` (in a
  console block or an inline code span) is a flag of that program; any other
  `--flag` in the docs belongs to a parser here or to another program, listed in
  FOREIGN with the program.
"""

from __future__ import annotations

import argparse
import re
import shlex
from collections.abc import Iterator
from dataclasses import fields
from pathlib import Path
from typing import Any

import pytest

import bitcask
from repl import _reshard
from repl import cli as bitcask_cli
from repl import shell as bitcask_shell
from repl._context import ConnectOptions
from server import config as server_config

ROOT = Path(__file__).resolve().parent.parent
DOCS = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
OPERATIONS = ROOT / "docs" / "operations.md"
SHELL = ROOT / "docs" / "shell.md"
SCALING = ROOT / "docs" / "scaling.md"

# Flags of other programs the docs show, by program: not ours to check.
FOREIGN = {
    "redis-cli": "--pipe --stat --latency --latency-history --latency-dist --bigkeys --memkeys "
    "--hotkeys --scan --pattern --csv --eval --rdb --functions-rdb --replica --cluster --pass "
    "--user --no-auth-warning",
    "redis-server": "--requirepass --databases",
    "redis-benchmark": "--threads",
    "nutcracker": "--conf-file --test-conf --mbuf-size --output --stats-port --stats-addr "
    "--stats-interval",
    "curl": "--data-binary --http1 --http2 --http0 --path-as-is",
    "prlimit": "--as",
    "useradd / systemctl": "--system --home --shell --now",
    "ruff": "--check",
    "python -m build": "--no-isolation",
    "valgrind": "--callgrind",
    "examples/visit_counter.py": "--serve",
    "bench": "--ceiling --opcodes",
}
FOREIGN_FLAGS = {flag for flags in FOREIGN.values() for flag in flags.split()}

_FLAG = re.compile(r"(?<![\w-])--[a-z][a-z0-9-]*")
_ENV = re.compile(r"\bBITCASK_[A-Z][A-Z0-9_]*\b")


def _flags(parser: argparse.ArgumentParser) -> set[str]:
    return {o for a in parser._actions for o in a.option_strings if o.startswith("--")}


def _table_flags() -> dict[str, set[str]]:
    """command name -> its option-style words (`--count`, `--force`), from the table."""
    out: dict[str, set[str]] = {}
    for cmd in bitcask_cli.TABLE:
        words = {a.keyword for a in cmd.args if a.keyword and a.keyword.startswith("--")}
        words |= {a.meta for a in cmd.args if a.meta and a.meta.startswith("--")}
        out[cmd.name] = words
    return out


SERVER = _flags(server_config.build_parser())
CLI = _flags(bitcask_cli.build_parser())
SHELL_FLAGS = _flags(bitcask_shell.build_parser())
RESHARD = _flags(_reshard.build_parser())
COMMAND_FLAGS = _table_flags()
OURS = SERVER | CLI | SHELL_FLAGS | RESHARD | set().union(*COMMAND_FLAGS.values())


def _text(doc: Path) -> str:
    return doc.read_text(encoding="utf-8")


def _server_default(name: str) -> Any:
    """The value the server runs with when neither flag nor variable is given."""
    default = {f.name: f.default for f in fields(server_config.ServerConfig)}[name]
    if default is None and name in server_config.ENGINE_OPTIONS:
        return getattr(bitcask.Options(), name)
    return default


_SIZE = re.compile(r"^(\d+(?:\.\d+)?)\s*(KiB|MiB|GiB)?$")
_UNITS = {None: 1, "KiB": 1024, "MiB": 1024**2, "GiB": 1024**3}


def _number(text: str) -> float | None:
    """`64 MiB + 1 MiB` -> 68157440; None when it is not a number."""
    total = 0.0
    for term in text.split("+"):
        m = _SIZE.match(term.strip())
        if m is None:
            return None
        total += float(m.group(1)) * _UNITS[m.group(2)]
    return total


def _same(written: str, actual: Any) -> bool:
    written = written.strip().strip("`")
    if actual is None:
        return written == "none"
    if isinstance(actual, Path):
        return Path(written) == actual
    if isinstance(actual, (int, float)) and not isinstance(actual, bool):
        return _number(written) == actual
    return written == str(actual)


# ---- server flags: operations.md's table, --help's defaults, BITCASK_* -------------


def _operations_rows() -> dict[str, str]:
    """`--flag` -> the default cell of operations.md's flag table."""
    rows = {}
    for line in _text(OPERATIONS).splitlines():
        m = re.match(r"^\| `(--[a-z-]+)[^`]*` \| ([^|]*) \|", line)
        if m:
            rows[m.group(1)] = m.group(2).strip()
    return rows


def _server_actions() -> Iterator[argparse.Action]:
    for action in server_config.build_parser()._actions:
        if (
            action.dest in {f.name for f in fields(server_config.ServerConfig)}
            or action.dest == "auth_file"
        ):
            yield action


@pytest.mark.parametrize("action", list(_server_actions()), ids=lambda a: a.option_strings[0])
def test_each_server_flag_is_in_the_operations_table_with_its_default(
    action: argparse.Action,
) -> None:
    flag = action.option_strings[0]
    rows = _operations_rows()
    assert flag in rows, f"{flag} has no row in docs/operations.md's flag table"
    actual = None if action.dest == "auth_file" else _server_default(action.dest)
    cell = rows[flag]
    first = cell.split(" (")[0].split(",")[0]
    assert _same(first, actual), f"{flag}: operations.md says {cell!r}, the server uses {actual!r}"


@pytest.mark.parametrize("action", list(_server_actions()), ids=lambda a: a.option_strings[0])
def test_each_server_flag_help_states_its_default_and_variable(action: argparse.Action) -> None:
    flag = action.option_strings[0]
    help_text = action.help or ""
    assert help_text.endswith(f"[BITCASK_{action.dest.upper()}]"), help_text
    if action.dest in ("auth", "auth_file"):
        return  # no default: no token
    m = re.search(r"\(default ([^):]+)[):]", help_text)
    assert m, f"{flag}: --help does not say its default: {help_text!r}"
    actual = _server_default(action.dest)
    assert _same(m.group(1), actual), f"{flag}: --help says {m.group(1)!r}, it is {actual!r}"


def test_operations_table_lists_no_flag_the_server_lacks() -> None:
    assert set(_operations_rows()) <= SERVER


# ---- client flags: shell.md's table ------------------------------------------------


def _shell_rows() -> dict[str, tuple[str, str]]:
    """`--flag` -> (variable cell, default cell) of shell.md's connection table."""
    rows = {}
    for line in _text(SHELL).splitlines():
        m = re.match(r"^\| `(--[a-z-]+)[^|]*\|([^|]*)\|([^|]*)\|$", line)
        if m:
            rows.setdefault(m.group(1), (m.group(2).strip("` "), m.group(3).strip()))
    return rows


def _connection_actions() -> list[argparse.Action]:
    parser = bitcask_shell.build_parser()
    group = next(g for g in parser._action_groups if g.title and "connection" in g.title)
    return list(group._group_actions)


@pytest.mark.parametrize("action", _connection_actions(), ids=lambda a: a.option_strings[0])
def test_each_connection_flag_is_in_shell_md_with_its_variable(action: argparse.Action) -> None:
    flag = action.option_strings[0]
    rows = _shell_rows()
    assert flag in rows, f"{flag} has no row in docs/shell.md's connection table"
    named = _ENV.findall(action.help or "")
    assert rows[flag][0] == (named[0] if named else ""), (flag, rows[flag], action.help)
    m = re.search(r"default ([^);]+)\)", action.help or "")
    if m:
        assert rows[flag][1].strip("`") == m.group(1), (flag, rows[flag], action.help)
        actual = getattr(ConnectOptions(), action.dest)
        assert _same(m.group(1), actual), f"{flag}: --help says {m.group(1)!r}, it is {actual!r}"


def test_every_flag_of_bitcask_and_the_shell_is_in_shell_md() -> None:
    text = _text(SHELL)
    missing = sorted(f for f in (CLI | SHELL_FLAGS) if not re.search(rf"(?<![\w-]){f}\b", text))
    assert not missing, f"docs/shell.md does not name {missing}"


@pytest.mark.parametrize("name", sorted(n for n, f in COMMAND_FLAGS.items() if f))
def test_every_option_of_a_command_is_in_shell_md(name: str) -> None:
    paragraphs = _text(SHELL).split("\n\n")
    for flag in COMMAND_FLAGS[name]:
        assert any(
            re.search(rf"\b{name}\b", p) and re.search(rf"(?<![\w-]){flag}\b", p)
            for p in paragraphs
        ), f"docs/shell.md has no paragraph naming both {name} and its {flag}"


def test_every_reshard_flag_is_in_scaling_md() -> None:
    text = _text(SCALING)
    missing = sorted(f for f in RESHARD - {"--help"} if f not in text)
    assert not missing, f"docs/scaling.md does not name reshard's {missing}"


# ---- the other way: what the docs name exists --------------------------------------


def _code(doc: Path) -> Iterator[tuple[int, str]]:
    """(line, text) of each console command and inline code span of a document."""
    fenced = None
    for number, line in enumerate(_text(doc).splitlines(), 1):
        if line.startswith("```"):
            fenced = None if fenced is not None else line[3:].strip()
            continue
        if fenced is not None:
            if fenced == "console" and line.startswith("$ "):
                yield number, line[2:]
            elif fenced in ("sh", "bash", "ini", "yaml", ""):
                yield number, line
            continue
        for span in re.findall(r"`([^`]+)`", line):
            yield number, span


def _words(text: str) -> list[str]:
    try:
        return shlex.split(text, comments=False)
    except ValueError:
        return text.split()


def _program_flags(words: list[str]) -> Iterator[tuple[str, str, set[str]]]:
    """(program, --flag, the flags that program takes) for each flag after our programs."""
    program: str | None = None
    allowed: set[str] = set()
    at_start = True  # the word is in a command's position (first, after | && ; sudo env)
    for word in words:
        if word in ("|", "&&", "||", ";") or word.endswith(";"):
            program, at_start = None, True
            continue
        base = word.rsplit("/", 1)[-1]
        starts, at_start = (
            at_start,
            word in ("sudo", "env", "exec", "time")
            or (at_start and re.fullmatch(r"[A-Z_]+=\S*", word) is not None),
        )
        if not starts and program is None:
            continue
        if starts and base == "bitcask-server":
            program, allowed = base, SERVER
        elif starts and base == "bitcask-shell":
            program, allowed = base, SHELL_FLAGS
        elif starts and base == "bitcask":
            program, allowed = base, set(CLI)
        elif starts or word == "--":  # another program, or arguments from here on
            program = None
        elif program == "bitcask" and word == "reshard":
            program, allowed = "bitcask reshard", RESHARD
        elif program == "bitcask" and word in COMMAND_FLAGS:
            allowed = allowed | COMMAND_FLAGS[word] | {"--help"}
        elif program and _FLAG.fullmatch(word.split("=", 1)[0]):
            yield program, word.split("=", 1)[0], allowed


def test_flags_written_after_our_programs_are_theirs() -> None:
    wrong = []
    for doc in DOCS:
        for number, text in _code(doc):
            for program, flag, allowed in _program_flags(_words(text)):
                if flag not in allowed:
                    wrong.append(f"{doc.relative_to(ROOT)}:{number}: {program} {flag}")
    assert not wrong, "flags the program does not have:\n" + "\n".join(wrong)


def test_every_flag_the_docs_name_belongs_to_some_program() -> None:
    unknown = []
    for doc in DOCS:
        for number, line in enumerate(_text(doc).splitlines(), 1):
            for flag in _FLAG.findall(line):
                if flag not in OURS and flag not in FOREIGN_FLAGS:
                    unknown.append(f"{doc.relative_to(ROOT)}:{number}: {flag}")
    assert not unknown, "no parser has these flags (a typo? else add to FOREIGN):\n" + "\n".join(
        unknown
    )


def _variables() -> set[str]:
    server = {server_config.ENV_PREFIX + f.name.upper() for f in fields(server_config.ServerConfig)}
    server.add(server_config.ENV_PREFIX + "AUTH_FILE")
    client = {v for a in bitcask_shell.build_parser()._actions for v in _ENV.findall(a.help or "")}
    return server | client | {"BITCASK_SHELL_CONFIG"}


def test_every_bitcask_variable_the_docs_name_exists() -> None:
    known = _variables() | {"BITCASK_FLAG"}  # `BITCASK_<FLAG>`, the pattern
    unknown = [
        f"{doc.relative_to(ROOT)}:{number}: {name}"
        for doc in DOCS
        for number, line in enumerate(_text(doc).splitlines(), 1)
        for name in _ENV.findall(line)
        if name not in known
    ]
    assert not unknown, "\n".join(unknown)


def test_the_shell_config_variable_is_in_the_shell_help() -> None:
    assert "BITCASK_SHELL_CONFIG" in bitcask_shell.build_parser().format_help()
