"""The client against real servers that die, stop (SIGSTOP) or never answer.

Each test drives a fault an asyncio application meets in production and checks
what the brief of client.md promises: every call ends (bounded), nothing
non-idempotent is sent twice or sent behind the caller's back, and the client
stays usable or ends cleanly.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import socket
from collections.abc import Callable, Coroutine, Iterator
from typing import Any

import pytest

from client import (
    CallTimeoutError,
    Client,
    ClientError,
    ConnectionLostError,
    InterfaceError,
    Pool,
    Transaction,
    ValueTooLargeError,
    connect,
    connect_sharded,
)
from client._config import make_config
from client._resp import EndpointClosedError, Refusals, RespClient, connect_resp
from tests.serverproc import ServerProcess

pytestmark = pytest.mark.timeout(120)

BOUND = 15.0  # seconds any single wait in these tests may take before it counts as a hang


@contextlib.contextmanager
def stopped(server: ServerProcess) -> Iterator[None]:
    """The server process frozen (SIGSTOP) inside the block, resumed after it."""
    assert server.proc is not None
    os.kill(server.proc.pid, signal.SIGSTOP)
    try:
        yield
    finally:
        os.kill(server.proc.pid, signal.SIGCONT)


@contextlib.contextmanager
def black_hole() -> Iterator[int]:
    """A port whose listener never accepts: the kernel completes the handshake (the
    backlog), so a connection opens and then nothing is ever read or answered."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.bind(("127.0.0.1", 0))
    sock.listen(16)
    try:
        yield int(sock.getsockname()[1])
    finally:
        sock.close()


# ---------------------------------------------------------------- event loops


def test_a_call_from_another_event_loop_sends_nothing(server: ServerProcess) -> None:
    # Before: the incr was written by the first loop's transport and applied by the
    # server, while the caller got a RuntimeError (future attached to a different
    # loop): an application retrying on that error counted twice.
    holder: list[Client] = []

    async def first() -> None:
        c = await connect(server.host, server.port)
        await c.put(b"n", b"0")
        holder.append(c)

    async def second() -> None:
        c = holder[0]
        with pytest.raises(InterfaceError, match="event loop"):
            await c.incr(b"n")
        with pytest.raises(InterfaceError, match="event loop"):
            await c.get(b"n")
        await c.close()  # from the other loop: marks it closed, raises nothing
        assert c.closed

    async def check() -> None:
        async with connect(server.host, server.port) as c:
            assert await c.get(b"n") == b"0"

    asyncio.run(first())
    asyncio.run(second())
    asyncio.run(check())


def test_a_client_whose_connection_broke_does_not_move_to_another_loop(
    server: ServerProcess,
) -> None:
    # The reconnection path must refuse too: it would otherwise connect in the new
    # loop and carry on under the first loop's tasks.
    holder: list[Client] = []

    async def first() -> None:
        c = await connect(server.host, server.port)
        holder.append(c)
        c.terminate()
        holder[0]._closed = False  # as if only the connection had broken

    async def second() -> None:
        with pytest.raises(InterfaceError, match="event loop"):
            await holder[0].put(b"k", b"v")

    async def check() -> None:
        async with connect(server.host, server.port) as c:
            assert await c.get(b"k") is None

    asyncio.run(first())
    asyncio.run(second())
    asyncio.run(check())


# ---------------------------------------------------------------- close


async def test_close_ends_calls_to_a_stopped_server_within_its_timeout(
    server: ServerProcess,
) -> None:
    # Before: with the server frozen and the socket's write buffer full, close()
    # returned after its grace period with every call still pending and the socket
    # open; the calls hung until the server came back (forever, with timeout=None).
    c = await connect(server.host, server.port, timeout=None)
    await c.put(b"a", b"1")
    big = b"x" * (4 << 20)
    with stopped(server):
        calls: list[asyncio.Future[object]] = [
            asyncio.ensure_future(c.put(b"big%d" % i, big)) for i in range(6)
        ]
        calls.append(asyncio.ensure_future(c.get(b"a")))
        for _ in range(200):  # bounded: until the transport pushes back
            if c._proto is not None and c._proto.write_paused:
                break
            await asyncio.sleep(0.01)
        await asyncio.wait_for(c.close(timeout=0.5), BOUND)
        done, pending = await asyncio.wait(calls, timeout=BOUND)
        assert not pending, f"{len(pending)} calls still waiting after close()"
        for call in done:
            exc = call.exception()
            # sent and unanswered: ConnectionLostError; never sent: InterfaceError
            assert isinstance(exc, ConnectionLostError | InterfaceError), repr(exc)
        assert c._proto is not None and c._proto.closed
    async with connect(server.host, server.port) as again:
        assert await again.get(b"a") == b"1"


