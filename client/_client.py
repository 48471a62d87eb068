"""`Client` (one multiplexed connection) and the `connect()` factory.

Strategy / invariants (this file holds the connection state and the policy; the
attempt itself is client/_handshake.py, the re-send and the silence probe
client/_recovery.py, the bytes client/_protocol.py):
- `Client` holds at most one live `ClientProtocol`. Every call goes straight to
  it (`_call`: compute the deadline, `request()`, await the future); no task is
  created per call. When the protocol is closed, the next call reconnects.
- Reconnection is one shared task (`Reconnection`: concurrent callers wait on it,
  shielded so a cancelled caller never cancels it) making up to
  `reconnect_attempts` attempts with jittered exponential backoff; each attempt is
  TCP connect + hello (+ auth), bounded by the client's timeout (`open_connection`),
  and its connection becomes `_proto` (`_attempt`). Failing all attempts raises
  ConnectError to the waiting calls; the next call starts a new round.
- A call in flight when the connection breaks fails with ConnectionLostError,
  unless its method is idempotent (the METHODS table flag) and retry_idempotent
  is on: then the protocol hands it, still pending, to `_on_retry`, and a task
  re-sends it once on the new connection (`resend`: never a second time), within
  its own deadline; its outcome is chained into the caller's future. So the fast
  path needs no coroutine of its own to catch the loss: `_call` is a plain function
  returning the reply future. A call that was never sent (the connection was
  already down) is always sent after reconnecting: it cannot be applied twice.
- A connection that goes silent is replaced: when calls time out on it, the client
  pings on it (`SilenceWatch`, one probe at a time) and, if nothing at all arrives
  within the client's timeout (PROBE_TIMEOUT without one), aborts it: what is still
  pending fails (or is re-sent, if idempotent) and the next call reconnects. A slow
  call on a live connection (the probe, or any reply, arrives) leaves it alone.
- hello on every (re)connect: protocol version checked, token sent, limits kept
  in `self.limits` (used by the local size checks in Commands).
- A client belongs to the loop that connected it (`_loop`): a call or a
  reconnection from another loop (another thread's included) raises InterfaceError
  before anything is sent; terminate() from another thread hands the drop to that
  loop's thread.
- close() ends everything it leaves behind: calls in flight get the grace period,
  then the connection is aborted (never a graceful close that waits for a peer
  that stopped reading), a reconnection under way is cancelled (its waiters get
  InterfaceError), and a close() that is itself cancelled still aborts.
"""

from __future__ import annotations

import asyncio
import math
import os
from collections.abc import Awaitable, Callable, Generator
from types import TracebackType
from typing import TYPE_CHECKING, Any, TypeVar

from client._args import Key, bad_timeout, positive, to_bytes
from client._commands import Commands
from client._config import ClientConfig, Limits, make_config
from client._handshake import open_connection, say_hello
from client._protocol import OTHER_LOOP, ClientProtocol, Entry
from client._recovery import Reconnection, SilenceWatch, resend
from client._transaction import Transaction, transact
from client.errors import CallTimeoutError, ConnectionLostError, InterfaceError
from protocol import IDEMPOTENT_METHODS
from protocol.address import host_port

T = TypeVar("T")

if TYPE_CHECKING:
    from client._backup import BackupReport

__all__ = ["Client", "connect"]


