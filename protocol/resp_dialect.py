"""The Redis protocol as a connection dialect: RESP requests in, events out.

Strategy / invariants:
- A `Dialect` (protocol/connection.py) like the binary one: `feed(bytes)` returns
  events, `render(request, result, error)` returns a reply's bytes. It is the
  dialect of every connection whose first byte is text. The bytes are read by
  `RespReader` (multibulk and inline, Redis's exact framing and protocol errors,
  hiredis when installed); nothing here raises on any input.
- HTTP on this port: a connection that does not start with `*` keeps its bytes up
  to the first `\\n` (at most one inline line, 64 KiB, so the copy is bounded); if
  that line is an HTTP request line (`looks_like_http`) the only event is a `Close`
  carrying `http_refusal`, and nothing of it runs. The bytes still go to the reader
  as they arrive, which can yield no command before that `\\n` anyway.
- A request becomes `Request(0, name, argv)`: `name` is the command's lower-case
  name, or "unknown" for a name not in the command table (so the names a server
  labels its metrics with stay a bounded set), `argv` the whole request as bytes,
  name first. What a command means is the server's business (protocol.redis_commands
  parses it there, with the server's clock); this module only moves bytes.
- Before authentication (`set_authenticated(False)`) `feed` hands out one command
  per call and keeps the rest of the bytes, as Redis reads one command at a time:
  the server runs it, sets the limits it left, and `feed(b"")` reads the next
  (`Connection.resume`). So a large command sent in the same write as a good AUTH
  passes, and after a failed one it is refused, as in Redis.
- QUIT is terminal: `+OK`, then nothing more. So is a command named POST or Host:
  (any case), with no reply at all: Redis's cross-protocol guard (below).
  A framing error (`ProtocolFailure`) is terminal too, with Redis's exact reply.
- Replies are encoded by the server with the connection's RESP version (2, or 3
  after HELLO 3), because only the server knows which HELLO came first: a result
  handed to `render` is the reply's bytes. An `ErrorInfo` (refusals decided outside
  the Redis handler: a full writer queue, shutdown, a read-only store, a disk
  error) is rendered as a Redis error line: its `message` verbatim when its name
  is not one of the protocol's `ErrorCode` names (the Redis handler's own errors,
  already "ERR ..."/"WRONGTYPE ..." text), else mapped by code (`error_line`).
"""

from __future__ import annotations

from typing import Any, Final

from protocol._events import Close, Event
from protocol._redis_table import COMMANDS
from protocol._resp_reader import INLINE_MAX, ProtocolFailure, RespReader
from protocol._resp_writer import encode_error
from protocol.errors import ErrorCode
from protocol.messages import ErrorInfo, Request, trusted_request
from protocol.refusals import http_refusal, looks_like_http

__all__ = ["OOM_ERROR", "RespDialect", "error_line"]

OOM_ERROR: Final = "OOM command not allowed when used memory > 'maxmemory'."
"""What a write refused by --max-keys answers (Redis's reply past maxmemory)."""

_CODE_NAMES = frozenset(code.name for code in ErrorCode)

# The Redis error prefix of each protocol error code (the rest are "ERR").
_PREFIX: Final = {
    ErrorCode.AUTH_REQUIRED: "NOAUTH",
    ErrorCode.AUTH_FAILED: "WRONGPASS",
    ErrorCode.READ_ONLY: "READONLY",
    ErrorCode.BUSY: "BUSY",
    ErrorCode.SHUTTING_DOWN: "ERR",
}


# A command's name as sent -> its table name (or "unknown"): most loads send a few
# spellings of a few commands, so one dict lookup replaces a decode, a lower() and
# the table lookup per request. Bounded: spellings of known commands only, at most
# _MAX_NAMES of them (any case mix of a long name is a different key).
_NAMES: dict[bytes, str] = {}
_MAX_NAMES = 1024


def _name_of(raw: bytes) -> str:
    name = raw.decode("latin-1").lower()
    if name not in COMMANDS:  # a bounded set of names (metrics are labelled by it)
        return "unknown"
    if len(_NAMES) < _MAX_NAMES:
        _NAMES[raw] = name
    return name


def error_line(error: ErrorInfo) -> bytes:
    """The Redis error line of an error: the Redis handler's own text, or a mapped code.

    Example:
        >>> error_line(ErrorInfo.from_code(ErrorCode.STORE_FULL, "no room"))
        b"-OOM command not allowed when used memory > 'maxmemory'.\\r\\n"
        >>> error_line(ErrorInfo.from_code(ErrorCode.BUSY, "writer queue full; retry later"))
        b'-BUSY writer queue full; retry later\\r\\n'
        >>> error_line(ErrorInfo(102, "ERR", "ERR syntax error"))
        b'-ERR syntax error\\r\\n'
    """
    if error.name not in _CODE_NAMES:
        return encode_error(error.message.encode("latin-1", "replace"))
    if error.code == ErrorCode.STORE_FULL:
        return encode_error(OOM_ERROR)
    prefix = _PREFIX.get(ErrorCode(error.code), "ERR") if error.code in _CODES else "ERR"
    return encode_error(f"{prefix} {error.message or error.name.lower()}")


