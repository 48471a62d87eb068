"""Output formatting: styled for a terminal, raw for a pipe, binary-safe, NO_COLOR."""

from __future__ import annotations

import io
import json

import pytest
from hypothesis import given
from hypothesis import strategies as st
from prompt_toolkit import print_formatted_text
from prompt_toolkit.data_structures import Size
from prompt_toolkit.formatted_text import FormattedText
from prompt_toolkit.output.vt100 import Vt100_Output

from repl._format import (
    Bool,
    Int,
    Items,
    Nil,
    Number,
    Report,
    Status,
    Table,
    Text,
    Ttl,
    Value,
    error_line,
    raw,
    styled,
)  # fmt: skip
from repl._parse import tokenize
from repl._style import build_style


def plain(reply: object) -> str:
    return "".join(t for _, t in styled(reply))  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("reply", "shown", "piped"),
    [
        pytest.param(Status("OK"), "OK", b"OK\n", id="status"),
        pytest.param(Value(b"hello"), '"hello"', b"hello\n", id="text"),
        pytest.param(Value(b"a\x00\xff"), '"a\\x00\\xff"', b"a\x00\xff\n", id="binary"),
        pytest.param(Value(b"two\nlines"), '"two\\nlines"', b"two\nlines\n", id="newline"),
        pytest.param(Value("✓ café".encode()), '"✓ café"', "✓ café\n".encode(), id="utf8"),
        pytest.param(Nil(), "(nil)", b"\n", id="nil"),
        pytest.param(Int(3), "(integer) 3", b"3\n", id="int"),
        pytest.param(Number(2.5), "(float) 2.5", b"2.5\n", id="float"),
        pytest.param(Bool(True), "(true)", b"1\n", id="true"),
        pytest.param(Bool(False), "(false)", b"0\n", id="false"),
        pytest.param(Ttl(4.25), "(ttl) 4.250 s", b"4.25\n", id="ttl"),
        pytest.param(Ttl(None), "(no ttl)", b"-1\n", id="no-ttl"),
        pytest.param(Ttl(None, missing=True), "(no such key)", b"-2\n", id="ttl-missing"),
        pytest.param(Items(()), "(empty list)", b"", id="empty-list"),
        pytest.param(
            Text("line one\nline two"),
            "line one\nline two",
            b"line one\nline two\n",
            id="text-block",
        ),
    ],
)
def test_styled_and_raw(reply: object, shown: str, piped: bytes) -> None:
    assert plain(reply) == shown + "\n"
    assert raw(reply) == piped  # type: ignore[arg-type]


def test_lists_are_numbered_and_aligned() -> None:
    reply = Items((*(Value(f"k{i}".encode()) for i in range(10)), Nil()))
    lines = plain(reply).splitlines()
    assert lines[0] == ' 1) "k0"'
    assert lines[-1] == "11) (nil)"
    assert raw(reply) == b"".join(f"k{i}\n".encode() for i in range(10)) + b"\n"


def test_nested_lists_indent_like_redis_cli() -> None:
    reply = Items((Value(b"u:9"), Items((Value(b"u:1"), Value(b"u:2")))))
    assert plain(reply) == '1) "u:9"\n2) 1) "u:1"\n   2) "u:2"\n'
    assert raw(reply) == b"u:9\nu:1\nu:2\n"


def test_tables_flatten_nested_maps_and_raw_is_json() -> None:
    data = {
        "keys": 3,
        "recovery": {"truncated_bytes": 0},
        "files": [{"id": 1, "size": 10}],
        "sync": "always",
    }
    lines = plain(Table(data)).splitlines()
    assert lines == [
        "keys                      3",
        "recovery.truncated_bytes  0",
        "files[0].id               1",
        "files[0].size             10",
        "sync                      always",
    ]
    assert json.loads(raw(Table(data))) == data


def test_reports_print_their_summary_in_both_modes() -> None:
    rep = Report("check ./d: OK; 1 files", {"ok": True, "files": 1})
    assert plain(rep) == "check ./d: OK; 1 files\n"
    assert raw(rep) == b"check ./d: OK; 1 files\n"


