"""`RespClient`: the client's call methods over the Redis protocol (RESP2).

Strategy: `RespClient` is a second implementation of `Commands`, the class whose
methods (get, put, set, incr, scan_page, ...) the binary `Client` also implements.
Every method keeps its local argument checks and result shapes; only `_call(method,
params)` differs: it translates the binary method and its params into one Redis
command (client/_resp_translate.py), sends it on one connection and converts the
reply back to the shape the binary protocol gives. So code written against `Client`
(the shell's commands, import, export) runs unchanged against redis-server,
twemproxy or a bitcask-server's RESP dialect, for the commands that endpoint has.
This file owns the connection: the FIFO of replies, closes, refusals.

- Methods with no Redis equivalent (merge, sync, batch, commit, backup) raise
  `UnsupportedCommandError` before anything is sent.
- Replies come back in order on one connection (RESP has no ids): one FIFO of
  futures; a call that timed out keeps its place in the queue so the next reply
  still meets the right caller.
- A connection serves the event loop that connected it: a command from another
  loop raises InterfaceError before it is written (its reply would be read by the
  first loop's task, so it would be applied while its caller timed out).
- twemproxy closes the connection on a command it does not proxy (SCAN, INFO,
  MULTI, ...). A close that arrives while a command waits for its reply (and
  before any byte of that reply, and before its caller gave up on it: a close after
  a timeout, as after a network partition, is a plain loss) fails that command
  with `EndpointClosedError`,
  naming the command; a close in the middle of a reply is a plain loss. A server that restarts
  closes too, so one close proves nothing: `Refusals` (shared by the connections of
  one session) counts closes per command shape, forgets them when the command is
  answered, and after two in a row refuses that command locally
  (`UnsupportedCommandError`) instead of costing another connection.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import math
from collections.abc import Generator
from typing import Any

from client._args import bad_timeout, positive
from client._commands import Commands
from client._config import DEFAULT_TCP_KEEPALIVE, Limits
from client._handshake import connect_failure, set_keepalive
from client._protocol import OTHER_LOOP
from client._resp_translate import NO_EQUIVALENT, error_from_reply, translate
from client.errors import (
    CallTimeoutError,
    ConnectError,
    ConnectionLostError,
    InterfaceError,
)
from protocol._resp_client import NEED_DATA, ErrorReply, ReplyReader, encode_command
from protocol.address import host_port
from protocol.errors import ProtocolError

__all__ = [
    "DEFAULT_REDIS_PORT",
    "EndpointClosedError",
    "Refusals",
    "RespClient",
    "UnsupportedCommandError",
    "connect_resp",
]

DEFAULT_REDIS_PORT = 6379
READ_CHUNK = 256 * 1024

# Redis's own limits, not a bitcask-server's: the endpoint checks sizes itself.
REDIS_LIMITS = Limits(
    max_key_size=512 * 1024 * 1024, max_value_size=512 * 1024 * 1024, max_batch=1_000_000
)


class UnsupportedCommandError(InterfaceError):
    """The method has no equivalent in the Redis protocol (nothing was sent).

    Attributes:
        method: the client method, e.g. "merge".
    """

    def __init__(self, method: str, message: str) -> None:
        super().__init__(message)
        self.method = method


class EndpointClosedError(ConnectionLostError):
    """The endpoint closed the connection instead of answering `command`.

    twemproxy does this for every command it does not proxy; a server that died
    does it too, so the message says both.

    Attributes:
        command: the Redis command name, e.g. "SCAN".
    """

    def __init__(self, command: str, message: str) -> None:
        super().__init__(message)
        self.command = command


# ---------------------------------------------------------------- the client

Shape = tuple[str, int]  # (command name, argc): twemproxy refuses some only by arity


class Refusals:
    """The commands an endpoint closed the connection on instead of answering.

    Shared by the successive connections of one session. A command is refused
    locally once the endpoint closed on it `STRIKES` times in a row; an answer
    to it clears its count (so a server restart never bans a command).
    """

    STRIKES = 2

    def __init__(self) -> None:
        self._closes: dict[Shape, int] = {}

    def closed_on(self, shape: Shape) -> None:
        self._closes[shape] = self._closes.get(shape, 0) + 1

    def answered(self, shape: Shape) -> None:
        if self._closes:
            self._closes.pop(shape, None)

    def refuses(self, shape: Shape) -> bool:
        return self._closes.get(shape, 0) >= self.STRIKES


class RespClient(Commands):
    """One connection to a Redis-protocol endpoint, with `Client`'s call methods.

    Use `connect_resp()`; the constructor only stores the settings.

    Attributes:
        server_info: what the endpoint said about itself (filled by `stats()`).
    """

    limits: Limits = REDIS_LIMITS

    def __init__(
        self,
        host: str,
        port: int,
        *,
        password: str | None = None,
        username: str | None = None,
        db: int = 0,
        timeout: float | None = 5.0,
        refusals: Refusals | None = None,
    ) -> None:
        if timeout is not None and not (
            isinstance(timeout, int | float) and timeout > 0 and not math.isnan(timeout)
        ):
            raise bad_timeout(timeout)  # as ClientConfig: 0 would fail every call at once
        self.host = host
        self.port = port
        self.address = host_port(host, port)
        self._password = password
        self._username = username
        self._db = db
        self._timeout = timeout
        self.refusals = Refusals() if refusals is None else refusals
        self.server_info: dict[str, Any] = {}
        self._reader: asyncio.StreamReader | None = None
        self._writer: asyncio.StreamWriter | None = None
        self._pending: collections.deque[tuple[Shape, asyncio.Future[Any]]] = collections.deque()
        self._task: asyncio.Task[None] | None = None
        self._out: list[bytes] = []  # encoded commands not yet handed to the transport
        self._closed = False
        self._lost: BaseException | None = None
        self._loop: asyncio.AbstractEventLoop | None = None  # the loop that connected it

    def __repr__(self) -> str:
        return f"<RespClient redis://{self.address}>"

    @property
    def closed(self) -> bool:
        return self._closed or self._lost is not None

    @property
    def is_connected(self) -> bool:
        return self._writer is not None and not self.closed

    def _check_open(self) -> None:
        if self._closed:
            raise InterfaceError("client is closed")

    # -- connecting ---------------------------------------------------------------

    async def _start(self) -> RespClient:
        try:
            self._reader, writer = await asyncio.wait_for(
                asyncio.open_connection(self.host, self.port), self._timeout
            )
        except (OSError, TimeoutError) as exc:
            why = connect_failure(exc, self._timeout)
            raise ConnectError(f"cannot connect to {self.address}: {why}") from exc
        self._writer = writer
        set_keepalive(writer.transport, DEFAULT_TCP_KEEPALIVE)
        self._loop = asyncio.get_running_loop()
        self._task = self._loop.create_task(self._read_loop())
        try:
            if self._password is not None:
                argv = [b"AUTH", self._password.encode("utf-8", "surrogateescape")]
                if self._username:
                    argv.insert(1, self._username.encode("utf-8", "surrogateescape"))
                await self.execute_command(*argv)
            if self._db:
                await self.execute_command(b"SELECT", b"%d" % self._db)
        except BaseException:
            await self.close()
            raise
        return self

    async def close(self, *, timeout: float | None = None) -> None:
        """Close the connection; calls still waiting fail with ConnectionLostError.
        From another event loop than the one that connected it, only marks it closed."""
        self._closed = True
        if self._loop is not None and asyncio.get_running_loop() is not self._loop:
            return  # the connection's transport and reader task belong to that loop
        writer, self._writer = self._writer, None
        if writer is not None:
            writer.close()
            with contextlib.suppress(Exception):
                await asyncio.wait_for(writer.wait_closed(), timeout or 1.0)
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(BaseException):
                await self._task
        self._fail_all(ConnectionLostError("client closed"))

    async def __aenter__(self) -> RespClient:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    # -- the wire -----------------------------------------------------------------

    async def _read_loop(self) -> None:
        assert self._reader is not None
        parser = ReplyReader()
        cause: BaseException | None = None
        try:
            while True:
                data = await self._reader.read(READ_CHUNK)
                if not data:
                    break
                parser.feed(data)
                while (reply := parser.next_reply()) is not NEED_DATA:
                    if not self._pending:
                        raise ProtocolError("a reply nobody asked for")
                    shape, fut = self._pending.popleft()
                    self.refusals.answered(shape)
                    if not fut.done():
                        fut.set_result(reply)
        except (OSError, ProtocolError) as exc:
            cause = exc
        # a close (or a reset, when more commands followed the refused one) while a
        # command waits: the endpoint would not answer that command
        # (not once part of its reply had arrived: the endpoint was answering, and
        # died or was cut off mid-reply; counting that would ban a command it serves)
        # (nor when its caller had given up on it: a close long after the command, as
        # after a network partition the endpoint timed the connection out, says nothing
        # about the command; twemproxy's comes at once)
        if (
            self._pending
            and not self._pending[0][1].done()
            and parser.buffered == 0
            and (cause is None or isinstance(cause, ConnectionError))
        ):
            shape = self._pending[0][0]
            self.refusals.closed_on(shape)
            name = shape[0]
            lost: ConnectionLostError = EndpointClosedError(
                name,
                f"{self.address} closed the connection instead of answering {name} "
                "(a proxy such as twemproxy does this for a command it does not "
                "support; a server that stopped does it too)",
            )
        else:
            why = cause or ("closed in the middle of a reply" if parser.buffered else "closed")
            lost = ConnectionLostError(f"connection to {self.address} lost: {why}")
            lost.__cause__ = cause
        self._lost = lost
        self._fail_all(lost)

    def _fail_all(self, exc: BaseException) -> None:
        while self._pending:
            _, fut = self._pending.popleft()
            if not fut.done():
                fut.set_exception(exc)
                fut.exception()  # retrieved: a caller that timed out will not see it

    def _send(self, argv: list[bytes]) -> asyncio.Future[Any]:
        """Write one command now and queue its future (the order of the replies)."""
        self._check_open()
        name = argv[0].decode("ascii", "replace").upper()
        shape = (name, len(argv))  # twemproxy refuses some commands by their arity
        if self.refusals.refuses(shape):
            raise UnsupportedCommandError(
                name.lower(),
                f"{self.address} does not support {name} (it closed the connection on it twice)",
            )
        if self._lost is not None:
            raise ConnectionLostError(str(self._lost)) from self._lost
        assert self._writer is not None
        # encoded before its future joins the queue: a command that cannot be encoded
        # must not leave a future there that no reply is coming for (every later reply
        # would then meet the caller before its own)
        try:
            frame = encode_command(argv)
        except (TypeError, ValueError) as exc:
            raise InterfaceError(f"{name}: every argument must be bytes ({exc})") from None
        loop = asyncio.get_running_loop()
        if loop is not self._loop:
            # the reply would be read by the other loop's task: the command would be
            # applied while its caller timed out (an incr retried, counted twice)
            raise InterfaceError(OTHER_LOOP)
        fut: asyncio.Future[Any] = loop.create_future()
        self._pending.append((shape, fut))
        # commands of one loop turn leave in one send (pipelined callers, piped mode)
        if not self._out:
            loop.call_soon(self._flush)
        self._out.append(frame)
        return fut

    def _flush(self) -> None:
        out, self._out = self._out, []
        if self._writer is not None and out:
            self._writer.write(b"".join(out))

    async def _reply(self, fut: asyncio.Future[Any], name: str, timeout: float | None) -> Any:
        """Wait for `fut` up to the timeout without cancelling it: a call that gives
        up keeps its place in the queue, so the next reply meets the next caller.
        (A timer and a waiter instead of wait_for(shield()), which costs a task.)"""
        if fut.done():
            return fut.result()
        limit = self._timeout if timeout is None else timeout
        loop = asyncio.get_running_loop()
        waiter = loop.create_future()

        def wake(_: object) -> None:
            if not waiter.done():
                waiter.set_result(None)

        fut.add_done_callback(wake)
        timer = None if limit is None else loop.call_later(limit, wake, None)
        try:
            await waiter
        finally:
            if timer is not None:
                timer.cancel()
            fut.remove_done_callback(wake)
            if not fut.done():
                # given up (timed out, or its caller cancelled): it keeps its place, its
                # reply is dropped when it comes, and a close that comes after it is no
                # evidence that the endpoint refused it
                fut.cancel()
        if fut.cancelled():
            raise CallTimeoutError(f"no reply to {name} within {limit:g} s")
        return fut.result()

    async def execute_command(self, *argv: bytes, timeout: float | None = None) -> Any:
        """Send one command and return its reply (an error reply raises its typed error).

        Raises:
            UnsupportedCommandError: this endpoint closed the connection on this
                command before (twemproxy), so it is not sent again.
            ServerError: the endpoint answered with an error.
            ConnectionLostError, CallTimeoutError: no answer.
        """
        if timeout is not None and not positive(timeout):
            raise bad_timeout(timeout)  # before sending: it would be applied, then time out
        fut = self._send(list(argv))
        reply = await self._reply(fut, argv[0].decode("ascii", "replace").upper(), timeout)
        if isinstance(reply, ErrorReply):
            raise error_from_reply(reply)
        return reply

    async def _call(self, method: str, params: list[Any], timeout: float | None) -> Any:
        if method in NO_EQUIVALENT:
            raise self._unsupported(method)
        if method == "clear":
            return await self._clear(timeout)
        translation = translate(method, params)
        if translation is None:
            raise UnsupportedCommandError(method, f"{method} has no Redis equivalent")
        argv, convert = translation
        reply = await self.execute_command(*argv, timeout=timeout)
        result = convert(reply)
        if method == "stats":
            version = result.get("bitcask_version") or result.get("redis_version")
            self.server_info = {"version": None if version is None else str(version)}
        return result

    def _unsupported(self, method: str) -> UnsupportedCommandError:
        return UnsupportedCommandError(
            method,
            f"{NO_EQUIVALENT[method]} is not part of the Redis protocol: "
            f"redis://{self.address} cannot run it (a bitcask-server's binary "
            "port, bitcask://HOST:PORT, can)",
        )

    async def backup(self, dest: Any, **options: Any) -> Any:
        """Snapshots are binary-protocol only: always UnsupportedCommandError."""
        raise self._unsupported("backup")

    def transaction(self, *keys: Any) -> Any:
        """Binary-protocol only (Redis's MULTI/WATCH have other semantics)."""
        raise self._unsupported("commit")

    async def transact(self, fn: Any, *keys: Any, attempts: int = 16) -> Any:
        """Binary-protocol only, as `transaction`."""
        raise self._unsupported("commit")

    async def _clear(self, timeout: float | None) -> int:
        # DBSIZE and FLUSHDB in one MULTI/EXEC, written at once so no other call of
        # this client lands inside the transaction: the count is of the keys deleted
        if timeout is not None and not positive(timeout):
            raise bad_timeout(timeout)
        futs = [self._send(argv) for argv in ([b"MULTI"], [b"DBSIZE"], [b"FLUSHDB"], [b"EXEC"])]
        replies = [await self._reply(fut, "EXEC", timeout) for fut in futs]
        for reply in replies:
            if isinstance(reply, ErrorReply):
                raise error_from_reply(reply)
        result = replies[-1]
        if not isinstance(result, list) or len(result) != 2:
            raise InterfaceError(f"unexpected EXEC reply {result!r:.80}")
        for reply in result:
            if isinstance(reply, ErrorReply):
                raise error_from_reply(reply)
        return int(result[0])


class _ConnectingResp:
    """What connect_resp() returns: await it for a RespClient, or use it with `async
    with` (closed on exit), as connect()'s."""

    __slots__ = ("_client",)

    def __init__(self, client: RespClient) -> None:
        self._client = client

    def __await__(self) -> Generator[Any, None, RespClient]:
        return self._client._start().__await__()

    async def __aenter__(self) -> RespClient:
        return await self._client._start()

    async def __aexit__(self, *exc: object) -> None:
        await self._client.close()


def connect_resp(
    host: str,
    port: int = DEFAULT_REDIS_PORT,
    *,
    password: str | None = None,
    username: str | None = None,
    db: int = 0,
    timeout: float | None = 5.0,
    refusals: Refusals | None = None,
) -> _ConnectingResp:
    """Connect to a Redis-protocol endpoint (AUTH and SELECT as needed).

    Args:
        host, port: the endpoint (redis-server, twemproxy, a bitcask-server's port).
        password, username: sent with AUTH when a password is given.
        db: SELECTed when not 0 (twemproxy only has 0).
        timeout: seconds for connecting and the default for each call; None: wait
            forever (TCP keepalive still ends a call whose host vanished).
        refusals: what this endpoint closed the connection on (`Refusals`);
            shared between the connections of one session, updated as learned.

    Returns:
        An awaitable giving a connected `RespClient`; also an async context manager
        that closes it on exit (as `connect()`'s).

    Raises:
        ConnectError: no connection. AuthFailedError / AuthRequiredError: AUTH.
        InterfaceError: a timeout that is not a number > 0 or None.

    Example:
        >>> async with connect_resp("127.0.0.1", 6379) as c:  # doctest: +SKIP
        ...     await c.put(b"k", b"v", ttl=30)
    """
    return _ConnectingResp(
        RespClient(
            host,
            port,
            password=password,
            username=username,
            db=db,
            timeout=timeout,
            refusals=refusals,
        )
    )