_CODES = frozenset(int(code) for code in ErrorCode)
_QUIT_OK = b"+OK\r\n"
# Redis's guard against cross-protocol scripting (securityWarningCommand): a command
# named POST or Host: is an HTTP request's line or header sent to this port by a
# web page or a proxy, whatever its case; the connection closes with no reply and
# nothing after it runs (an HTTP request line itself is refused before, above).
_CROSS_PROTOCOL = frozenset({b"post", b"host:"})
_CROSS_PROTOCOL_ERROR = ErrorInfo.from_code(
    ErrorCode.PROTOCOL_ERROR, "POST or Host: on the Redis port (cross-protocol scripting)"
)


class RespDialect:
    """Redis requests (multibulk and inline commands), Redis replies.

    Args:
        max_bulk: the largest bulk string of a request (the server passes its
            max_frame, so no request is larger than a binary one may be).
        use_hiredis: None picks hiredis's C reader when importable.
        http_port: named in the refusal an HTTP request line gets (0 if None).
        authenticated: False applies Redis's pre-AUTH limits (at most 10 arguments
            of at most 16,384 bytes) until set_authenticated(True).

    Example:
        >>> d = RespDialect(use_hiredis=False)
        >>> [e.params for e in d.feed(b"*2\\r\\n$3\\r\\nGET\\r\\n$1\\r\\nk\\r\\nPING\\r\\n")]
        [[b'GET', b'k'], [b'PING']]
        >>> d.feed(b"QUIT\\r\\nPING\\r\\n")
        [Close(error=None, data=b'+OK\\r\\n')]
    """

    name = "resp"
    __slots__ = ("_ended", "_head", "_http_port", "_reader")

    def __init__(
        self,
        max_bulk: int = 512 * 1024 * 1024,
        use_hiredis: bool | None = None,
        http_port: int | None = None,
        authenticated: bool = True,
    ) -> None:
        self._reader = RespReader(
            use_hiredis=use_hiredis, max_bulk=max_bulk, authenticated=authenticated
        )
        self._ended = False
        self._http_port = http_port or 0
        # The first line, while it may still be an HTTP request line; None once decided.
        self._head: bytearray | None = bytearray()

    def set_authenticated(self, on: bool) -> None:
        """Lift (True) or apply (False) Redis's pre-AUTH limits for what is read next."""
        self._reader.authenticated = on

    @property
    def buffered(self) -> int:
        """Bytes held for a request not complete yet."""
        return self._reader.buffered

    def discard_input(self) -> None:
        """The peer is gone: drop what the reader holds, read nothing more."""
        self._ended = True
        reader = self._reader
        self._reader = RespReader(use_hiredis=False, max_bulk=reader.max_bulk)
        self._head = None

    def feed(self, data: bytes) -> list[Event]:
        if self._ended:
            return []
        if self._head is not None and data and self._http(data):
            self._ended = True
            error = ErrorInfo.from_code(ErrorCode.PROTOCOL_ERROR, "HTTP on the binary port")
            return [Close(error, http_refusal(self._http_port))]
        reader = self._reader
        reader.feed(data)
        events: list[Event] = []
        append = events.append
        # Before AUTH, one command per call, as Redis reads them: the next is read
        # under the limits the server sets once this one ran (feed(b"") reads on).
        # redis-benchmark -a sends AUTH and an MSET (or a 20 KiB SET) in one write:
        # read together, the MSET failed the pre-AUTH limits Redis had lifted.
        one = not reader.authenticated
        while True:
            argv = reader.next_command()
            if argv is None:
                return events
            if type(argv) is ProtocolFailure:
                error = ErrorInfo.from_code(ErrorCode.PROTOCOL_ERROR, argv.message)
                self._ended = True
                append(Close(error, argv.reply))
                return events
            assert type(argv) is list
            name = _NAMES.get(argv[0])
            if name is None:
                name = _name_of(argv[0])
                if name == "unknown" and argv[0].lower() in _CROSS_PROTOCOL:
                    self._ended = True
                    append(Close(_CROSS_PROTOCOL_ERROR, b""))
                    return events
            if name == "quit":
                self._ended = True
                append(Close(None, _QUIT_OK))
                return events
            append(trusted_request(0, name, argv))
            if one:
                return events

    def _http(self, data: bytes) -> bool:
        """Whether the first line, now that `data` came, is an HTTP request line."""
        head = self._head
        assert head is not None
        if not head and data[0] == 0x2A:  # '*': a multibulk, never HTTP
            self._head = None
            return False
        end = data.find(b"\n")
        if end < 0:
            head += data[: INLINE_MAX + 1 - len(head)]
            if len(head) > INLINE_MAX:  # too long for either; the reader refuses it
                self._head = None
            return False
        head += data[: end + 1]
        self._head = None
        return looks_like_http(bytes(head))

    def render(self, request: Request, result: Any, error: ErrorInfo | None) -> bytes:
        if error is None:
            assert type(result) is bytes, "the Redis handler answers with encoded bytes"
            return result
        return error_line(error)