def _render(frags: list[tuple[str, str]], plain_style: bool) -> str:
    buf = io.StringIO()
    out = Vt100_Output(buf, lambda: Size(24, 80), term="xterm")
    print_formatted_text(
        FormattedText(frags),
        style=build_style({"value": "ansired", "error": "bold ansired"}, plain=plain_style),
        output=out,
        end="",
    )
    return buf.getvalue()


def test_colour_is_applied_and_no_color_removes_it() -> None:
    coloured = _render(styled(Value(b"v")), plain_style=False)
    assert "\x1b[" in coloured and '"v"' in coloured
    bare = _render(error_line("boom"), plain_style=True)
    assert "(error) boom" in bare
    assert "31m" not in bare and "91m" not in bare


def test_no_color_env_is_respected(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("NO_COLOR", "1")
    style = build_style({"key": "ansicyan"})
    assert style.get_attrs_for_style_str("class:key").color in ("", None)
    monkeypatch.setenv("NO_COLOR", "")
    assert build_style({"key": "ansicyan"}).get_attrs_for_style_str("class:key").color == "ansicyan"


def test_error_line() -> None:
    assert error_line("KEY_TOO_LARGE key is big") == [
        ("class:error", "(error) KEY_TOO_LARGE key is big"),
        ("", "\n"),
    ]


def test_styled_text_from_an_endpoint_carries_no_control_characters() -> None:
    """A PING status, a stat's name and value, a report's text: shown with `\\xNN`,
    so a terminal never runs what an endpoint sent (values were already escaped)."""
    evil = "a\x1b]0;t\x07\x08\r\x0e\u009b2J\udcff"
    shown = "a\\x1b]0;t\\x07\\x08\\x0d\\x0e\\x9b2J\\xff"
    assert styled(Status(evil)) == [("class:status", shown), ("", "\n")]
    table = styled(Table({evil: evil, "path": "/data\nfake: 1"}))
    pad = " " * (len(shown) - 4)
    assert "".join(t for _, t in table) == f"{shown}  {shown}\npath{pad}  /data\\x0afake: 1\n"
    assert styled(Text(f"line 1\n{evil}")) == [("", f"line 1\n{shown}"), ("", "\n")]
    for reply in (Status(evil), Table({evil: [evil]}), Report(evil), Text(evil)):
        text = "".join(t for _, t in styled(reply))
        assert not any((ord(c) < 0x20 and c != "\n") or 0x7F <= ord(c) <= 0x9F for c in text)


@given(st.one_of(st.binary(max_size=48), st.text(max_size=24).map(str.encode)))
def test_every_character_a_terminal_is_sent_for_a_key_is_printable(data: bytes) -> None:
    """The rule docs/shell.md states: whatever bytes a key or value holds (C0, DEL, C1,
    bidi controls, bytes that are not UTF-8), the formatted form sends a terminal only
    printable characters, and its quoted text is typed back to the same bytes."""
    shown = plain(Items((Value(data), Value(data))))
    assert all(ch.isprintable() or ch == "\n" for ch in shown), ascii(shown)
    first = shown.split("\n")[0].removeprefix("1) ")
    assert tokenize(f"get {first}")[1].value == data


def test_replies_compare_hash_and_print_as_the_frozen_dataclasses_did() -> None:
    # The reply classes are plain slotted classes (cheaper to import than dataclasses):
    # equality by class and fields, a hash from the fields, a dataclass-style repr,
    # positional match patterns, defaults as before.
    assert Int(3) == Int(3) and hash(Int(3)) == hash(Int(3)) and Nil() == Nil()
    assert Int(1) != Bool(True) and Int(1) != 1 and Value(b"a") != Value(b"b")
    assert len({Status("OK"), Status("OK"), Text("OK")}) == 2
    assert Table() == Table({}) and Report("r").data == {} and Items(()).numbered
    assert repr(Items((Value(b"a"), Nil()))) == (
        "Items(items=(Value(data=b'a'), Nil()), empty='(empty list)', numbered=True)"
    )
    assert repr(Number(1.5, "s")) == "Number(value=1.5, unit='s')"
    match Ttl(2.0):
        case Ttl(seconds, missing):
            assert (seconds, missing) == (2.0, False)
    with pytest.raises(AttributeError):
        Int(3).other = 4  # type: ignore[attr-defined]