async def test_close_stops_a_reconnection_to_a_server_that_never_answers() -> None:
    # Before: close() returned while the reconnection it raced went on: with
    # timeout=None the caller waiting for it hung forever.
    with black_hole() as port:
        c = Client(make_config("127.0.0.1", port, timeout=None))
        call = asyncio.ensure_future(c.get(b"k"))
        await asyncio.sleep(0.2)  # the call is now waiting for hello's reply
        assert not call.done()
        await asyncio.wait_for(c.close(), BOUND)
        done, _ = await asyncio.wait([call], timeout=BOUND)
        assert done, "the call still waits for a reconnection after close()"
        with pytest.raises(InterfaceError, match="closed"):
            call.result()


async def test_terminate_stops_a_reconnection_to_a_server_that_never_answers() -> None:
    with black_hole() as port:
        c = Client(make_config("127.0.0.1", port, timeout=None))
        call = asyncio.ensure_future(c.ping())
        await asyncio.sleep(0.2)
        c.terminate()
        done, _ = await asyncio.wait([call], timeout=BOUND)
        assert done and isinstance(call.exception(), ClientError)


# ---------------------------------------------------------------- pool


async def _open_connections(server: ServerProcess, expected: int) -> int:
    """The server's count of open connections (besides the one asking), once it
    settles at `expected` or after a bounded wait."""
    async with connect(server.host, server.port) as c:
        count = -1
        for _ in range(100):  # closes reach the server asynchronously
            count = int((await c.stats())["server"]["connections"]) - 1
            if count == expected:
                break
            await asyncio.sleep(0.05)
        return count


async def test_a_pool_started_by_several_tasks_at_once_opens_one_set(
    server: ServerProcess,
) -> None:
    # Before: each concurrent start() opened `size` connections and the last one won;
    # close() closed 4 and left 8 open on the server.
    pool = Pool(server.host, server.port, size=4)
    await asyncio.gather(pool.start(), pool.start(), pool.start())
    assert len(pool.clients) == 4
    assert await _open_connections(server, 4) == 4
    await pool.close()
    assert await _open_connections(server, 0) == 0


async def test_a_pool_closed_while_it_starts_leaves_no_connection(
    server: ServerProcess,
) -> None:
    # Before: start() finished after close() and kept 4 live connections in a pool
    # that said it was closed.
    pool = Pool(server.host, server.port, size=4)
    starting = asyncio.ensure_future(pool.start())
    await asyncio.sleep(0)
    await pool.close()
    with pytest.raises(InterfaceError, match="closed"):
        await starting
    assert await _open_connections(server, 0) == 0
    with pytest.raises(InterfaceError):
        await pool.get(b"k")


async def test_a_close_that_is_cancelled_still_drops_the_connection(
    server: ServerProcess,
) -> None:
    # Before: a task cancelled while close() waited for its calls in flight (an
    # application shutting down) left the connection open and the calls pending.
    c = await connect(server.host, server.port, timeout=None)
    with stopped(server):
        call = asyncio.ensure_future(c.get(b"k"))
        await asyncio.sleep(0.1)
        closing = asyncio.ensure_future(c.close(timeout=60))
        await asyncio.sleep(0.1)
        closing.cancel()
        await asyncio.wait([closing], timeout=BOUND)
        assert closing.cancelled()
        done, _ = await asyncio.wait([call], timeout=BOUND)
        assert done and isinstance(call.exception(), ConnectionLostError)
        assert c._proto is not None and c._proto.closed


async def test_a_pool_closed_while_its_server_never_answers_hello() -> None:
    with black_hole() as port:
        pool = Pool("127.0.0.1", port, size=3, timeout=None)
        starting = asyncio.ensure_future(pool.start())
        await asyncio.sleep(0.2)
        await asyncio.wait_for(pool.close(), BOUND)
        done, _ = await asyncio.wait([starting], timeout=BOUND)
        assert done and isinstance(starting.exception(), InterfaceError)


async def test_a_cancelled_start_leaves_no_connection(server: ServerProcess) -> None:
    # One address of the pool's / the sharded client's answers, one never does: the
    # start is cancelled (a timeout around it) while the first connections are open.
    # Before: those connections stayed open, owned by nobody.
    with black_hole() as port:
        shards = {"a": f"127.0.0.1:{server.port}", "b": f"127.0.0.1:{port}"}
        with pytest.raises(TimeoutError):
            await asyncio.wait_for(connect_sharded(shards, timeout=None), 1.0)
        assert await _open_connections(server, 0) == 0


# ---------------------------------------------------------------- retries


