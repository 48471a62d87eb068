"""What the server sends to a connection it will not serve.

Strategy: the connection-limit refusal is sent at once, before the client has
spoken, so it cannot be in the client's dialect. It is one Redis error line
(`-ERR ...\\r\\n`): a Redis client reads it as an error reply, and a binary client
can tell it from a frame by its first byte (`-` is 0x2D; every frame starts with a
byte below 0x20, see protocol/_framing.py). The project's client maps it with
`refusal_error`. An HTTP client that found this port instead of the HTTP one is
recognised by its request line (`looks_like_http`) and answered in HTTP
(`http_refusal`), which it can read.
"""

from __future__ import annotations

import re

from protocol.errors import ErrorCode
from protocol.messages import ErrorInfo

__all__ = [
    "PARTIAL_INPUT_LINE",
    "REQUEST_TIMEOUT_LINE",
    "TOO_MANY_CONNECTIONS_LINE",
    "http_refusal",
    "is_refusal",
    "looks_like_http",
    "refusal_error",
]

TOO_MANY_CONNECTIONS_LINE = b"-ERR max number of clients reached\r\n"
"""The connection-limit refusal: Redis's own line, so Redis clients recognise it too."""

# Sent before the close of a connection whose unfinished request is dropped (it may
# arrive mid-frame, so it is a line like the one above, which both dialects read).
PARTIAL_INPUT_LINE = (
    b"-ERR partial input budget exceeded (--max-partial-input): "
    b"request dropped, send it again or raise the limit\r\n"
)
"""The server holds too many bytes of unfinished requests; this one, the largest, goes."""

REQUEST_TIMEOUT_LINE = (
    b"-ERR request not completed within --request-timeout: "
    b"request dropped, send it faster or raise the limit\r\n"
)
"""A request started was not complete in time (a slow or stalled sender)."""


def is_refusal(data: bytes | bytearray | memoryview) -> bool:
    """Whether bytes that should start a frame are a refusal line instead (first byte `-`)."""
    return bytes(data[:1]) == b"-"


def refusal_error(line: bytes | bytearray | memoryview) -> ErrorInfo:
    """The ErrorInfo a client reports for a refusal line.

    Args:
        line: the bytes received where a frame should have started.

    Returns:
        TOO_MANY_CONNECTIONS for the connection-limit line, else PROTOCOL_ERROR
        carrying the line's text.

    Example:
        >>> refusal_error(TOO_MANY_CONNECTIONS_LINE).name
        'TOO_MANY_CONNECTIONS'
    """
    text = bytes(line).split(b"\n", 1)[0].rstrip(b"\r")[:200].decode("utf-8", "replace")
    if bytes(line).startswith(TOO_MANY_CONNECTIONS_LINE.rstrip(b"\r\n")):
        return ErrorInfo.from_code(ErrorCode.TOO_MANY_CONNECTIONS, text.removeprefix("-ERR "))
    return ErrorInfo.from_code(ErrorCode.PROTOCOL_ERROR, f"the server sent a text line: {text}")


# One pass, no backtracking that matters: `\S+` cannot cross the space before HTTP.
_HTTP_LINE = re.compile(
    rb"(?:GET|HEAD|POST|PUT|DELETE|OPTIONS|PATCH|CONNECT|TRACE|PRI) \S+ HTTP/\d(?:\.\d)?\r?"
)


def looks_like_http(first_line: bytes) -> bool:
    """Whether the first line a connection sent is an HTTP request line.

    Only upper-case HTTP methods followed by a target and `HTTP/x.y` count, so a
    Redis inline command (`GET k`, or `get /x HTTP/1.1` in lower case) is not one.

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
        f"This is the bitcask binary and Redis protocol port; HTTP is served on port {http_port}.\n"
    ).encode("ascii")
    head = (
        "HTTP/1.1 400 Bad Request\r\n"
        "Content-Type: text/plain; charset=utf-8\r\n"
        f"Content-Length: {len(body)}\r\n"
        "Connection: close\r\n\r\n"
    ).encode("ascii")
    return head + body
