"""Redis reply encoding, RESP2 and RESP3, sans-IO: Python values in, bytes out.

Strategy / invariants:
- One function per RESP type, each taking the protocol version (2 or 3) where the
  two differ, plus `encode(value, proto)` that maps plain Python values onto them:
  bytes -> bulk, str -> simple string, bool -> boolean, int -> integer, float ->
  double, None -> null, list/tuple -> array, dict -> map, set/frozenset -> set,
  and the wrappers `ErrorReply`, `Verbatim`, `NullArray`, `Status` for the rest.
- RESP2 has no map, set, double, boolean, null or verbatim type: maps flatten to
  arrays of 2n items, sets are arrays, doubles are bulk strings formatted as Redis
  7.0 formats them (`%.17g`, `inf`/`-inf`), booleans are integers 1/0, verbatim
  strings are bulk strings, null is `$-1` (null bulk) or `*-1` (null array).
- A simple string or error never contains CR or LF: Redis replaces them by spaces
  (addReplyError), and so does this module, so one reply is always one line.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

__all__ = [
    "ErrorReply",
    "NullArray",
    "RespWriter",
    "Status",
    "Verbatim",
    "encode",
    "encode_array_header",
    "encode_boolean",
    "encode_bulk",
    "encode_double",
    "encode_error",
    "encode_integer",
    "encode_map_header",
    "encode_null",
    "encode_null_array",
    "encode_set_header",
    "encode_simple",
    "encode_verbatim",
    "format_double",
]

_NO_CRLF = bytes.maketrans(b"\r\n", b"  ")

OK = b"+OK\r\n"


@dataclass(frozen=True, slots=True)
class ErrorReply:
    """An error reply: `message` starts with its code, e.g. "ERR syntax error" or "WRONGTYPE ..."."""

    message: str


@dataclass(frozen=True, slots=True)
class Status:
    """A simple string given as bytes (a `str` value is already one)."""

    value: bytes


@dataclass(frozen=True, slots=True)
class Verbatim:
    """A verbatim string (RESP3 `=`, e.g. INFO's text); `fmt` is three letters, "txt" or "mkd"."""

    value: bytes
    fmt: str = "txt"


@dataclass(frozen=True, slots=True)
class NullArray:
    """The null of an array-shaped reply: `*-1` in RESP2 (EXEC aborted by WATCH), `_` in RESP3."""


def _line(text: bytes) -> bytes:
    return text.translate(_NO_CRLF)


def encode_simple(value: bytes | str) -> bytes:
    """`+value` (CR/LF become spaces). Example: encode_simple("OK") == b"+OK\\r\\n"."""
    raw = value.encode() if isinstance(value, str) else value
    return b"+" + _line(raw) + b"\r\n"


def encode_error(message: str | bytes) -> bytes:
    """`-message`; the message starts with its code ("ERR ...", "WRONGTYPE ...").

    Example:
        >>> encode_error("ERR syntax error")
        b'-ERR syntax error\\r\\n'
    """
    raw = message.encode() if isinstance(message, str) else message
    return b"-" + _line(raw) + b"\r\n"


def encode_integer(value: int) -> bytes:
    """`:value` (a signed 64-bit integer in Redis)."""
    return b":%d\r\n" % value


def encode_bulk(value: bytes) -> bytes:
    """`$len` then the bytes. Example: encode_bulk(b"hi") == b"$2\\r\\nhi\\r\\n"."""
    return b"$%d\r\n%b\r\n" % (len(value), value)


def encode_null(proto: int) -> bytes:
    """The null of a bulk-shaped reply: `$-1` in RESP2, `_` in RESP3."""
    return b"_\r\n" if proto == 3 else b"$-1\r\n"


def encode_null_array(proto: int) -> bytes:
    """The null of an array-shaped reply: `*-1` in RESP2, `_` in RESP3."""
    return b"_\r\n" if proto == 3 else b"*-1\r\n"


def encode_array_header(count: int) -> bytes:
    """`*count`; the items follow."""
    return b"*%d\r\n" % count


def encode_map_header(pairs: int, proto: int) -> bytes:
    """`%pairs` in RESP3; `*2pairs` (a flat key, value, ... array) in RESP2."""
    return b"%%%d\r\n" % pairs if proto == 3 else b"*%d\r\n" % (2 * pairs)


def encode_set_header(count: int, proto: int) -> bytes:
    """`~count` in RESP3, `*count` in RESP2."""
    return b"~%d\r\n" % count if proto == 3 else b"*%d\r\n" % count


def format_double(value: float) -> bytes:
    """A double as Redis 7.0 prints it: `%.17g`, and `inf`, `-inf`, `nan`.

    Example:
        >>> format_double(1.5), format_double(0.1), format_double(float("-inf"))
        (b'1.5', b'0.10000000000000001', b'-inf')
    """
    if math.isinf(value):
        return b"inf" if value > 0 else b"-inf"
    if math.isnan(value):
        return b"nan"
    return b"%.17g" % value


def encode_double(value: float, proto: int) -> bytes:
    """`,value` in RESP3; a bulk string of `format_double(value)` in RESP2."""
    text = format_double(value)
    return b",%b\r\n" % text if proto == 3 else encode_bulk(text)


def encode_boolean(value: bool, proto: int) -> bytes:
    """`#t`/`#f` in RESP3; `:1`/`:0` in RESP2."""
    if proto == 3:
        return b"#t\r\n" if value else b"#f\r\n"
    return b":1\r\n" if value else b":0\r\n"


def encode_verbatim(value: bytes, proto: int, fmt: str = "txt") -> bytes:
    """`=len` then `fmt:` and the text in RESP3; a plain bulk string in RESP2."""
    if proto != 3:
        return encode_bulk(value)
    body = fmt.encode("ascii")[:3].ljust(3) + b":" + value
    return b"=%d\r\n%b\r\n" % (len(body), body)


def encode(value: Any, proto: int = 2) -> bytes:
    """Encode a reply value (see the module's table) for RESP `proto` (2 or 3).

    Args:
        value: bytes, str, bool, int, float, None, list/tuple, dict, set/frozenset,
            or an `ErrorReply`, `Status`, `Verbatim` or `NullArray`, nested freely.
        proto: 2 (default, as a fresh Redis connection) or 3 (after HELLO 3).

    Returns:
        The reply's bytes.

    Raises:
        TypeError: a value of no RESP type (a bug in the caller, not bad input).

    Example:
        >>> encode({b"server": b"redis", b"proto": 3}, 3)
        b'%2\\r\\n$6\\r\\nserver\\r\\n$5\\r\\nredis\\r\\n$5\\r\\nproto\\r\\n:3\\r\\n'
        >>> encode([b"a", None], 2)
        b'*2\\r\\n$1\\r\\na\\r\\n$-1\\r\\n'
    """
    out: list[bytes] = []
    _encode_into(value, proto, out)
    return b"".join(out)


def _encode_into(value: Any, proto: int, out: list[bytes]) -> None:
    kind = type(value)
    if kind is bytes:
        out.append(b"$%d\r\n%b\r\n" % (len(value), value))
    elif kind is int:
        out.append(b":%d\r\n" % value)
    elif value is None:
        out.append(encode_null(proto))
    elif kind is str:
        out.append(encode_simple(value))
    elif kind is bool:
        out.append(encode_boolean(value, proto))
    elif kind is list or kind is tuple:
        out.append(b"*%d\r\n" % len(value))
        for item in value:
            _encode_into(item, proto, out)
    elif kind is dict:
        out.append(encode_map_header(len(value), proto))
        for key, item in value.items():
            _encode_into(key, proto, out)
            _encode_into(item, proto, out)
    elif kind is set or kind is frozenset:
        out.append(encode_set_header(len(value), proto))
        for item in value:
            _encode_into(item, proto, out)
    elif kind is float:
        out.append(encode_double(value, proto))
    elif kind is ErrorReply:
        out.append(encode_error(value.message))
    elif kind is Status:
        out.append(encode_simple(value.value))
    elif kind is Verbatim:
        out.append(encode_verbatim(value.value, proto, value.fmt))
    elif kind is NullArray:
        out.append(encode_null_array(proto))
    elif isinstance(value, bytearray | memoryview):
        _encode_into(bytes(value), proto, out)
    else:
        raise TypeError(f"no RESP encoding for {kind.__name__}")


class RespWriter:
    """The reply side of one connection: remembers the protocol version HELLO chose.

    Args:
        proto: 2 (a new connection) or 3.

    Example:
        >>> w = RespWriter()
        >>> w.send(None), w.ok()
        (b'$-1\\r\\n', b'+OK\\r\\n')
        >>> w.proto = 3
        >>> w.send(None)
        b'_\\r\\n'
    """

    def __init__(self, proto: int = 2) -> None:
        self.proto = proto

    def send(self, value: Any) -> bytes:
        """`encode(value, self.proto)`."""
        return encode(value, self.proto)

    def ok(self) -> bytes:
        """`+OK`."""
        return OK

    def error(self, message: str) -> bytes:
        """An error line, e.g. `error("ERR syntax error")`."""
        return encode_error(message)
