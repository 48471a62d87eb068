"""Replies and how they are printed: styled for a terminal, raw for a pipe.

Strategy: every command returns a small `Reply` value (never a string), and this
module renders it one of two ways:

- `styled()`: a list of (style class, text) fragments for a terminal, in the
  redis-cli/iredis manner (`"value"`, `(nil)`, `(integer) 3`, numbered lists). Every
  value is shown quoted with escapes, so binary values and values with spaces or
  newlines are unambiguous and always one line. Colour is applied later by the
  style; with NO_COLOR the same fragments print without it.
- `raw()`: bytes for a pipe, like `redis-cli --raw`: a value's exact bytes then a
  newline, integers as digits, nil as an empty line, lists one item per line, maps
  as one JSON object per line (so `bitcask stats | jq .keys` works), reports
  (check, repair, merge DIR) as their summary lines.

Invariant: no styled fragment holds a control character (C0 but the newline that
ends a line, DEL, C1) or an undecodable byte: values and keys are escaped by
`escape_bytes`, and every other text (a status word, a stat name or value, a report)
by `terminal_safe`, because an endpoint's INFO, a PING reply or a data path can carry
escape sequences, and a terminal runs what it is sent.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping, Sequence
from typing import Any

from ._parse import escape_bytes

__all__ = [
    "Bool",
    "Fragments",
    "Int",
    "Items",
    "Nil",
    "Number",
    "Reply",
    "Report",
    "Status",
    "Table",
    "Text",
    "Ttl",
    "Value",
    "error_line",
    "plain",
    "raw",
    "styled",
    "terminal_safe",
]

Fragments = list[tuple[str, str]]


class _Reply:
    """What the reply classes share: equality, hash and repr over their fields (the
    `__slots__`, which `__match_args__` repeats for `match`), as a frozen dataclass
    would give them. Plain classes and not dataclasses because a `bitcask` command
    loads this module on every run: as eleven frozen dataclasses they cost 31M more
    instructions at import, of a one-shot `get`'s 428M (dataclasses exec()s six
    methods per class; callgrind, CPython 3.11). Nothing assigns to a reply after it
    is made (they were frozen dataclasses)."""

    __slots__: tuple[str, ...] = ()

    def _fields(self) -> tuple[Any, ...]:
        return tuple(getattr(self, name) for name in self.__slots__)

    def __eq__(self, other: object) -> bool:
        if other.__class__ is not self.__class__:
            return NotImplemented
        return self._fields() == other._fields()  # type: ignore[attr-defined]

    def __hash__(self) -> int:
        return hash(self._fields())

    def __repr__(self) -> str:
        inner = ", ".join(f"{name}={getattr(self, name)!r}" for name in self.__slots__)
        return f"{type(self).__name__}({inner})"


class Status(_Reply):
    """A short status word: OK, PONG."""

    __slots__ = __match_args__ = ("word",)

    def __init__(self, word: str) -> None:
        self.word = word


class Value(_Reply):
    """A stored value (or a key): arbitrary bytes."""

    __slots__ = __match_args__ = ("data",)

    def __init__(self, data: bytes) -> None:
        self.data = data


class Nil(_Reply):
    """No value: a missing key."""

    __slots__ = __match_args__ = ()


class Int(_Reply):
    __slots__ = __match_args__ = ("value",)

    def __init__(self, value: int) -> None:
        self.value = value


class Number(_Reply):
    __slots__ = __match_args__ = ("value", "unit")

    def __init__(self, value: float, unit: str = "") -> None:
        self.value = value
        self.unit = unit


class Bool(_Reply):
    __slots__ = __match_args__ = ("value",)

    def __init__(self, value: bool) -> None:
        self.value = value


class Ttl(_Reply):
    """Seconds left, or None for a key without TTL, or missing=True."""

    __slots__ = __match_args__ = ("seconds", "missing")

    def __init__(self, seconds: float | None, missing: bool = False) -> None:
        self.seconds = seconds
        self.missing = missing


class Items(_Reply):
    """An ordered list of replies (mget, keys, scan pages)."""

    __slots__ = __match_args__ = ("items", "empty", "numbered")

    def __init__(
        self, items: tuple[Reply, ...], empty: str = "(empty list)", numbered: bool = True
    ) -> None:
        self.items = items
        self.empty = empty
        self.numbered = numbered


class Table(_Reply):
    """A map (stats, reports): nested dicts are flattened with dots when styled."""

    __slots__ = __match_args__ = ("data",)

    def __init__(self, data: Mapping[str, Any] | None = None) -> None:
        self.data: Mapping[str, Any] = {} if data is None else data


class Text(_Reply):
    """Plain text (help, summaries), printed as is in both modes."""

    __slots__ = __match_args__ = ("text",)

    def __init__(self, text: str) -> None:
        self.text = text


class Report(_Reply):
    """An engine report: its summary lines (printed in both modes) and its fields
    (for the exit-code rule; `check` exits 1 when `data["ok"]` is false)."""

    __slots__ = __match_args__ = ("text", "data")

    def __init__(self, text: str, data: Mapping[str, Any] | None = None) -> None:
        self.text = text
        self.data: Mapping[str, Any] = {} if data is None else data


Reply = Status | Value | Nil | Int | Number | Bool | Ttl | Items | Table | Text | Report


# Patterns, compiled by `re` on first use (and cached there): a `bitcask get` never
# needs them, and compiling both at import cost 5M instructions (callgrind)
_CONTROL = "[\x00-\x1f\x7f-\x9f\udc80-\udcff]"
_CONTROL_BUT_NEWLINE = "[\x00-\x09\x0b-\x1f\x7f-\x9f\udc80-\udcff]"


def _hex(match: re.Match[str]) -> str:
    code = ord(match.group())
    return f"\\x{code - 0xDC00 if code >= 0xDC80 else code:02x}"


def terminal_safe(text: str, *, lines: bool = False) -> str:
    r"""`text` with what a terminal would act on shown as `\xNN`: control characters
    (C0, DEL, C1; newlines too unless `lines`) and undecodable bytes (surrogates).

    Example:
        >>> print(terminal_safe("7.0\x1b[2J\x07\udcff"), terminal_safe("a\nb"))
        7.0\x1b[2J\x07\xff a\x0ab
    """
    return re.sub(_CONTROL_BUT_NEWLINE if lines else _CONTROL, _hex, text)


def _fmt_float(x: float) -> str:
    if math.isfinite(x) and x == int(x) and abs(x) < 1e15:
        return str(int(x))
    return f"{x:.6g}" if abs(x) >= 1e-3 or x == 0 else repr(x)


def styled(reply: Reply, indent: int = 0) -> Fragments:
    """Fragments for a terminal; the result ends with a newline.

    Example:
        >>> styled(Value(b"a\\x00"))
        [('class:value', '"a\\\\x00"'), ('', '\\n')]
    """
    frags: Fragments = []
    _styled(reply, frags, indent)
    if not frags or not frags[-1][1].endswith("\n"):
        frags.append(("", "\n"))
    return frags


def _styled(reply: Reply, out: Fragments, indent: int) -> None:
    match reply:
        case Status(word):
            out.append(("class:status", terminal_safe(word)))
        case Value(data):
            out.append(("class:value", f'"{escape_bytes(data)}"'))
        case Nil():
            out.append(("class:nil", "(nil)"))
        case Int(value):
            out.append(("class:number", f"(integer) {value}"))
        case Number(value, unit):
            out.append(("class:number", f"(float) {_fmt_float(value)}{unit}"))
        case Bool(value):
            out.append(("class:number", "(true)" if value else "(false)"))
        case Ttl(seconds, missing):
            if missing:
                out.append(("class:nil", "(no such key)"))
            elif seconds is None:
                out.append(("class:nil", "(no ttl)"))
            else:
                out.append(("class:number", f"(ttl) {seconds:.3f} s"))
        case Items(items, empty, numbered):
            _styled_items(items, empty, numbered, out, indent)
        case Table(data):
            _styled_table(data, out)
        case Text(text) | Report(text, _):
            out.append(("", terminal_safe(text, lines=True)))


def _styled_items(
    items: Sequence[Reply], empty: str, numbered: bool, out: Fragments, indent: int
) -> None:
    if not items:
        out.append(("class:nil", empty))
        return
    width = len(str(len(items)))
    for n, item in enumerate(items, 1):
        if n > 1:
            out.append(("", "\n" + " " * indent))
        if numbered:
            out.append(("class:index", f"{n:>{width}}) "))
        _styled(item, out, indent + width + 2)


def plain(reply: Reply) -> bytes:
    r"""The styled layout without colour, as bytes: what a terminal is sent when colour
    is off (NO_COLOR, TERM=dumb) or not drawn (a piped `bitcask-shell` writing to a
    terminal), and what --no-raw writes to a pipe. Escaped as `styled` escapes.

    Example:
        >>> plain(Items((Value(b"\x1b[2J"), Nil())))
        b'1) "\\x1b[2J"\n2) (nil)\n'
    """
    return "".join(text for _, text in styled(reply)).encode("utf-8", "surrogateescape")


def flatten(data: Mapping[str, Any], prefix: str = "") -> list[tuple[str, Any]]:
    """Nested maps as dotted names; lists of maps as name[i].field."""
    rows: list[tuple[str, Any]] = []
    for key, val in data.items():
        name = f"{prefix}{key}"
        if isinstance(val, Mapping):
            rows.extend(flatten(val, name + "."))
        elif isinstance(val, list | tuple) and val and all(isinstance(v, Mapping) for v in val):
            for i, sub in enumerate(val):
                rows.extend(flatten(sub, f"{name}[{i}]."))
        else:
            rows.append((name, val))
    return rows


def _scalar(val: Any) -> str:
    if isinstance(val, bytes):
        return f'"{escape_bytes(val)}"'
    if isinstance(val, bool) or val is None:
        return _json(val)
    if isinstance(val, float):
        return _fmt_float(val)
    if isinstance(val, list | tuple):
        return "[" + ", ".join(_scalar(v) for v in val) + "]"
    return terminal_safe(str(val))


def _styled_table(data: Mapping[str, Any], out: Fragments) -> None:
    rows = flatten(data)
    if not rows:
        out.append(("class:nil", "(empty map)"))
        return
    rows = [(terminal_safe(name), val) for name, val in rows]
    width = max(len(name) for name, _ in rows)
    for n, (name, val) in enumerate(rows):
        if n:
            out.append(("", "\n"))
        out.append(("class:field", f"{name:<{width}}"))
        out.append(("", "  "))
        out.append(("class:number" if isinstance(val, int | float) else "", _scalar(val)))


def _json(obj: Any, **options: Any) -> str:
    """json.dumps, imported on first use: only maps (stats, reports) are written as
    JSON, and a `bitcask get` does not pay for the json package (~2.5 ms of imports)."""
    import json

    return json.dumps(obj, **options)


def _json_default(obj: Any) -> Any:
    if isinstance(obj, bytes):
        return obj.decode("utf-8", "backslashreplace")
    return str(obj)


def raw(reply: Reply) -> bytes:
    """Bytes for a pipe; the result ends with a newline (a nil is an empty line).

    Example:
        >>> raw(Items((Value(b"a"), Nil(), Int(3))))
        b'a\\n\\n3\\n'
    """
    match reply:
        case Status(word):  # an endpoint's bytes that are not UTF-8 come as surrogates
            return word.encode("utf-8", "surrogateescape") + b"\n"
        case Value(data):
            return data + b"\n"
        case Nil():
            return b"\n"
        case Int(value):
            return f"{value}\n".encode()
        case Number(value, _):
            return f"{_fmt_float(value)}\n".encode()
        case Bool(value):
            return b"1\n" if value else b"0\n"
        case Ttl(seconds, missing):
            num = -2 if missing else (-1 if seconds is None else seconds)
            return f"{_fmt_float(num)}\n".encode()
        case Items(items, _, _):
            return b"".join(raw(item) for item in items)
        case Table(data):
            return _json(data, default=_json_default, sort_keys=False).encode() + b"\n"
        case Text(text) | Report(text, _):
            return text.encode("utf-8", "surrogateescape") + (b"" if text.endswith("\n") else b"\n")
    raise TypeError(f"not a reply: {reply!r}")


def error_line(message: str) -> Fragments:
    """The one line every failure prints: `(error) message`."""
    return [("class:error", f"(error) {message}"), ("", "\n")]
