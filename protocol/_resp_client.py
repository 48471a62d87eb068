"""The client side of RESP, sans-IO: commands to bytes, reply bytes to Python values.

`_resp_reader.py` reads what a Redis *client* sends (requests) and `_resp_writer.py`
writes what a Redis *server* answers; this module is the mirror image of both, for a
program that talks to a Redis-protocol endpoint (redis-server, twemproxy, a
bitcask-server's RESP dialect): `encode_command(argv)` and `ReplyReader`.

Strategy / invariants:
- `ReplyReader.feed(data)` appends; `next_reply()` returns one complete reply or
  `NEED_DATA`. A reply is parsed from its first byte each time it is attempted, but
  an incomplete bulk string is recognised from its header alone (no copy, no scan),
  so a large value arriving in many chunks costs O(chunks), not O(size x chunks).
- Types (RESP2 and RESP3): simple string -> `str`, error -> `ErrorReply` (returned,
  not raised: an error is one reply among others of a pipeline), integer and big
  number -> `int`, bulk and verbatim string -> `bytes`, null (`$-1`, `*-1`, `_`) ->
  None, array, set and push -> `list`, map and attribute -> `dict`, double ->
  `float`, boolean -> `bool`. Attributes (`|`) are read and dropped, as hiredis does.
- Anything malformed (an unknown type byte, a bad length, a line without CRLF, a
  bulk not followed by CRLF, nesting deeper than `MAX_DEPTH`, a bulk over
  `MAX_BULK`) raises `RemoteProtocolError`; after that the reader is broken and
  every later call raises the same error: a byte stream that lost its framing
  cannot be trusted again.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Final, NoReturn

from protocol.errors import RemoteProtocolError

__all__ = ["MAX_BULK", "MAX_DEPTH", "NEED_DATA", "ErrorReply", "ReplyReader", "encode_command"]

MAX_BULK: Final = 512 * 1024 * 1024
"""proto-max-bulk-len: the largest bulk string a reply may carry."""
MAX_DEPTH: Final = 64
"""Deepest nesting of aggregates accepted (Redis replies nest two or three deep)."""
MAX_LINE: Final = 64 * 1024
"""Longest simple line (status, error, number) before it is a protocol error."""


class _NeedData:
    __slots__ = ()

    def __repr__(self) -> str:
        return "NEED_DATA"


NEED_DATA: Final = _NeedData()
"""What `next_reply()` returns while the buffered bytes hold no complete reply."""


@dataclass(frozen=True, slots=True)
class ErrorReply:
    """An error reply: `code` is its first word (`ERR`, `WRONGTYPE`, `NOAUTH`, ...).

    Example:
        >>> ErrorReply.parse(b"WRONGPASS invalid username-password pair")
        ErrorReply(code='WRONGPASS', message='invalid username-password pair')
    """

    code: str
    message: str

    @classmethod
    def parse(cls, line: bytes) -> ErrorReply:
        text = line.decode("utf-8", "replace")
        code, _, message = text.partition(" ")
        return cls(code, message)

    def __str__(self) -> str:
        return f"{self.code} {self.message}".strip()


def encode_command(argv: list[bytes]) -> bytes:
    """One command as a multibulk of bulk strings, the form every endpoint accepts.

    Example:
        >>> encode_command([b"GET", b"k"])
        b'*2\\r\\n$3\\r\\nGET\\r\\n$1\\r\\nk\\r\\n'
    """
    out = [b"*%d\r\n" % len(argv)]
    for arg in argv:
        out.append(b"$%d\r\n" % len(arg))
        out.append(arg)
        out.append(b"\r\n")
    return b"".join(out)


class _Incomplete(Exception):
    """Internal: the buffer ends inside the reply being parsed."""


_AGGREGATES = frozenset(b"*~>%|")


class ReplyReader:
    """Incremental RESP2/RESP3 reply parser (bytes in, Python values out).

    Example:
        >>> r = ReplyReader()
        >>> r.feed(b"+OK\\r\\n$5\\r\\nhel")
        >>> r.next_reply(), r.next_reply()
        ('OK', NEED_DATA)
        >>> r.feed(b"lo\\r\\n")
        >>> r.next_reply()
        b'hello'
    """

    def __init__(self) -> None:
        self._buf = bytearray()
        self._pos = 0
        self._error: RemoteProtocolError | None = None

    def feed(self, data: bytes) -> None:
        if self._error is not None:
            raise self._error
        self._buf += data

    @property
    def buffered(self) -> int:
        """Bytes received that are not yet part of a complete reply (one under way)."""
        return len(self._buf) - self._pos

    def next_reply(self) -> Any:
        """The next complete reply, or `NEED_DATA`.

        Raises:
            RemoteProtocolError: the bytes are not RESP (now and on every later call).
        """
        if self._error is not None:
            raise self._error
        try:
            value, end = self._parse(self._pos, 0)
        except _Incomplete:
            if self._pos:  # drop what was consumed, so the buffer holds one reply at most
                del self._buf[: self._pos]
                self._pos = 0
            return NEED_DATA
        except RemoteProtocolError as exc:
            self._error = exc
            raise
        self._pos = end
        if self._pos == len(self._buf):
            self._buf.clear()
            self._pos = 0
        return value

    # -- parsing ------------------------------------------------------------------

    def _line(self, start: int) -> tuple[bytes, int]:
        end = self._buf.find(b"\r\n", start)
        if end < 0:
            if len(self._buf) - start > MAX_LINE:
                self._fail("reply line too long")
            raise _Incomplete
        if end - start > MAX_LINE:
            self._fail("reply line too long")
        return bytes(self._buf[start:end]), end + 2

    def _int(self, text: bytes, what: str) -> int:
        try:
            if not text or text != text.strip():
                raise ValueError
            return int(text)
        except ValueError:
            self._fail(f"bad {what} {text[:40]!r}")

    def _fail(self, message: str) -> NoReturn:
        raise RemoteProtocolError(f"malformed RESP reply: {message}")

    def _parse(self, pos: int, depth: int) -> tuple[Any, int]:
        if pos >= len(self._buf):
            raise _Incomplete
        kind = self._buf[pos]
        line, after = self._line(pos + 1)
        if kind == 0x2B:  # + simple string
            return line.decode("utf-8", "surrogateescape"), after
        if kind == 0x2D:  # - error
            return ErrorReply.parse(line), after
        if kind == 0x3A or kind == 0x28:  # : integer, ( big number
            return self._int(line, "integer"), after
        if kind == 0x24 or kind == 0x3D or kind == 0x21:  # $ bulk, = verbatim, ! bulk error
            return self._bulk(kind, line, after)
        if kind == 0x5F:  # _ null
            if line:
                self._fail("null with a payload")
            return None, after
        if kind == 0x2C:  # , double
            return self._double(line), after
        if kind == 0x23:  # # boolean
            if line not in (b"t", b"f"):
                self._fail(f"bad boolean {line[:40]!r}")
            return line == b"t", after
        if kind in _AGGREGATES:
            return self._aggregate(kind, line, after, depth)
        self._fail(f"unknown reply type {bytes([kind])!r}")

    def _bulk(self, kind: int, line: bytes, after: int) -> tuple[Any, int]:
        n = self._int(line, "bulk length")
        if n == -1 and kind == 0x24:
            return None, after
        if not 0 <= n <= MAX_BULK:
            self._fail(f"bulk length {n} out of range")
        end = after + n
        if len(self._buf) < end + 2:
            raise _Incomplete
        if self._buf[end : end + 2] != b"\r\n":
            self._fail("bulk string not followed by CRLF")
        data = bytes(self._buf[after:end])
        if kind == 0x21:
            return ErrorReply.parse(data), end + 2
        if kind == 0x3D:  # "txt:" or "mkd:" then the text
            if len(data) < 4 or data[3:4] != b":":
                self._fail("verbatim string without its format")
            data = data[4:]
        return data, end + 2

    def _double(self, line: bytes) -> float:
        text = line.lower()
        if text in (b"inf", b"+inf", b"-inf", b"nan"):
            return float(text.decode())
        try:
            return float(line)
        except ValueError:
            self._fail(f"bad double {line[:40]!r}")

    def _aggregate(self, kind: int, line: bytes, pos: int, depth: int) -> tuple[Any, int]:
        n = self._int(line, "aggregate length")
        if n == -1 and kind == 0x2A:
            return None, pos
        if n < 0:
            self._fail(f"aggregate length {n}")
        if depth >= MAX_DEPTH:
            self._fail(f"replies nested deeper than {MAX_DEPTH}")
        if kind == 0x25 or kind == 0x7C:  # % map, | attribute
            out: dict[Any, Any] = {}
            for _ in range(n):
                key, pos = self._parse(pos, depth + 1)
                value, pos = self._parse(pos, depth + 1)
                out[_hashable(key)] = value
            if kind == 0x7C:  # an attribute precedes the reply it describes
                return self._parse(pos, depth)
            return out, pos
        items: list[Any] = []
        for _ in range(n):
            item, pos = self._parse(pos, depth + 1)
            items.append(item)
        return items, pos


def _hashable(key: Any) -> Any:
    if isinstance(key, list):
        return tuple(_hashable(k) for k in key)
    if isinstance(key, dict):
        return tuple(key.items())
    return key
