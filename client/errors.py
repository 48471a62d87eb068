"""The client's exceptions: one root, a flat set of subclasses, server errors by code.

`ClientError` is the root of everything the client raises on purpose:

    ClientError
    ├── ConnectionLostError (also ConnectionError)   the connection broke under a call
    │   └── ConnectError                              could not (re)connect at all
    ├── InterfaceError                                misuse: closed client, wrong types
    │   └── CrossShardError                           a sharded batch spans shards
    ├── CallTimeoutError (also TimeoutError)          a call exceeded its timeout
    ├── TransactionAbortedError                       a watched key changed: not applied
    └── ServerError(code, name, message)              the server answered with an error
        ├── ProtocolViolationError, UnknownMethodError, InvalidParamsError,
        │   UnsupportedVersionError                   1xx: the request itself
        ├── AuthError → AuthRequiredError, AuthFailedError              2xx
        ├── KeyTooLargeError, ValueTooLargeError (also ValueError),
        │   FrameTooLargeError, TooManyConnectionsError, BatchTooLargeError   3xx
        ├── ReadOnlyError, StoreIOError, CorruptRecordError,
        │   MergeInProgressError, StoreFullError,
        │   NotANumberError (also ValueError),
        │   NoSuchKeyError (also KeyError)             4xx: the store
        └── InternalServerError, ShuttingDownError, BusyError            5xx

The class of a server error is chosen by its numeric code (`error_for_code`),
never by its message; a code this version does not know gives a plain
`ServerError` that still carries the code and name. The size errors are also
raised locally, before sending, when a key or value exceeds the server's limits.
"""

from __future__ import annotations

from typing import Any

from protocol import ErrorCode

__all__ = [
    "AuthError",
    "AuthFailedError",
    "AuthRequiredError",
    "BackupError",
    "BatchTooLargeError",
    "BusyError",
    "CallTimeoutError",
    "ClientError",
    "ConnectError",
    "ConnectionLostError",
    "CorruptRecordError",
    "CrossShardError",
    "FrameTooLargeError",
    "InterfaceError",
    "InternalServerError",
    "InvalidParamsError",
    "KeyTooLargeError",
    "MergeInProgressError",
    "NoSuchKeyError",
    "NotANumberError",
    "ProtocolViolationError",
    "ReadOnlyError",
    "RedisPortError",
    "ServerError",
    "ShuttingDownError",
    "SnapshotGoneError",
    "StoreFullError",
    "StoreIOError",
    "TooManyConnectionsError",
    "TransactionAbortedError",
    "UnknownMethodError",
    "UnsupportedVersionError",
    "ValueTooLargeError",
    "error_for_code",
]


class ClientError(Exception):
    """Root of every error the client raises on purpose."""


class ConnectionLostError(ClientError, ConnectionError):
    """The connection broke while a call was pending (or before it could be sent).

    `__cause__` holds what broke it (an OSError, the server's connection-level
    error, or a protocol violation). A call that got this may or may not have
    been applied by the server.
    """


class ConnectError(ConnectionLostError):
    """Connecting (or reconnecting, after all backoff attempts) failed."""


class RedisPortError(ConnectError):
    """The address answers the Redis protocol (RESP), not bitcask's binary one.

    The usual cause is a redis-server's port (6379) given for a bitcask-server's
    (7379): a redis-server never answers the binary hello, so the client asks the
    port in RESP once the hello is late, and raises this as soon as its INFO names a
    Redis server (`redis_server` True) instead of after the whole timeout. With
    `redis_server` False the port answered in RESP without saying what it is (a Redis
    with a password answers NOAUTH) and the hello timed out; `__cause__` is then the
    ConnectError the timeout alone would have raised. The client does not retry it:
    every attempt would meet the same server.

    Attributes:
        address: the "host:port" asked.
        redis_server: True when the port's INFO named a Redis server.
    """

    def __init__(self, message: str, address: str = "", redis_server: bool = True) -> None:
        super().__init__(message)
        self.address = address
        self.redis_server = redis_server

    def __reduce__(self) -> tuple[Any, ...]:
        return (type(self), (str(self), self.address, self.redis_server))

    @classmethod
    def redis(cls, address: str) -> RedisPortError:
        """The error for a port whose INFO named a Redis server."""
        return cls(
            f"cannot connect to {address}: it is a Redis server (it answers the Redis "
            "protocol, not bitcask's binary one): connect to the bitcask-server's port "
            "(default 7379), or use connect_resp() to talk to Redis",
            address,
        )


