"""A connection that stays open but goes silent: the client replaces it.

A server frozen (SIGSTOP), a NAT or firewall that forgot the flow, a host gone
from under an open socket: the connection is still "open" and nothing ever comes
back on it. Before the fix, every later call was sent on that connection and
timed out too, forever, although a new connection would have been answered.
Now a call that times out makes the client ping on that connection; if nothing
at all arrives within the client's timeout, the connection is dropped and the
next call opens a fresh one (docs/client.md, "Timeouts and cancellation").

The relay below stands between the client and a real server and can stop
forwarding on the connections it holds (both ways) while it still serves new
ones: the black-holed path.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
from collections.abc import AsyncIterator
from typing import Any

import pytest

from client import CallTimeoutError, ConnectionLostError, Pool, connect
from tests.client.fake import fake_server
from tests.serverproc import ServerProcess

pytestmark = pytest.mark.timeout(60)

BOUND = 15.0  # any single wait longer than this counts as a hang


class Relay:
    """127.0.0.1:port -> the server; `black_hole()` silences the connections held now."""

    def __init__(self, host: str, port: int) -> None:
        self.target = (host, port)
        self.connections = 0
        self._silenced: list[asyncio.Event] = []
        self._tasks: set[asyncio.Task[None]] = set()
        self._writers: list[asyncio.StreamWriter] = []
        self._server: asyncio.Server | None = None
        self.port = 0

    async def start(self) -> Relay:
        self._server = await asyncio.start_server(self._serve, "127.0.0.1", 0)
        self.port = int(self._server.sockets[0].getsockname()[1])
        return self

    def black_hole(self) -> None:
        for silenced in self._silenced:
            silenced.set()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        up_reader, up_writer = await asyncio.open_connection(*self.target)
        self._writers += [writer, up_writer]
        silenced = asyncio.Event()
        self._silenced.append(silenced)
        for src, dst in ((reader, up_writer), (up_reader, writer)):
            task = asyncio.ensure_future(self._pipe(src, dst, silenced))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)

    @staticmethod
    async def _pipe(
        src: asyncio.StreamReader, dst: asyncio.StreamWriter, silenced: asyncio.Event
    ) -> None:
        with contextlib.suppress(OSError):
            while data := await src.read(65536):
                if not silenced.is_set():  # a black hole reads and drops, as a dead path
                    dst.write(data)
        with contextlib.suppress(OSError):
            dst.close()

    async def close(self) -> None:
        if self._server is not None:
            self._server.close()
        for w in self._writers:
            w.transport.abort()
        for t in list(self._tasks):
            t.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)


async def dropped(*clients: Any) -> bool:
    """Wait (bounded) until none of `clients` holds a connection; whether they all let go."""
    for _ in range(int(BOUND / 0.05)):
        if not any(c.is_connected for c in clients):
            return True
        await asyncio.sleep(0.05)
    return False


@contextlib.asynccontextmanager
async def relay_to(server: ServerProcess) -> AsyncIterator[Relay]:
    relay = await Relay(server.host, server.port).start()
    try:
        yield relay
    finally:
        await relay.close()


async def test_a_black_holed_connection_is_replaced_after_a_timeout(
    server: ServerProcess,
) -> None:
    # Before: the put and every later call went out on the silent connection and
    # timed out (the relay saw one connection, ever).
    async with relay_to(server) as relay:
        c = await connect("127.0.0.1", relay.port, timeout=0.5, backoff_base=0.01)
        await c.put(b"k", b"v1")
        relay.black_hole()
        with pytest.raises(CallTimeoutError):
            await c.get(b"k")
        # the probe (a ping on the silent connection) gets nothing back: dropped
        assert await dropped(c), "the silent connection was kept"
        await c.put(b"k", b"v2", timeout=BOUND)  # on a fresh connection
        assert await c.get(b"k") == b"v2"
        assert relay.connections == 2
        await c.close()


async def test_calls_on_the_silent_connection_end_typed_and_reads_are_resent(
    server: ServerProcess,
) -> None:
    # calls sent on the connection while the probe waits: writes fail with
    # ConnectionLostError (they may have been applied), idempotent reads are sent once
    # more on the new connection within their own deadline
    async with relay_to(server) as relay:
        c = await connect("127.0.0.1", relay.port, timeout=0.5, backoff_base=0.01)
        await c.put(b"k", b"v")
        relay.black_hole()
        with pytest.raises(CallTimeoutError):
            await c.get(b"k")
        read = asyncio.ensure_future(c.get(b"k", timeout=BOUND))
        write = asyncio.ensure_future(c.put(b"w", b"x", timeout=BOUND))
        done, _ = await asyncio.wait([read, write], timeout=BOUND * 2)
        assert done == {read, write}
        assert read.result() == b"v"
        assert isinstance(write.exception(), ConnectionLostError), repr(write.exception())
        await c.close()


async def test_a_pool_replaces_each_silent_connection(server: ServerProcess) -> None:
    async with (
        relay_to(server) as relay,
        Pool("127.0.0.1", relay.port, size=2, timeout=0.5, backoff_base=0.01) as pool,
    ):
        await pool.put(b"k", b"v")
        relay.black_hole()
        for _ in range(2):  # round robin: one call times out on each connection
            with pytest.raises(CallTimeoutError):
                await pool.get(b"k")
        assert await dropped(*pool.clients)
        assert [await pool.get(b"k", timeout=BOUND) for _ in range(4)] == [b"v"] * 4
        assert relay.connections == 4


async def test_a_stopped_server_is_reached_again_once_it_resumes(server: ServerProcess) -> None:
    assert server.proc is not None
    c = await connect(server.host, server.port, timeout=0.5, backoff_base=0.01)
    await c.put(b"k", b"v")
    os.kill(server.proc.pid, signal.SIGSTOP)
    try:
        with pytest.raises(CallTimeoutError):
            await c.get(b"k")
        assert await dropped(c)
        with pytest.raises(CallTimeoutError):  # a new connection is not answered either
            await c.get(b"k", timeout=0.3)
    finally:
        os.kill(server.proc.pid, signal.SIGCONT)
    assert await c.get(b"k", timeout=BOUND) == b"v"
    await c.close()


async def test_a_slow_call_on_a_live_connection_keeps_it() -> None:
    # the server answers the probe: the connection is alive, only that call was slow.
    # Its late reply is dropped and the same connection serves the next calls.
    async with fake_server() as srv:
        srv.withhold.add("get")
        async with connect("127.0.0.1", srv.port, timeout=0.5) as c:
            with pytest.raises(CallTimeoutError):
                await c.get(b"a", timeout=0.05)
            await asyncio.sleep(0.7)  # past the probe's own timeout
            assert c.is_connected
            assert await c.ping() == "PONG"
            assert srv.connections == 1
            assert [r.method for r in srv.requests].count("ping") == 2  # the probe, ours
