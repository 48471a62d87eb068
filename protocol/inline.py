"""The inline text mode: one command per line, for humans with `nc` or telnet.

Strategy / invariants:
- A line ends at `\\n` (one `\\r` before it is dropped). Arguments are separated by
  spaces or tabs. An argument is either bare (any bytes but space, tab and `"`)
  or double-quoted with the escapes `\\" \\\\ \\n \\r \\t \\xNN`; a closing quote must
  be followed by a separator or the end of the line.
- Quoting is symmetric: `quote_arg` prints a value bare when it is non-empty
  printable ASCII without `"` or `\\`, quoted otherwise, and `split_args` reads
  either form back to the same bytes. A reply line `$<value>` uses `quote_arg`,
  so whatever a reply shows after `$` can be pasted back as an argument.
- Replies are one line per scalar (RESP-like first character), so a value never
  spans lines: `+` status, `-ERR` error, `:` integer, `,` float, `$` value,
  `_` nil, `*N` array header, `%N` map header.
- A malformed line is an error for that line only (the decoder drops it and
  keeps the lines after it); a line over max_line kills the decoder.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from types import MappingProxyType
from typing import Any

from protocol.errors import ErrorCode, ProtocolError, RemoteProtocolError
from protocol.messages import ErrorInfo

__all__ = [
    "DEFAULT_MAX_LINE",
    "INLINE_COMMANDS",
    "InlineDecoder",
    "format_inline_error",
    "format_inline_reply",
    "http_refusal",
    "inline_to_request",
    "looks_like_http",
    "quote_arg",
    "split_args",
]

DEFAULT_MAX_LINE = 1024 * 1024
"""Longest inline line accepted (escaped values are up to 4x their size)."""

# The tokenizer is linear in the line: it only ever calls bytes.find-like searches
# (no backtracking pattern can see an unbalanced quote). _SPECIAL finds the next quote
# or backslash inside a quoted argument; _ESCAPE rewrites escapes of a body already
# delimited (each match is at most 4 bytes, so it is linear too).
_SPECIAL = re.compile(rb'["\\]')
_BARE_END = re.compile(rb'[ \t"]')
_ESCAPE = re.compile(rb"\\(x[0-9a-fA-F]{2}|.)", re.DOTALL)
_SIMPLE_ESCAPES = {b'"': b'"', b"\\": b"\\", b"n": b"\n", b"r": b"\r", b"t": b"\t"}
_SAFE_BARE = re.compile(rb"[\x21\x23-\x5b\x5d-\x7e]+")
_UNSAFE_QUOTED = re.compile(rb"[^\x20\x21\x23-\x5b\x5d-\x7e]")
_ESCAPED_BYTE = {
    **{b: b"\\x%02x" % b for b in range(256)},
    0x22: b'\\"',
    0x5C: b"\\\\",
    0x0A: b"\\n",
    0x0D: b"\\r",
    0x09: b"\\t",
}


def _unescape_one(match: re.Match[bytes]) -> bytes:
    esc = match.group(1)
    if len(esc) == 3:
        return bytes((int(esc[1:], 16),))
    simple = _SIMPLE_ESCAPES.get(esc)
    if simple is None:
        raise ProtocolError(
            f'invalid escape \\{esc.decode("latin-1")} (use \\" \\\\ \\n \\r \\t \\xNN)'
        )
    return simple


def split_args(line: bytes) -> list[bytes]:
    """Split one inline line (without its newline) into arguments.

    Args:
        line: the line's bytes.

    Returns:
        The arguments, unescaped; [] for a blank line.

    Raises:
        ProtocolError: PROTOCOL_ERROR for an unbalanced quote, a quote inside a
            bare argument, text glued to a closing quote, or a bad escape.

    Example:
        >>> split_args(b'PUT "my key" \\\\x00 plain')
        [b'PUT', b'my key', b'\\\\x00', b'plain']
    """
    args: list[bytes] = []
    i = 0
    n = len(line)
    special = _SPECIAL.search
    bare_end = _BARE_END.search
    while True:
        while i < n and line[i] in b" \t":
            i += 1
        if i >= n:
            return args
        if line[i] == 0x22:
            # Find the closing quote: skip one byte after each backslash. Every step
            # moves forward, so the whole line is scanned once.
            start = j = i + 1
            escaped = False
            while True:
                m = special(line, j)
                if m is None:
                    raise ProtocolError("unbalanced quotes in argument")
                j = m.start()
                if line[j] == 0x22:
                    break
                escaped = True
                j += 2
                if j > n:
                    raise ProtocolError("unbalanced quotes in argument")
            body = line[start:j]
            args.append(_ESCAPE.sub(_unescape_one, body) if escaped else body)
            i = j + 1
            if i < n and line[i] not in b" \t":
                raise ProtocolError("a closing quote must be followed by a space")
        else:
            m = bare_end(line, i)
            end = n if m is None else m.start()
            args.append(line[i:end])
            i = end
            if i < n and line[i] == 0x22:
                raise ProtocolError('a quote inside an argument (quote the whole argument: "a b")')


def _escape_match(match: re.Match[bytes]) -> bytes:
    return _ESCAPED_BYTE[match.group()[0]]


def quote_arg(value: bytes | bytearray | str) -> bytes:
    """Print a value so that `split_args` reads it back unchanged.

    Args:
        value: bytes, or str (UTF-8 encoded first).

    Returns:
        The value bare if it is non-empty printable ASCII without `"` or `\\`;
        otherwise double-quoted with escapes. Never contains a newline.

    Example:
        >>> quote_arg(b"plain"), quote_arg(b"two words"), quote_arg(b"\\x00")
        (b'plain', b'"two words"', b'"\\\\x00"')
    """
    if type(value) is str:
        value = value.encode("utf-8")
    assert isinstance(value, bytes | bytearray)
    if value and _SAFE_BARE.fullmatch(value):
        return bytes(value)
    return b'"' + _UNSAFE_QUOTED.sub(_escape_match, value) + b'"'


class InlineDecoder:
    """Splits an inline-mode byte stream into argument lists, one per line.

    Args:
        max_line: the longest line accepted, in bytes, newline excluded.

    Example:
        >>> d = InlineDecoder()
        >>> d.feed(b"PUT k v\\r\\nGE"), d.feed(b"T k\\n")
        ([[b'PUT', b'k', b'v']], [[b'GET', b'k']])
    """

    __slots__ = ("_buf", "_error", "_scanned", "max_line")

    def __init__(self, max_line: int = DEFAULT_MAX_LINE) -> None:
        if type(max_line) is not int or max_line < 1:
            raise ValueError(f"max_line must be a positive int, got {max_line!r}")
        self.max_line = max_line
        self._buf = bytearray()
        # bytes of _buf already searched for a newline (avoids rescanning a long line)
        self._scanned = 0
        self._error: RemoteProtocolError | None = None

    @property
    def failed(self) -> bool:
        """True once a line over max_line killed the decoder (every feed raises)."""
        return self._error is not None

    def feed(self, data: bytes | bytearray | memoryview) -> list[list[bytes]]:
        """Take the next bytes; return the arguments of every line now complete.

        Blank lines are skipped.

        Args:
            data: any number of bytes, split anywhere.

        Returns:
            One argv (list of bytes) per complete non-blank line.

        Raises:
            RemoteProtocolError: PROTOCOL_ERROR for a malformed line: that line
                is dropped, the lines before it are in `exc.messages`, and the
                lines after it stay buffered (call `feed(b"")` to get them).
                A line over max_line raises PROTOCOL_ERROR and kills the decoder
                (every later feed raises again).
        """
        if self._error is not None:
            raise RemoteProtocolError(self._error.message, self._error.code)
        buf = self._buf
        buf += data
        out: list[list[bytes]] = []
        start = 0
        search = self._scanned
        while True:
            nl = buf.find(b"\n", search)
            if nl < 0:
                break
            line = bytes(buf[start:nl])
            start = search = nl + 1
            if line.endswith(b"\r"):
                line = line[:-1]
            if len(line) > self.max_line:
                self._die(out)
            try:
                argv = split_args(line)
            except ProtocolError as exc:
                del buf[:start]
                self._scanned = 0
                raise RemoteProtocolError(exc.message, exc.code, out) from None
            if argv:
                out.append(argv)
        if start:
            del buf[:start]
        self._scanned = len(buf)
        if len(buf) > self.max_line + 1:  # + 1: room for the "\r" of "\r\n"
            self._die(out)
        return out

    def _die(self, decoded: list[list[bytes]]) -> None:
        message = f"inline line longer than {self.max_line} bytes"
        self._error = RemoteProtocolError(message)
        self._buf = bytearray()
        raise RemoteProtocolError(message, ErrorCode.PROTOCOL_ERROR, decoded)


# ---------------------------------------------------------------- commands

_Builder = Callable[[list[bytes]], tuple[Any, ...]]


def _float_arg(raw: bytes, what: str) -> float:
    try:
        value = float(raw.decode("ascii"))
    except (UnicodeDecodeError, ValueError):
        raise ProtocolError(
            f"{what} must be a number, got {raw!r}", ErrorCode.INVALID_PARAMS
        ) from None
    return value


def _int_arg(raw: bytes, what: str) -> int:
    try:
        return int(raw.decode("ascii"))
    except (UnicodeDecodeError, ValueError):
        raise ProtocolError(
            f"{what} must be an integer, got {raw!r}", ErrorCode.INVALID_PARAMS
        ) from None


def _b_put(args: list[bytes]) -> tuple[Any, ...]:
    if len(args) == 2:
        return (args[0], args[1])
    if len(args) == 4 and args[2].upper() == b"TTL":
        return (args[0], args[1], {"ttl": _float_arg(args[3], "TTL")})
    raise ProtocolError("usage: PUT key value [TTL seconds]", ErrorCode.INVALID_PARAMS)


def _b_mput(args: list[bytes]) -> tuple[Any, ...]:
    if len(args) % 2:
        raise ProtocolError("usage: MPUT key value [key value ...]", ErrorCode.INVALID_PARAMS)
    return ([[args[i], args[i + 1]] for i in range(0, len(args), 2)],)


def _b_scan(args: list[bytes]) -> tuple[Any, ...]:
    opts: dict[str, Any] = {}
    if len(args) >= 1:
        opts["prefix"] = args[0]
    if len(args) >= 2 and args[1]:
        opts["cursor"] = args[1]
    if len(args) >= 3:
        opts["count"] = _int_arg(args[2], "count")
    return (opts,)


def _b_args(args: list[bytes]) -> tuple[Any, ...]:
    return tuple(args)


def _b_list(args: list[bytes]) -> tuple[Any, ...]:
    return (list(args),)


# command -> (wire method, min args, max args or -1 for unbounded, builder, usage)
_COMMANDS: dict[str, tuple[str, int, int, _Builder, str]] = {
    "PING": ("ping", 0, 1, _b_args, "PING [message]"),
    "AUTH": ("auth", 1, 1, _b_args, "AUTH token"),
    "HELLO": ("hello", 0, 0, _b_args, "HELLO"),
    "GET": ("get", 1, 1, _b_args, "GET key"),
    "PUT": ("put", 2, 4, _b_put, "PUT key value [TTL seconds]"),
    "DEL": ("delete", 1, 1, _b_args, "DEL key"),
    "DELETE": ("delete", 1, 1, _b_args, "DELETE key"),
    "EXISTS": ("exists", 1, 1, _b_args, "EXISTS key"),
    "TTL": ("ttl", 1, 1, _b_args, "TTL key"),
    "MGET": ("mget", 1, -1, _b_list, "MGET key [key ...]"),
    "MPUT": ("mput", 2, -1, _b_mput, "MPUT key value [key value ...]"),
    "SCAN": ("scan", 0, 3, _b_scan, "SCAN [prefix] [cursor] [count]"),
    "STATS": ("stats", 0, 0, _b_args, "STATS"),
    "MERGE": ("merge", 0, 0, _b_args, "MERGE"),
    "SYNC": ("sync", 0, 0, _b_args, "SYNC"),
    "QUIT": ("quit", 0, 0, _b_args, "QUIT"),
}

INLINE_COMMANDS: Mapping[str, str] = MappingProxyType({k: v[4] for k, v in _COMMANDS.items()})
"""Inline command name -> usage line (for help texts and docs)."""


def inline_to_request(argv: list[bytes]) -> tuple[str, tuple[Any, ...]]:
    """Map one inline command line to a wire method and its params.

    `QUIT` maps to the pseudo-method "quit" (not a wire method): the server
    answers `+OK` and closes the connection. An empty cursor argument to SCAN
    means "from the start".

    Args:
        argv: the arguments of one line, as returned by `InlineDecoder.feed`.

    Returns:
        (method, params), params ready for `validate_params` or `encode_request`.

    Raises:
        ProtocolError: UNKNOWN_METHOD for an unknown command, INVALID_PARAMS for
            the wrong number or form of arguments.

    Example:
        >>> inline_to_request([b"put", b"k", b"v", b"TTL", b"5"])
        ('put', (b'k', b'v', {'ttl': 5.0}))
    """
    if not argv:
        raise ProtocolError("empty command", ErrorCode.UNKNOWN_METHOD)
    name = argv[0].decode("latin-1").upper()
    entry = _COMMANDS.get(name)
    if entry is None:
        shown = argv[0][:40].decode("utf-8", "backslashreplace")
        raise ProtocolError(f"unknown command '{shown}'", ErrorCode.UNKNOWN_METHOD)
    method, low, high, build, usage = entry
    args = argv[1:]
    if len(args) < low or (high >= 0 and len(args) > high):
        raise ProtocolError(f"wrong number of arguments; usage: {usage}", ErrorCode.INVALID_PARAMS)
    return method, build(args)


# ---------------------------------------------------------------- replies

# methods whose `true` result reads better as a status line
_STATUS_OK = frozenset({"put", "mput", "sync", "auth", "quit"})


def _reply_lines(value: Any, out: list[bytes]) -> None:
    if value is None:
        out.append(b"_")
    elif value is True or value is False:
        out.append(b":1" if value else b":0")
    elif isinstance(value, int):
        out.append(b":%d" % value)
    elif isinstance(value, float):
        out.append(b"," + repr(value).encode("ascii"))
    elif isinstance(value, bytes | bytearray | str):
        out.append(b"$" + quote_arg(value))
    elif isinstance(value, list | tuple):
        out.append(b"*%d" % len(value))
        for item in value:
            _reply_lines(item, out)
    elif isinstance(value, dict):
        out.append(b"%%%d" % len(value))
        for key, item in value.items():
            _reply_lines(key, out)
            _reply_lines(item, out)
    else:
        out.append(b"$" + quote_arg(repr(value)))


def format_inline_reply(method: str, result: Any) -> bytes:
    """Format a method's result as inline reply line(s), each ending in `\\n`.

    `true` from put/mput/sync/auth/quit prints `+OK`, ping's "PONG" prints
    `+PONG`; everything else by type: `_` nil, `:1`/`:0` bool, `:N` int, `,F`
    float, `$<quoted>` bin or str, `*N` + N replies for arrays, `%N` + N key
    and value replies interleaved for maps.

    Args:
        method: the wire method that produced the result.
        result: the result as the server would send it.

    Returns:
        The reply bytes (one or more lines).

    Example:
        >>> format_inline_reply("scan", [b"b", [b"a", b"b"]])
        b'*2\\n$b\\n*2\\n$a\\n$b\\n'
    """
    if result is True and method in _STATUS_OK:
        return b"+OK\n"
    if method == "ping" and result == "PONG":
        return b"+PONG\n"
    out: list[bytes] = []
    _reply_lines(result, out)
    out.append(b"")
    return b"\n".join(out)


def format_inline_error(error: ErrorInfo) -> bytes:
    """Format an error as one inline line: `-ERR CODE_NAME message\\n`.

    Example:
        >>> format_inline_error(ErrorInfo(101, "UNKNOWN_METHOD", "unknown command 'X'"))
        b"-ERR UNKNOWN_METHOD unknown command 'X'\\n"
    """
    message = " ".join(error.message.split())
    line = f"-ERR {error.name} {message}" if message else f"-ERR {error.name}"
    return line.encode("utf-8", "backslashreplace") + b"\n"


# ---------------------------------------------------------------- HTTP sniffing

_HTTP_LINE = re.compile(
    rb"(?:GET|HEAD|POST|PUT|DELETE|OPTIONS|PATCH|CONNECT|TRACE|PRI) \S+ HTTP/\d(?:\.\d)?\r?"
)


def looks_like_http(first_line: bytes) -> bool:
    """Whether the first line a connection sent is an HTTP request line.

    Only upper-case HTTP methods followed by a target and `HTTP/x.y` count, so
    inline commands (`put /x HTTP/1.1` in lower case included) stay inline.

    Args:
        first_line: the first line, with or without its line ending (anything
            after the first `\\n` is ignored).

    Example:
        >>> looks_like_http(b"GET /kv/a HTTP/1.1\\r\\n"), looks_like_http(b"GET a\\r\\n")
        (True, False)
    """
    line = first_line.split(b"\n", 1)[0]
    return _HTTP_LINE.fullmatch(line) is not None


def http_refusal(http_port: int) -> bytes:
    """A short HTTP/1.1 400 response telling an HTTP client where HTTP lives.

    The body is one line naming the HTTP port; the server closes after it.

    Example:
        >>> http_refusal(7380).split(b"\\r\\n")[0]
        b'HTTP/1.1 400 Bad Request'
    """
    body = (
        f"This is the bitcask binary protocol port; HTTP is served on port {http_port}.\n"
    ).encode("ascii")
    head = (
        "HTTP/1.1 400 Bad Request\r\n"
        "Content-Type: text/plain; charset=utf-8\r\n"
        f"Content-Length: {len(body)}\r\n"
        "Connection: close\r\n\r\n"
    ).encode("ascii")
    return head + body