class InterfaceError(ClientError):
    """The client was misused: a closed client, a wrong argument type or value."""


class CallTimeoutError(ClientError, TimeoutError):
    """A call did not complete within its timeout.

    The connection stays usable: the late reply, if it ever comes, is discarded.
    The call may or may not have been applied by the server.
    """


class ServerError(ClientError):
    """The server answered a call with an error.

    Attributes:
        code: the numeric error code (see docs/protocol.md section 4).
        name: the code's name, e.g. "READ_ONLY".
        message: the server's human-readable detail.

    Example:
        >>> err = error_for_code(400, "READ_ONLY", "disk full")
        >>> isinstance(err, ReadOnlyError), err.code
        (True, 400)
    """

    default_code: int = 0

    def __init__(self, code: int, name: str, message: str) -> None:
        super().__init__(f"{name} ({code}): {message}" if message else f"{name} ({code})")
        self.code = code
        self.name = name
        self.message = message

    @classmethod
    def local(cls, message: str) -> Any:
        """The same error raised by the client itself (e.g. a size limit), code filled in."""
        code = ErrorCode(cls.default_code)
        return cls(int(code), code.name, message)

    def __reduce__(self) -> tuple[Any, ...]:
        return (type(self), (self.code, self.name, self.message))


class ProtocolViolationError(ServerError):
    """PROTOCOL_ERROR: the server could not parse what it was sent."""

    default_code = ErrorCode.PROTOCOL_ERROR


class UnknownMethodError(ServerError):
    """UNKNOWN_METHOD: the server does not know the method."""

    default_code = ErrorCode.UNKNOWN_METHOD


class InvalidParamsError(ServerError):
    """INVALID_PARAMS: wrong arity or types of params."""

    default_code = ErrorCode.INVALID_PARAMS


class UnsupportedVersionError(ServerError):
    """UNSUPPORTED_VERSION: the server lacks the protocol version asked for."""

    default_code = ErrorCode.UNSUPPORTED_VERSION


class AuthError(ServerError):
    """Authentication is required or failed."""

    default_code = ErrorCode.AUTH_FAILED


class AuthRequiredError(AuthError):
    """AUTH_REQUIRED: the server has a token and this connection has not sent it."""

    default_code = ErrorCode.AUTH_REQUIRED


class AuthFailedError(AuthError):
    """AUTH_FAILED: the token is wrong."""

    default_code = ErrorCode.AUTH_FAILED


class KeyTooLargeError(ServerError, ValueError):
    """KEY_TOO_LARGE: the key exceeds the server's max_key_size (also raised locally)."""

    default_code = ErrorCode.KEY_TOO_LARGE


class ValueTooLargeError(ServerError, ValueError):
    """VALUE_TOO_LARGE: the value exceeds the server's max_value_size (also raised locally)."""

    default_code = ErrorCode.VALUE_TOO_LARGE


class FrameTooLargeError(ServerError):
    """FRAME_TOO_LARGE: the request exceeds the server's max_frame (also raised locally)."""

    default_code = ErrorCode.FRAME_TOO_LARGE


class TooManyConnectionsError(ServerError):
    """TOO_MANY_CONNECTIONS: the server refused the connection; retry later."""

    default_code = ErrorCode.TOO_MANY_CONNECTIONS


class BatchTooLargeError(ServerError):
    """BATCH_TOO_LARGE: more entries than the server's max_batch (also raised locally)."""

    default_code = ErrorCode.BATCH_TOO_LARGE


