"""Highlighting tokens, derived from the command table."""

from __future__ import annotations

import pytest
from prompt_toolkit.document import Document

from repl._commands import COMMANDS
from repl._lexer import CommandLexer, highlight
from repl._table import SHELL


def classes(line: str) -> list[tuple[str, str]]:
    return [(f[0], f[1]) for f in highlight(line, COMMANDS, SHELL) if f[1].strip()]


@pytest.mark.parametrize(
    "line",
    ["", "   ", "get k", '  put  "a b"   v  ', 'get "open', 'put "a\\q" x', "nope a b", 'get "a"b'],
)
def test_fragments_cover_the_line_exactly(line: str) -> None:
    assert "".join(f[1] for f in highlight(line, COMMANDS, SHELL)) == line


def test_words_take_the_class_of_their_argument() -> None:
    assert classes("PUT user:1 hello ttl 5") == [
        ("class:command", "PUT"),
        ("class:key", "user:1"),
        ("class:value", "hello"),
        ("class:keyword", "ttl"),
        ("class:number", "5"),
    ]
    assert classes("scan u: u:9 10") == [
        ("class:command", "scan"),
        ("class:key", "u:"),
        ("class:key", "u:9"),
        ("class:number", "10"),
    ]
    assert classes("help get") == [("class:command", "help"), ("class:command", "get")]


def test_unknown_commands_and_extra_words_are_marked() -> None:
    assert classes("frob x")[0] == ("class:unknown", "frob")
    assert classes("get a b")[-1] == ("class:bad", "b")
    assert classes("sync now") == [("class:command", "sync"), ("class:bad", "now")]


def test_escapes_inside_quotes_are_marked() -> None:
    assert classes('get "a\\x00b\\n"') == [
        ("class:command", "get"),
        ("class:key", '"a'),
        ("class:key class:escape", "\\x00"),
        ("class:key", "b"),
        ("class:key class:escape", "\\n"),
        ("class:key", '"'),
    ]


def test_bad_quotes_are_marked() -> None:
    assert classes('get "open')[-1] == ("class:bad", '"open')
    assert classes('get "a\\q"')[-1] == ("class:bad", '"a\\q"')


def test_the_prompt_toolkit_adapter_lexes_each_line() -> None:
    get_line = CommandLexer(COMMANDS, SHELL).lex_document(Document("get k"))
    assert get_line(0) == highlight("get k", COMMANDS, SHELL)
    assert get_line(5) == []
