"""Error codes and exceptions of the bitcask wire protocol.

Every error that crosses the wire carries a stable numeric code from `ErrorCode`;
its member name is sent alongside as the `name` field. Callers branch on the code,
never on the message text.
"""

from __future__ import annotations

from enum import IntEnum
from typing import Any

__all__ = [
    "ErrorCode",
    "LocalProtocolError",
    "ProtocolError",
    "RemoteProtocolError",
]


class ErrorCode(IntEnum):
    """The stable error codes of protocol version 1 (see docs/protocol.md).

    Hundreds group them: 1xx the request itself, 2xx authentication, 3xx limits,
    4xx the store, 5xx the server.
    """

    PROTOCOL_ERROR = 100
    """Malformed frame or message."""
    UNKNOWN_METHOD = 101
    """The method name is not in the method table."""
    INVALID_PARAMS = 102
    """Wrong arity or types of the params."""
    UNSUPPORTED_VERSION = 103
    """hello asked for a protocol version the server lacks."""
    AUTH_REQUIRED = 200
    """A token is configured and this connection has not sent it."""
    AUTH_FAILED = 201
    """The token sent does not match."""
    KEY_TOO_LARGE = 300
    VALUE_TOO_LARGE = 301
    FRAME_TOO_LARGE = 302
    TOO_MANY_CONNECTIONS = 303
    BATCH_TOO_LARGE = 304
    READ_ONLY = 400
    """The store refuses writes (disk error or read-only mode); reads go on."""
    IO_ERROR = 401
    CORRUPT_RECORD = 402
    """A stored record failed its CRC; never returned as a value."""
    MERGE_IN_PROGRESS = 403
    STORE_FULL = 404
    """The store holds --max-keys keys: writes of new keys are refused; the rest goes on."""
    NOT_A_NUMBER = 410
    """incr / incr_float met a value that is not a number, or the result would overflow."""
    NO_SUCH_KEY = 411
    """rename of a key that does not exist."""
    NO_SUCH_SNAPSHOT = 412
    """The snapshot id is unknown, released, or expired (idle past its timeout)."""
    INTERNAL = 500
    SHUTTING_DOWN = 501
    BUSY = 502
    """Writer queue full / overloaded; retry later."""


class ProtocolError(Exception):
    """Root of the protocol errors; `code` says which rule was broken.

    Raised directly (not as a subclass) by `validate_params`, whose input may
    come from either side.

    Args:
        message: a human-readable explanation.
        code: the `ErrorCode` to report (default PROTOCOL_ERROR).

    Example:
        >>> ProtocolError("no such method", ErrorCode.UNKNOWN_METHOD).code.name
        'UNKNOWN_METHOD'
    """

    code: ErrorCode

    def __init__(self, message: str, code: ErrorCode = ErrorCode.PROTOCOL_ERROR) -> None:
        super().__init__(message)
        self.code = code

    @property
    def message(self) -> str:
        """The human-readable explanation."""
        return str(self.args[0]) if self.args else ""


class RemoteProtocolError(ProtocolError):
    """The peer sent something that breaks the protocol (bad frame, bad msgpack, bad shape).

    A decoder that raised this is finished: the stream can no longer be trusted and
    every later `feed()` raises the same error again. `messages` holds the messages
    that were decoded completely from the same `feed()` call before the bad bytes,
    in order, so a server can still answer them before it closes the connection.
    """

    messages: list[Any]
    unread: bytes
    """From the first byte of the frame that broke the stream to the end of the bytes
    fed (empty when unknown): a text line where a frame should start is a server's
    refusal before it closes (protocol/refusals.py), which may follow replies."""

    def __init__(
        self,
        message: str,
        code: ErrorCode = ErrorCode.PROTOCOL_ERROR,
        messages: list[Any] | None = None,
        unread: bytes = b"",
    ) -> None:
        super().__init__(message, code)
        self.messages = messages if messages is not None else []
        self.unread = unread


class LocalProtocolError(ProtocolError):
    """We were asked to build or send something the protocol forbids.

    Raised by the message constructors and the encoders (bad msgid, a frame over
    the size limit, a value msgpack cannot encode).
    """