async def test_only_idempotent_calls_are_sent_again_after_a_server_dies(
    server: ServerProcess,
) -> None:
    # incr, append, batch, commit, set and merge-like calls in flight when the server
    # dies may have been applied: they fail with ConnectionLostError and are never sent
    # again; reads in flight are re-sent once on the new connection. Counted on the
    # server: the frozen server never read the writes, so nothing may have applied them.
    c = await connect(server.host, server.port, timeout=30, backoff_max=0.2)
    await c.mput({b"n": b"0", b"s": b"", b"r": b"read-me"})
    assert server.proc is not None
    os.kill(server.proc.pid, signal.SIGSTOP)
    writes: list[Coroutine[Any, Any, object]] = [
        *(c.incr(b"n") for _ in range(20)),
        *(c.append(b"s", b"x") for _ in range(20)),
        c.set(b"new", b"v", nx=True),
        c.put(b"p", b"v"),
        c.delete(b"r"),
        c.mput({b"m": b"v"}),
        c.get_delete(b"r"),
    ]
    write_calls = [asyncio.ensure_future(w) for w in writes]
    reads: list[asyncio.Future[object]] = [asyncio.ensure_future(c.get(b"r")) for _ in range(20)]
    reads.append(asyncio.ensure_future(c.mget([b"r", b"n"])))
    await asyncio.sleep(0.2)
    server.kill()  # SIGKILL delivered to a stopped process: it dies without reading
    server.start()
    _, pending = await asyncio.wait([*write_calls, *reads], timeout=BOUND * 2)
    assert not pending
    for call in write_calls:
        assert isinstance(call.exception(), ConnectionLostError), repr(call.exception())
    assert [r.result() for r in reads[:-1]] == [b"read-me"] * 20
    assert reads[-1].result() == [b"read-me", b"0"]
    assert await c.mget([b"n", b"s", b"new", b"p", b"r", b"m"]) == [
        b"0", b"", None, None, b"read-me", None,
    ]  # fmt: skip
    await c.close()


def test_a_resp_command_from_another_event_loop_sends_nothing(server: ServerProcess) -> None:
    # Before: the INCR was written and applied, while its caller (in the second loop)
    # waited for a reply that the first loop's reader task would never deliver, and
    # got CallTimeoutError: retried, it counted twice.
    holder: list[RespClient] = []

    async def first() -> None:
        c = await connect_resp(server.host, server.port, timeout=2.0)
        await c.put(b"n", b"0")
        holder.append(c)

    async def second() -> None:
        with pytest.raises(InterfaceError, match="event loop"):
            await holder[0].incr(b"n")
        await holder[0].close()
        assert holder[0].closed

    async def check() -> None:
        async with connect(server.host, server.port) as c:
            assert await c.get(b"n") == b"0"

    asyncio.run(first())
    asyncio.run(second())
    asyncio.run(check())


async def test_a_pool_checks_against_the_limits_of_the_restarted_server(
    server_factory: Callable[..., ServerProcess],
) -> None:
    # Before: Pool.limits was copied from the first hello, so after the server came
    # back with a larger --max-value-size the pool still refused, locally, values the
    # server (and every connection's own limits) accepted.
    srv = server_factory(extra=["--max-value-size", "100"])
    async with Pool(srv.host, srv.port, size=2, backoff_max=0.2) as pool:
        with pytest.raises(ValueTooLargeError):
            await pool.put(b"k", b"x" * 500)
        srv.stop()
        srv.extra = ["--max-value-size", "1000"]
        srv.start()
        for _ in range(2 * pool.size):  # every connection meets the restart
            with contextlib.suppress(ConnectionLostError):
                await pool.ping()
        assert pool.limits.max_value_size == 1000
        await pool.put(b"k", b"x" * 500)
        assert await pool.get(b"k") == b"x" * 500


# ---------------------------------------------------------------- transactions


async def test_an_error_in_a_transaction_is_raised_at_once_when_the_server_stops(
    server: ServerProcess,
) -> None:
    # Before: the watch was released by awaiting its unwatch reply: with the server
    # frozen, transact() and the `async with` block raised CallTimeoutError after a
    # whole timeout instead of the application's own error (and a cancelled task
    # waited as long).
    c = await connect(server.host, server.port, timeout=60.0)
    await c.put(b"acct", b"10")

    assert server.proc is not None
    pid = server.proc.pid

    async def pay(tx: Transaction) -> None:
        os.kill(pid, signal.SIGSTOP)  # the server freezes just as the block fails
        raise ValueError("insufficient funds")

    try:
        with pytest.raises(ValueError, match="insufficient"):
            await asyncio.wait_for(c.transact(pay, b"acct"), BOUND)
        os.kill(pid, signal.SIGCONT)

        async def block() -> None:
            async with c.transaction(b"acct") as tx:
                await pay(tx)

        with pytest.raises(ValueError, match="insufficient"):
            await asyncio.wait_for(block(), BOUND)
    finally:
        os.kill(pid, signal.SIGCONT)
    # the watches were released: a transaction on the same keys still commits
    async with c.transaction(b"acct") as tx:
        tx.incr(b"acct", 5)
    assert tx.results == [15]
    await c.close()


