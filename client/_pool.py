"""`Pool`: N client connections behind the same call methods.

One `Client` already multiplexes any number of tasks over one connection; a pool
helps when one connection's event-loop callbacks, or the server's per-connection
ordering, become the bottleneck. Each call goes to one connection, picked
round-robin or least-busy (fewest calls in flight); each connection reconnects
on its own.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Generator
from types import TracebackType
from typing import Any, Literal

from client._client import Client
from client._commands import Commands
from client._config import ClientConfig, Limits, make_config
from client._recovery import cancelling, own_copy
from client.errors import ClientError, InterfaceError

__all__ = ["Pool"]

Strategy = Literal["round_robin", "least_busy"]

_NO_LIMITS_YET = Limits()


class Pool(Commands):
    """A fixed set of connections to one server, with the Client call methods.

    Args:
        host: host or `bitcask://` URL, as for `connect()`.
        port: the binary port (not with a URL).
        size: the number of connections (>= 1).
        strategy: "round_robin" (default) or "least_busy".
        auth, timeout, **options: as for `connect()`.

    Await it (or use `async with`) to open every connection.

    Example:
        >>> async with Pool("127.0.0.1", 7379, size=4) as pool:  # doctest: +SKIP
        ...     await pool.put(b"k", b"v")
        ...     await pool.get(b"k")
        b'v'
    """

    def __init__(
        self,
        host: str = "127.0.0.1",
        port: int | None = None,
        *,
        size: int = 4,
        strategy: Strategy = "round_robin",
        auth: str | bytes | None = None,
        timeout: float | None = 5.0,
        **options: Any,
    ) -> None:
        if type(size) is not int or size < 1:
            raise InterfaceError(f"size must be an int >= 1, got {size!r}")
        if strategy not in ("round_robin", "least_busy"):
            raise InterfaceError(f"strategy must be round_robin or least_busy, got {strategy!r}")
        options.setdefault("timeout", timeout)
        self.config: ClientConfig = make_config(host, port, auth=auth, **options)
        self.size = size
        self.strategy = strategy
        self.clients: list[Client] = []
        self._next = 0
        self._closed = False
        self._starting: asyncio.Future[None] | None = None  # the connections being opened

    @property
    def limits(self) -> Limits:  # type: ignore[override]
        """The server's limits as the first connection's last hello announced them (a
        server restarted with other limits is seen once it reconnected); the defaults
        before start()."""
        return self.clients[0].limits if self.clients else _NO_LIMITS_YET

    @property
    def server_info(self) -> dict[str, Any]:
        """The hello reply of the first connection."""
        return self.clients[0].server_info if self.clients else {}

    @property
    def closed(self) -> bool:
        """True once close() or terminate() was called (as `Client.closed`)."""
        return self._closed

    @property
    def in_flight(self) -> int:
        """Calls in flight over all connections."""
        return sum(c.in_flight for c in self.clients)

    def _check_open(self) -> None:
        if self._closed:
            raise InterfaceError("the pool is closed")
        if not self.clients:
            raise InterfaceError("the pool is not started: await it first")

    async def start(self) -> Pool:
        """Open every connection (concurrently); closes them all if one fails.

        Starting a started pool returns it; callers starting it at the same time
        share one set of connections.
        """
        if self.clients:
            return self
        if self._closed:
            raise InterfaceError("the pool is closed")
        if self._starting is None:
            self._starting = asyncio.ensure_future(self._open_all())
            self._starting.add_done_callback(_retrieve)
        starting = self._starting
        try:
            await asyncio.shield(starting)
        except asyncio.CancelledError:
            if self._closed and starting.cancelled() and not cancelling():
                # close() stopped the start (and this caller was not cancelled)
                raise InterfaceError("the pool was closed while starting") from None
            raise
        except ClientError as exc:  # one object for every caller that started it
            raise own_copy(exc) from exc.__cause__
        finally:
            if starting.done() and self._starting is starting:
                self._starting = None  # a failed start may be tried again
        return self

    async def _open_all(self) -> None:
        opening = [Client(self.config) for _ in range(self.size)]
        try:
            results = await asyncio.gather(*(c._start() for c in opening), return_exceptions=True)
        except BaseException:  # cancelled (close()): the ones already open are dropped too
            for c in opening:
                c.terminate()
            raise
        clients = [r for r in results if isinstance(r, Client)]
        errors = [r for r in results if not isinstance(r, Client)]
        if errors or self._closed:
            await asyncio.gather(*(c.close() for c in clients))
            raise errors[0] if errors else InterfaceError("the pool was closed while starting")
        self.clients = clients

    def _pick(self) -> Client:
        clients = self.clients
        if self.strategy == "least_busy":
            return min(clients, key=_in_flight)
        i = self._next
        self._next = (i + 1) % len(clients)
        return clients[i]

    def _call(self, method: str, params: list[Any], timeout: float | None) -> Awaitable[Any]:
        # a plain function handing over the client's coroutine: no extra frame per call
        self._check_open()
        return self._pick()._call(method, params, timeout)

    async def close(self, *, timeout: float | None = None) -> None:
        """Close every connection (gracefully, as Client.close)."""
        self._closed = True
        if self._starting is not None:
            # a start under way: cancelling it aborts the connections it is opening
            # (a server that never answers hello would otherwise hold close() up)
            self._starting.cancel()
            await asyncio.wait([self._starting])
        await asyncio.gather(*(c.close(timeout=timeout) for c in self.clients))

    def terminate(self) -> None:
        """Close every connection at once."""
        self._closed = True
        if self._starting is not None:
            self._starting.cancel()
        for c in self.clients:
            c.terminate()

    def __await__(self) -> Generator[Any, None, Pool]:
        return self.start().__await__()

    async def __aenter__(self) -> Pool:
        return await self.start()

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close()


def _retrieve(fut: asyncio.Future[None]) -> None:
    if not fut.cancelled():
        fut.exception()  # retrieved, so a start nobody awaits any more is not logged


def _in_flight(client: Client) -> int:
    return client.in_flight