class Client(Commands):
    """One connection to a bitcask server, shared by any number of tasks.

    Calls from many tasks are pipelined on the one connection and matched to
    their replies by msgid. Make one with `await connect(...)`; every call
    method (get, put, delete, exists, ttl, mget, mput, batch, scan, scan_page,
    set, incr, incr_float, append, get_delete, expire, persist, rename, clear,
    ping, stats, merge, sync, hello, auth) takes `timeout=` (default: the
    client's).

    Attributes:
        config: the frozen ClientConfig.
        server_info: the last hello reply (server, version, protocol, limits...).
        limits: the server's limits, checked locally before sending.

    Example:
        >>> async with connect("127.0.0.1", 7379) as c:  # doctest: +SKIP
        ...     await c.put(b"k", b"v")
        ...     assert await c.get(b"k") == b"v"
    """

    def __init__(self, config: ClientConfig) -> None:
        self.config = config
        self.limits = Limits()
        self.server_info: dict[str, Any] = {}
        # connection state
        self._proto: ClientProtocol | None = None
        self._reconnection = Reconnection(config, self._attempt)
        self._token: bytes | None = None if config.auth is None else to_bytes(config.auth, "auth")
        self._closed = False
        self._resends: set[asyncio.Task[None]] = set()  # re-sending idempotent calls
        self._silence = SilenceWatch(host_port(config.host, config.port), config.timeout)
        self._loop: asyncio.AbstractEventLoop | None = None  # the loop that connected it
        # per-call defaults
        self._timeout = config.timeout
        self._retry = config.retry_idempotent

    # ------------------------------------------------------------ state

    @property
    def closed(self) -> bool:
        """True once close() or terminate() was called."""
        return self._closed

    @property
    def is_connected(self) -> bool:
        """True while a connection is open (it may still break at any time)."""
        return self._proto is not None and not self._proto.closed

    @property
    def in_flight(self) -> int:
        """Calls sent on the current connection and not yet answered."""
        proto = self._proto
        return 0 if proto is None or proto.closed else proto.in_flight

    def __repr__(self) -> str:
        state = "closed" if self._closed else "connected" if self.is_connected else "disconnected"
        return f"<Client {host_port(self.config.host, self.config.port)} {state}>"

    def _check_open(self) -> None:
        if self._closed:
            raise InterfaceError("the client is closed")

    # ------------------------------------------------------------ calls

    def _call(self, method: str, params: list[Any], timeout: float | None) -> Awaitable[Any]:
        # A plain function: on the fast path the caller awaits the reply future
        # itself, so a call costs one coroutine frame (the public method), not two.
        proto = self._proto
        if proto is None or proto.closed or proto.write_paused or self._closed:
            return self._call_slow(method, params, timeout)
        if timeout is None:
            timeout = self._timeout
        elif not positive(timeout):
            raise bad_timeout(timeout)
        deadline = math.inf if timeout is None else proto.time() + timeout
        return proto.request(method, params, deadline, self._retry and method in IDEMPOTENT_METHODS)

    async def _call_slow(self, method: str, params: list[Any], timeout: float | None) -> Any:
        """A call when the connection is down or its write buffer is full: never sent yet."""
        if self._closed:
            raise InterfaceError("the client is closed")
        if timeout is None:
            timeout = self._timeout
        elif not positive(timeout):
            raise bad_timeout(timeout)
        loop = asyncio.get_running_loop()
        deadline = math.inf if timeout is None else loop.time() + timeout
        proto = await self._writable_connection(deadline)
        retry = self._retry and method in IDEMPOTENT_METHODS
        return await proto.request(method, params, deadline, retry)

    def _on_retry(self, entries: list[Entry], cause: BaseException) -> None:
        """The connection broke under idempotent calls: re-send them once, in a task."""
        task = asyncio.get_running_loop().create_task(resend(entries, cause, self._reconnect))
        self._resends.add(task)
        task.add_done_callback(self._resends.discard)

    def _on_timeout(self, proto: ClientProtocol) -> None:
        """Calls timed out on `proto`: probe it for silence (client/_recovery.py)."""
        if not self._closed:  # (a closing client drops the connection after its grace period)
            self._silence.timed_out(proto)

    async def bound_connection(self, timeout: float | None) -> ClientProtocol:
        """The current connection, (re)connected if needed, for calls that must all go
        to one connection (a transaction's watch and its commit, client/_transaction.py).
        For this package's use; applications call the methods above."""
        self._check_open()
        if timeout is not None and not positive(timeout):
            raise bad_timeout(timeout)
        proto = self._proto
        if proto is not None and not proto.closed:
            return proto
        if timeout is None:
            timeout = self._timeout
        loop = asyncio.get_running_loop()
        return await self._writable_connection(
            math.inf if timeout is None else loop.time() + timeout
        )

    # ------------------------------------------------------------ transactions

    def transaction(self, *keys: Key) -> Transaction:
        """An atomic group of operations, committed only if `keys` (if any) were not
        written by anyone since the watch was taken (optimistic concurrency).

        Use as `async with c.transaction(k) as tx:` (watch on entry, commit on a
        clean exit, TransactionAbortedError if a watched key changed), or call
        `await tx.watch()` and `await tx.commit()` (None when aborted) yourself.

        Example:
            >>> async with c.transaction(b"balance") as tx:  # doctest: +SKIP
            ...     n = int(await c.get(b"balance") or 0)
            ...     tx.put(b"balance", str(n - 10))
        """
        self._check_open()
        return Transaction(self, keys)

    async def transact(
        self, fn: Callable[[Transaction], Awaitable[T]], *keys: Key, attempts: int = 16
    ) -> tuple[T, list[Any]]:
        """Run `await fn(tx)` with `keys` watched, then commit; while a watched key
        changed meanwhile, run it again (at most `attempts` times).

        Returns:
            (what fn returned, the commit's per-operation results).

        Raises:
            TransactionAbortedError: every attempt aborted.

        Example:
            >>> async def double(tx):  # doctest: +SKIP
            ...     n = int(await c.get(b"n") or 1)
            ...     tx.put(b"n", str(2 * n))
            ...     return 2 * n
            >>> await c.transact(double, b"n")  # doctest: +SKIP
            (2, [True])
        """
        self._check_open()
        return await transact(self, fn, keys, attempts)

    async def _writable_connection(self, deadline: float) -> ClientProtocol:
        """The slow path: (re)connect and/or wait for write buffer space, within deadline."""
        try:
            async with asyncio.timeout_at(deadline if deadline < math.inf else None):
                while True:
                    proto = self._proto
                    if proto is None or proto.closed:
                        proto = await self._reconnect()
                    if not proto.write_paused:
                        return proto
                    try:
                        await proto.wait_writable()
                    except ConnectionLostError:
                        continue
        except TimeoutError:
            raise CallTimeoutError("timed out waiting for the connection") from None

    async def _reconnect(self) -> ClientProtocol:
        self._check_open()
        loop = asyncio.get_running_loop()
        if self._loop is None:
            self._loop = loop
        elif loop is not self._loop:
            # a new connection made here would move the client to this loop under
            # the tasks of the first one (its calls, its reconnection, its re-sends)
            raise InterfaceError(OTHER_LOOP)
        return await self._reconnection.join()

    async def _attempt(self) -> ClientProtocol:
        """One attempt of the reconnection: the new connection becomes the client's."""
        self._check_open()
        proto = await self._open()
        if self._closed:  # close() ran while we were connecting
            proto.abort()
            self._check_open()
        self._proto = proto
        return proto

    async def _open(self) -> ClientProtocol:
        """One connection attempt (client/_handshake.py); keeps hello's reply and limits."""
        proto, info, limits = await open_connection(self.config, self._token, self._hook)
        self.server_info, self.limits = info, limits
        return proto

    def _hook(self, proto: ClientProtocol) -> None:
        proto.on_retry = self._on_retry
        proto.on_timeout = self._on_timeout

    # ------------------------------------------------------------ session methods

    async def hello(self, *, timeout: float | None = None) -> dict[str, Any]:
        """Send hello again; refreshes and returns `server_info` (and the limits).

        Example:
            >>> (await c.hello())["limits"]["max_value_size"]  # doctest: +SKIP
            67108864
        """
        self._check_open()
        if timeout is not None and not positive(timeout):
            raise bad_timeout(timeout)
        timeout = self._timeout if timeout is None else timeout
        deadline = math.inf if timeout is None else asyncio.get_running_loop().time() + timeout
        proto = await self._writable_connection(deadline)
        info, limits = await say_hello(proto, self.config.client_name, self._token, deadline)
        self.server_info, self.limits = info, limits
        return info

    async def auth(self, token: str | bytes, *, timeout: float | None = None) -> None:
        """Authenticate this connection; the token is kept for reconnects.

        Raises:
            AuthFailedError: the token is wrong.
        """
        tok = to_bytes(token, "token")
        await self._call("auth", [tok], timeout)
        self._token = tok

    # ------------------------------------------------------------ backup

    async def backup(
        self,
        dest: str | os.PathLike[str],
        *,
        force: bool = False,
        progress: Callable[[int, int], None] | None = None,
        timeout: float | None = None,
        rate: float | None = None,
    ) -> BackupReport:
        """Copy a consistent snapshot of the server's store into directory `dest`.

        The server seals its active file and pins the files of that cut (writes and
        merges go on); the files are pulled chunk by chunk over this connection into
        a temporary sibling directory, each checked against the server's size and
        CRC-32, fsynced, and renamed to `dest` only once complete. `dest` then opens
        as a store (`bitcask-server --data DEST`, `bitcask.open(DEST)`) reading only
        hints. It also holds `backup.json` (the snapshot's manifest).

        Args:
            dest: the backup directory: absent or empty (or anything, with `force`).
            force: replace a non-empty `dest` (only once the new backup is complete).
            progress: called as progress(bytes_done, bytes_total) as chunks arrive.
            timeout: per call (default: the client's; snapshot_begin waits up to an
                hour for a running merge).
            rate: at most this many bytes per second (None: as fast as it goes), to
                leave the server's CPU and disk to other clients.

        Returns:
            A BackupReport: path, files, bytes, seconds, manifest.

        Raises:
            BackupError: anything failed (the cause is chained); nothing is left
                under `dest`'s name and the server's pins are released.

        Example:
            >>> async with connect("127.0.0.1", 7379) as c:  # doctest: +SKIP
            ...     report = await c.backup("/backups/2026-11-30")
        """
        from client._backup import run_backup

        self._check_open()
        return await run_backup(
            self._call, dest, force=force, progress=progress, timeout=timeout, rate=rate
        )

    # ------------------------------------------------------------ closing

    async def close(self, *, timeout: float | None = None) -> None:
        """Stop taking calls, let calls in flight finish (bounded), then disconnect.

        Calls still unanswered after `timeout` (default: the client's) fail with
        ConnectionLostError, and so do calls waiting for a reconnection or for the
        write buffer to drain (nothing of those was sent). Closing twice is fine.
        Called from another event loop than the client's (asyncio.run(c.close())
        after the first asyncio.run ended, or in another thread), it only marks the
        client closed and has its connection dropped if that loop still exists (in
        that loop's thread: its calls fail with ConnectionLostError, as terminate()).
        """
        if self._closed:
            return
        if self._loop is not None and asyncio.get_running_loop() is not self._loop:
            self.terminate()  # nothing of the first loop can be awaited here
            return
        self._closed = True  # a reconnection in progress notices and raises InterfaceError
        self._reconnection.stop()  # its waiters get InterfaceError
        proto = self._proto
        if proto is None or proto.closed:
            return
        waits = proto.pending_futures()
        limit = self._timeout if timeout is None else timeout
        try:
            if waits:
                await asyncio.wait(waits, timeout=limit)
            if proto.pending_futures():
                # the grace period is over: fail them now. A graceful close would first
                # flush the write buffer, which a server that stopped reading never drains
                proto.abort(ConnectionAbortedError("client closed the connection"))
            else:
                proto.close()
            await asyncio.wait([proto.lost], timeout=1.0)
        finally:
            if not proto.lost.done():
                # cancelled while closing, or a peer that reads nothing (the graceful
                # close would wait for it forever): drop the connection, leak nothing
                proto.abort(ConnectionAbortedError("client closed the connection"))

    def terminate(self) -> None:
        """Close at once: pending calls fail with ConnectionLostError."""
        self._closed = True
        loop = self._loop
        if loop is not None and loop.is_closed():
            return  # its connections ended with it: nothing to send, nothing to wake
        if loop is not None and loop.is_running() and _running_loop() is not loop:
            # called from another thread: the connection is dropped in its loop's own
            # thread (an abort from here would leave that loop asleep in its selector,
            # never told, and its calls waiting for good)
            loop.call_soon_threadsafe(self._drop)
            return
        self._drop()

    def _drop(self) -> None:
        self._reconnection.stop()
        if self._proto is not None:
            self._proto.abort()

    async def __aenter__(self) -> Client:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close()

    async def _start(self) -> Client:
        """First connection: one round of attempts; errors surface to connect()."""
        self._loop = asyncio.get_running_loop()
        self._proto = await self._open()
        return self