class ReadOnlyError(ServerError):
    """READ_ONLY: the store refuses writes (disk error or read-only mode); reads go on."""

    default_code = ErrorCode.READ_ONLY


class StoreIOError(ServerError):
    """IO_ERROR: the server's disk failed the operation."""

    default_code = ErrorCode.IO_ERROR


class CorruptRecordError(ServerError):
    """CORRUPT_RECORD: the stored record failed its CRC (no value is returned)."""

    default_code = ErrorCode.CORRUPT_RECORD


class MergeInProgressError(ServerError):
    """MERGE_IN_PROGRESS: a merge is already running."""

    default_code = ErrorCode.MERGE_IN_PROGRESS


class StoreFullError(ServerError):
    """STORE_FULL: the server holds --max-keys keys; writes of new keys are refused
    while reads, overwrites and deletes go on."""

    default_code = ErrorCode.STORE_FULL


class NotANumberError(ServerError, ValueError):
    """NOT_A_NUMBER: incr / incr_float met a value that is not a number, or the result
    would be out of range; nothing was changed."""

    default_code = ErrorCode.NOT_A_NUMBER


class NoSuchKeyError(ServerError, KeyError):
    """NO_SUCH_KEY: rename of a key that does not exist."""

    default_code = ErrorCode.NO_SUCH_KEY

    def __str__(self) -> str:  # KeyError would show the repr of the args
        return ServerError.__str__(self)


class TransactionAbortedError(ClientError):
    """A transaction's watched key was written by someone else before it committed:
    nothing was applied. Read again and retry (`Client.transact` does)."""


class SnapshotGoneError(ServerError):
    """NO_SUCH_SNAPSHOT: the snapshot was released or expired (or began on another connection)."""

    default_code = ErrorCode.NO_SUCH_SNAPSHOT


class InternalServerError(ServerError):
    """INTERNAL: a bug in the server."""

    default_code = ErrorCode.INTERNAL


class ShuttingDownError(ServerError):
    """SHUTTING_DOWN: the server is stopping."""

    default_code = ErrorCode.SHUTTING_DOWN


class BusyError(ServerError):
    """BUSY: the server is overloaded (writer queue full); retry later."""

    default_code = ErrorCode.BUSY


_BY_CODE: dict[int, type[ServerError]] = {
    int(cls.default_code): cls
    for cls in (
        ProtocolViolationError,
        UnknownMethodError,
        InvalidParamsError,
        UnsupportedVersionError,
        AuthRequiredError,
        AuthFailedError,
        KeyTooLargeError,
        ValueTooLargeError,
        FrameTooLargeError,
        TooManyConnectionsError,
        BatchTooLargeError,
        ReadOnlyError,
        StoreIOError,
        CorruptRecordError,
        MergeInProgressError,
        StoreFullError,
        NotANumberError,
        NoSuchKeyError,
        SnapshotGoneError,
        InternalServerError,
        ShuttingDownError,
        BusyError,
    )
}


def error_for_code(code: int, name: str, message: str) -> ServerError:
    """Build the typed exception for a server error, chosen by its code.

    Args:
        code: the numeric code from the wire.
        name: the code's name from the wire.
        message: the server's detail.

    Returns:
        An instance of the class registered for `code`, or of `ServerError` for a
        code this version does not know.

    Example:
        >>> type(error_for_code(999, "NEW_THING", "")).__name__
        'ServerError'
    """
    return _BY_CODE.get(code, ServerError)(code, name, message)


class CrossShardError(InterfaceError):
    """A batch for a sharded client names keys on more than one shard (nothing was sent).

    Attributes:
        shards: the names of the shards the batch's keys belong to.

    Keep keys that must change together on one shard with a hash tag:
    `order:{42}:head` and `order:{42}:lines` both hash `42`.
    """

    def __init__(self, message: str, shards: tuple[str, ...] = ()) -> None:
        super().__init__(message)
        self.shards = shards


class BackupError(ClientError):
    """`Client.backup` failed (destination not empty, disk full, connection lost, bad
    checksum); nothing was left under the destination's name. The cause is chained."""
