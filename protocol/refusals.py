"""What the server sends to a connection it will not serve, readable by every dialect.

Strategy: a refusal is sent at once, before the client has spoken, so it cannot be
in the client's dialect. It is one Redis-style error line (`-ERR ...\\r\\n`): a text or
Redis client reads it as an error reply, and a binary client can tell it from a frame
by its first byte (`-` is 0x2D; every frame starts with a byte below 0x20, see
protocol/_framing.py). The project's client maps it with `refusal_error`.
"""

from __future__ import annotations

from protocol.errors import ErrorCode
from protocol.messages import ErrorInfo

__all__ = ["TOO_MANY_CONNECTIONS_LINE", "is_refusal", "refusal_error"]

TOO_MANY_CONNECTIONS_LINE = b"-ERR max number of clients reached\r\n"
"""The connection-limit refusal: Redis's own line, so Redis clients recognise it too."""


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