def _running_loop() -> asyncio.AbstractEventLoop | None:
    """The event loop running in this thread, or None."""
    try:
        return asyncio.get_running_loop()
    except RuntimeError:
        return None


class _Connecting:
    """What connect() returns: await it for a Client, or use it with `async with`."""

    __slots__ = ("_client", "_config")

    def __init__(self, config: ClientConfig) -> None:
        self._config = config
        self._client: Client | None = None

    def __await__(self) -> Generator[Any, None, Client]:
        return Client(self._config)._start().__await__()

    async def __aenter__(self) -> Client:
        self._client = await Client(self._config)._start()
        return self._client

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if self._client is not None:
            await self._client.close()


def connect(
    host: str = "127.0.0.1",
    port: int | None = None,
    *,
    auth: str | bytes | None = None,
    timeout: float | None = 5.0,
    **options: Any,
) -> _Connecting:
    """Connect to a bitcask server.

    Args:
        host: host name or address, or a URL `bitcask://[:token@]host[:port][?timeout=s]`.
        port: the binary port (default 7379); not with a URL.
        auth: the server's token, if it has one.
        timeout: default timeout of every call, in seconds, and the bound of each
            connection attempt; None for no timeout.
        **options: other ClientConfig fields: reconnect_attempts, backoff_base,
            backoff_max, retry_idempotent, client_name.

    Returns:
        An awaitable giving a connected `Client`; also an async context manager
        that closes the client on exit.

    Raises:
        ConnectError: the server cannot be reached.
        AuthRequiredError, AuthFailedError: missing or wrong token.
        UnsupportedVersionError: the server does not speak protocol 1.
        TooManyConnectionsError: the server refused the connection.
        InterfaceError: bad arguments.

    Example:
        >>> c = await connect("bitcask://127.0.0.1:7379", timeout=2.0)  # doctest: +SKIP
        >>> async with connect("127.0.0.1", 7379) as c:  # doctest: +SKIP
        ...     await c.ping()
    """
    if not isinstance(host, str):
        raise InterfaceError(f"host must be a str, got {type(host).__name__}")
    options.setdefault("timeout", timeout)
    return _Connecting(make_config(host, port, auth=auth, **options))
