"""client: the async client library for bitcask-server.

One `Client` is one connection that any number of tasks share: calls are
pipelined and matched to replies by msgid. `Pool` spreads calls over several
connections. Errors are typed (`client.errors`), server errors chosen by code.

Example:
    >>> import asyncio
    >>> from client import connect
    >>> async def main() -> None:
    ...     async with connect("127.0.0.1", 7379) as c:
    ...         await c.put(b"greeting", b"hello")
    ...         print(await c.get(b"greeting"))
    >>> asyncio.run(main())  # doctest: +SKIP
    b'hello'
"""

from __future__ import annotations

from protocol._lazy import lazy_exports

TYPE_CHECKING = False
if TYPE_CHECKING:
    from client._args import Key, Value
    from client._batch import Batch
    from client._client import Client, connect
    from client._config import DEFAULT_PORT, ClientConfig, Limits, parse_url
    from client._ketama import NutcrackerPool, Ring, read_nutcracker_config
    from client._pool import Pool
    from client._port_probe import RespAnswer, answers_http, answers_resp_after, resp_answer
    from client._resp import (
        EndpointClosedError,
        Refusals,
        RespClient,
        UnsupportedCommandError,
        connect_resp,
    )
    from client._sharded import ShardedBatch, ShardedClient
    from client._sharded_connect import connect_sharded
    from client._transaction import Transaction
    from client.errors import (
        AuthError,
        AuthFailedError,
        AuthRequiredError,
        BackupError,
        BatchTooLargeError,
        BusyError,
        CallTimeoutError,
        ClientError,
        ConnectError,
        ConnectionLostError,
        CorruptRecordError,
        CrossShardError,
        FrameTooLargeError,
        InterfaceError,
        InternalServerError,
        InvalidParamsError,
        KeyTooLargeError,
        MergeInProgressError,
        NoSuchKeyError,
        NotANumberError,
        ProtocolViolationError,
        ReadOnlyError,
        RedisPortError,
        ServerError,
        ShuttingDownError,
        SnapshotGoneError,
        StoreFullError,
        StoreIOError,
        TooManyConnectionsError,
        TransactionAbortedError,
        UnknownMethodError,
        UnsupportedVersionError,
        ValueTooLargeError,
        error_for_code,
    )

# Where each public name lives, imported on first use (PEP 562): `from client import
# connect` loads one connection's code, not the sharding (ketama ring, hashlib), the
# pool and the Redis-protocol client beside it (about 15 ms of `import client`).
if not TYPE_CHECKING:  # to mypy the names are the imports above: a typo stays an error
    __getattr__ = lazy_exports(
        __name__,
        {
            "client._args": "Key Value",
            "client._batch": "Batch",
            "client._client": "Client connect",
            "client._config": "DEFAULT_PORT ClientConfig Limits parse_url",
            "client._ketama": "NutcrackerPool Ring read_nutcracker_config",
            "client._pool": "Pool",
            "client._port_probe": "RespAnswer answers_http answers_resp_after resp_answer",
            "client._resp": "EndpointClosedError Refusals RespClient UnsupportedCommandError "
            "connect_resp",
            "client._sharded": "ShardedBatch ShardedClient",
            "client._sharded_connect": "connect_sharded",
            "client._transaction": "Transaction",
            "client.errors": "AuthError AuthFailedError AuthRequiredError BackupError "
            "BatchTooLargeError BusyError CallTimeoutError ClientError ConnectError "
            "ConnectionLostError CorruptRecordError CrossShardError "
            "FrameTooLargeError InterfaceError InternalServerError "
            "InvalidParamsError KeyTooLargeError MergeInProgressError "
            "NoSuchKeyError NotANumberError ProtocolViolationError ReadOnlyError "
            "RedisPortError ServerError ShuttingDownError SnapshotGoneError "
            "StoreFullError StoreIOError TooManyConnectionsError "
            "TransactionAbortedError UnknownMethodError UnsupportedVersionError "
            "ValueTooLargeError error_for_code",
        },
    )


__all__ = [
    "DEFAULT_PORT",
    "AuthError",
    "AuthFailedError",
    "AuthRequiredError",
    "BackupError",
    "Batch",
    "BatchTooLargeError",
    "BusyError",
    "CallTimeoutError",
    "Client",
    "ClientConfig",
    "ClientError",
    "ConnectError",
    "ConnectionLostError",
    "CorruptRecordError",
    "CrossShardError",
    "EndpointClosedError",
    "FrameTooLargeError",
    "InterfaceError",
    "InternalServerError",
    "InvalidParamsError",
    "Key",
    "KeyTooLargeError",
    "Limits",
    "MergeInProgressError",
    "NoSuchKeyError",
    "NotANumberError",
    "NutcrackerPool",
    "Pool",
    "ProtocolViolationError",
    "ReadOnlyError",
    "RedisPortError",
    "Refusals",
    "RespAnswer",
    "RespClient",
    "Ring",
    "ServerError",
    "ShardedBatch",
    "ShardedClient",
    "ShuttingDownError",
    "SnapshotGoneError",
    "StoreFullError",
    "StoreIOError",
    "TooManyConnectionsError",
    "Transaction",
    "TransactionAbortedError",
    "UnknownMethodError",
    "UnsupportedCommandError",
    "UnsupportedVersionError",
    "Value",
    "ValueTooLargeError",
    "answers_http",
    "answers_resp_after",
    "connect",
    "connect_resp",
    "connect_sharded",
    "error_for_code",
    "parse_url",
    "read_nutcracker_config",
    "resp_answer",
]