# ---------------------------------------------------------------- per-call timeouts


@pytest.mark.parametrize(
    "timeout", [0, -1.0, float("nan"), "5"], ids=["zero", "negative", "nan", "str"]
)
async def test_a_per_call_timeout_that_is_not_positive_sends_nothing(
    server: ServerProcess, timeout: Any
) -> None:
    # Before: timeout=0 or -1 sent the incr (applied) and raised CallTimeoutError at
    # once; timeout=nan never timed out (no timer fires for a NaN deadline), so a call
    # to a server that stopped answering hung forever. ClientConfig refuses them.
    # A str (a timeout read from a config file) raised "TypeError: '>' not supported
    # between instances of 'str' and 'int'" instead of the misuse error.
    async with connect(server.host, server.port) as c:
        await c.put(b"n", b"0")
        with pytest.raises(InterfaceError, match="timeout"):
            await c.incr(b"n", timeout=timeout)
        with pytest.raises(InterfaceError, match="timeout"):
            async with c.transaction(b"n") as tx:
                tx.incr(b"n")
                await tx.commit(timeout=timeout)
        with pytest.raises(InterfaceError, match="timeout"):
            await c.hello(timeout=timeout)
        with pytest.raises(InterfaceError, match="timeout"):
            await c.transaction(b"n").watch(timeout=timeout)
        r = await connect_resp(server.host, server.port)
        try:
            with pytest.raises(InterfaceError, match="timeout"):
                await r.incr(b"n", timeout=timeout)
        finally:
            await r.close()
        assert await c.get(b"n") == b"0"


async def test_calls_that_give_up_waiting_for_buffer_space_leave_nothing_behind(
    server: ServerProcess,
) -> None:
    # Before: each call that timed out (or was cancelled by wait_for) while the write
    # buffer was full left its waiter in the connection's list: against a server that
    # stopped reading, one more per call, without bound.
    c = await connect(server.host, server.port, timeout=None)
    big = b"x" * (4 << 20)
    with stopped(server):
        puts = [asyncio.ensure_future(c.put(b"big%d" % i, big)) for i in range(6)]
        for _ in range(200):  # bounded: until the transport pushes back
            if c._proto is not None and c._proto.write_paused:
                break
            await asyncio.sleep(0.01)
        assert c._proto is not None and c._proto.write_paused
        for _ in range(200):
            with pytest.raises(CallTimeoutError):
                await c.get(b"k", timeout=0.001)
            with pytest.raises(TimeoutError):
                await asyncio.wait_for(c.get(b"k"), 0.001)
        assert len(c._proto._writable) <= len(puts)
    await asyncio.wait(puts, timeout=BOUND * 2)
    assert all(p.done() and p.exception() is None for p in puts)
    await c.close()


# ---------------------------------------------------------------- RESP endpoints


async def test_a_resp_endpoint_dying_mid_reply_is_not_taken_for_a_refusal() -> None:
    # Before: a close after part of a GET's reply counted as the endpoint refusing
    # GET (as twemproxy refuses SCAN, by closing): twice, and the session refused
    # every later GET locally, "does not support GET". A close before any byte of
    # the reply still counts (the twemproxy case).
    async def cut_mid_reply(r: asyncio.StreamReader, w: asyncio.StreamWriter) -> None:
        await r.read(1024)
        w.write(b"$100\r\nhalf a value")
        await w.drain()
        w.close()

    async def close_at_once(r: asyncio.StreamReader, w: asyncio.StreamWriter) -> None:
        await r.read(1024)
        w.close()

    refusals = Refusals()
    for handler, refused in ((cut_mid_reply, False), (close_at_once, True)):
        srv = await asyncio.start_server(handler, "127.0.0.1", 0)
        port = srv.sockets[0].getsockname()[1]
        try:
            for _ in range(3 if not refused else Refusals.STRIKES):
                c = await connect_resp("127.0.0.1", port, timeout=BOUND, refusals=refusals)
                try:
                    with pytest.raises(ConnectionLostError) as info:
                        await c.get(b"k")
                finally:
                    await c.close()
                if not refused:
                    assert "middle of a reply" in str(info.value)
                    assert not isinstance(info.value, EndpointClosedError)
        finally:
            srv.close()
            await srv.wait_closed()
        assert refusals.refuses(("GET", 2)) is refused
