"""The client against a real `python -m server` child (fixtures from tests/conftest.py)."""

from __future__ import annotations

import asyncio
import signal
from collections.abc import Callable
from typing import Any

import pytest

from client import (
    AuthFailedError,
    AuthRequiredError,
    CallTimeoutError,
    Client,
    ConnectionLostError,
    InterfaceError,
    KeyTooLargeError,
    Pool,
    ShuttingDownError,
    TooManyConnectionsError,
    ValueTooLargeError,
    connect,
)
from tests.serverproc import ServerProcess

pytestmark = pytest.mark.timeout(120)


async def test_every_method(server: ServerProcess) -> None:
    async with connect(server.host, server.port) as c:
        assert c.server_info["server"] == "bitcask" and c.server_info["protocol"] == 1
        assert c.limits.max_key_size == c.server_info["limits"]["max_key_size"]
        assert (await c.hello())["protocol"] == 1
        assert await c.ping() == "PONG"
        assert await c.ping(b"echo") == b"echo"
        await c.put(b"k", b"v")
        await c.put("text-key", "text value")
        assert await c.get("text-key") == b"text value"
        assert await c.get(b"k") == b"v"
        assert await c.get(b"missing") is None
        assert await c.exists(b"k") is True
        assert await c.exists(b"missing") is False
        assert await c.ttl(b"k") == -1
        assert await c.ttl(b"missing") == -2
        await c.put(b"t", b"x", ttl=100)
        assert 0 < await c.ttl(b"t") <= 100
        await c.mput({b"m:1": b"1", b"m:2": b"2"})
        await c.mput([(b"m:3", b"3")])
        assert await c.mget([b"m:1", b"nope", b"m:3"]) == [b"1", None, b"3"]
        async with c.batch() as b:
            b.put(b"m:4", b"4").put(b"m:5", b"5", ttl=50).delete(b"m:1").delete(b"nope")
        assert b.results == [True, True, True, False]
        assert [k async for k in c.scan(b"m:", count=2)] == [b"m:2", b"m:3", b"m:4", b"m:5"]
        cursor, page = await c.scan_page(b"m:", count=3)
        assert page == [b"m:2", b"m:3", b"m:4"] and cursor is not None
        assert await c.scan_page(b"m:", cursor, count=3) == (None, [b"m:5"])
        assert await c.delete(b"k") is True
        assert await c.delete(b"k") is False
        stats = await c.stats()
        assert stats["keys"] >= 5
        await c.sync()
        report = await c.merge(timeout=60)
        assert isinstance(report, dict)
        assert await c.get(b"m:2") == b"2"


async def test_batch_not_sent_when_the_block_raises(server: ServerProcess) -> None:
    async with connect(server.url) as c:
        with pytest.raises(RuntimeError):
            async with c.batch() as b:
                b.put(b"never", b"x")
                raise RuntimeError("abort")
        assert await c.get(b"never") is None


async def test_10000_concurrent_calls_from_100_tasks(server: ServerProcess) -> None:
    async with connect(server.host, server.port, timeout=60) as c:

        async def worker(t: int) -> list[tuple[bytes, bytes | None]]:
            out: list[tuple[bytes, bytes | None]] = []
            for i in range(100):
                key = b"t%d:%d" % (t, i)
                if i % 2 == 0:
                    await c.put(key, key[::-1])
                    out.append((key, key[::-1]))
                out.append((key, await c.get(key)))  # odd keys were never written
            return out

        results = await asyncio.gather(*(worker(t) for t in range(100)))
    checked = 0
    for per_task in results:
        for key, got in per_task:
            i = int(key.split(b":")[1])
            assert got == (key[::-1] if i % 2 == 0 else None)
            checked += 1
    assert checked == 100 * 150


async def test_cancel_and_timeout_mid_pipeline_then_1000_correct_calls(
    server: ServerProcess,
) -> None:
    async with connect(server.host, server.port, timeout=30) as c:
        await c.mput({b"c:%d" % i: b"val:%d" % i for i in range(1000)})
        # a pipeline of puts (fsync'd: slow) and gets; cancel some, time out others
        tasks: list[asyncio.Task[Any]] = []
        for i in range(300):
            if i % 3 == 0:
                tasks.append(asyncio.create_task(c.put(b"p:%d" % i, b"x" * 100)))
            elif i % 3 == 1:
                tasks.append(asyncio.create_task(c.put(b"q:%d" % i, b"y", timeout=0.0005)))
            else:
                tasks.append(asyncio.create_task(c.get(b"c:%d" % i)))
        await asyncio.sleep(0)
        for t in tasks[::7]:
            t.cancel()
        outcomes = await asyncio.gather(*tasks, return_exceptions=True)
        for i, out in enumerate(outcomes):
            if isinstance(out, BaseException):
                assert isinstance(out, asyncio.CancelledError | CallTimeoutError), out
            elif i % 3 == 2:
                assert out == b"val:%d" % i
        got = await asyncio.gather(*(c.get(b"c:%d" % i) for i in range(1000)))
        assert got == [b"val:%d" % i for i in range(1000)]
        assert await c.ping() == "PONG"


async def test_server_restart_under_the_client(server: ServerProcess) -> None:
    async with connect(
        server.host, server.port, timeout=20, reconnect_attempts=8, backoff_base=0.1
    ) as c:
        await c.put(b"before", b"1")
        pending = [asyncio.create_task(c.put(b"r:%d" % i, b"v")) for i in range(200)]
        reads = [asyncio.create_task(c.get(b"before")) for _ in range(50)]
        await asyncio.sleep(0)
        server.stop(signal.SIGKILL)
        outcomes = await asyncio.gather(*pending, return_exceptions=True)
        # a put either completed before the kill or failed typed: never silently lost
        failed = [o for o in outcomes if isinstance(o, BaseException)]
        assert all(isinstance(o, ConnectionLostError) for o in failed), failed
        server.start()
        # idempotent reads in flight were retried after reconnecting, or failed typed
        for out in await asyncio.gather(*reads, return_exceptions=True):
            assert out == b"1" or isinstance(out, ConnectionLostError), out
        assert await c.get(b"before") == b"1"
        await c.put(b"after", b"2")
        assert await c.get(b"after") == b"2"


async def test_auth_required_and_failed(server_factory: Callable[..., ServerProcess]) -> None:
    srv = server_factory(extra=["--auth", "s3cret"])
    with pytest.raises(AuthRequiredError):
        await connect(srv.host, srv.port)
    with pytest.raises(AuthFailedError):
        await connect(srv.host, srv.port, auth="wrong")
    async with connect(f"bitcask://:s3cret@{srv.host}:{srv.port}") as c:
        await c.put(b"k", b"v")
        assert await c.get(b"k") == b"v"


async def test_limits_enforced_locally(server: ServerProcess) -> None:
    async with connect(server.host, server.port) as c:
        limits = c.limits
        before = (await c.stats())["server"]
        with pytest.raises(KeyTooLargeError):
            await c.put(b"k" * (limits.max_key_size + 1), b"v")
        with pytest.raises(ValueTooLargeError):
            await c.put(b"k", b"v" * (limits.max_value_size + 1))
        with pytest.raises(KeyTooLargeError):
            await c.get(b"k" * (limits.max_key_size + 1))
        after = (await c.stats())["server"]
        # nothing but the two stats calls reached the server
        assert _requests(after) - _requests(before) == 1
        await c.put(b"k" * limits.max_key_size, b"ok")
        assert await c.get(b"k" * limits.max_key_size) == b"ok"


async def test_a_lone_surrogate_is_refused_locally_and_the_connection_goes_on(
    server: ServerProcess,
) -> None:
    """A str key with a lone surrogate (an argv word or file name decoded with
    surrogateescape) raised the codec's UnicodeEncodeError from inside the client."""
    async with connect(server.host, server.port) as c:
        before = (await c.stats())["server"]
        for call in (
            lambda: c.get("f\udce9e"),
            lambda: c.put("f\udce9e", b"v"),
            lambda: c.put(b"k", "\ud800"),
            lambda: c.mput({"\udce9": b"v"}),
        ):
            with pytest.raises(InterfaceError, match=r"lone surrogate .* pass bytes \(os.fsencode"):
                await call()
        after = (await c.stats())["server"]
        assert _requests(after) - _requests(before) == 1  # nothing reached the server
        assert await c.put(b"f\xe9e", b"v") is None and await c.get(b"f\xe9e") == b"v"
        assert await c.get(b"k") is None


def _requests(server_stats: dict[str, Any]) -> int:
    by_method = server_stats.get("requests") or {}
    if isinstance(by_method, dict):
        return sum(int(v) for v in by_method.values())
    return int(by_method)


async def test_pool_against_the_server(server: ServerProcess) -> None:
    async with Pool(server.url, size=3, strategy="least_busy") as pool:
        await asyncio.gather(*(pool.put(b"pool:%d" % i, b"%d" % i) for i in range(300)))
        got = await asyncio.gather(*(pool.get(b"pool:%d" % i) for i in range(300)))
        assert got == [b"%d" % i for i in range(300)]
        assert [k async for k in pool.scan(b"pool:1", count=50)][:2] == [b"pool:1", b"pool:10"]


async def test_connect_is_awaitable_and_a_context_manager(server: ServerProcess) -> None:
    c = await connect(server.url)
    assert isinstance(c, Client) and c.is_connected
    await c.close()
    assert c.closed and not c.is_connected


async def test_too_many_connections_is_typed(
    server_factory: Callable[..., ServerProcess],
) -> None:
    srv = server_factory(extra=["--max-connections", "1"])
    # the fixture's readiness probe may still count as a connection for a moment
    for _ in range(50):
        try:
            first = await connect(srv.host, srv.port)
            break
        except TooManyConnectionsError:
            await asyncio.sleep(0.1)
    else:
        pytest.fail("the only connection slot never freed up")
    try:
        with pytest.raises(TooManyConnectionsError):
            await connect(srv.host, srv.port, timeout=5)
        assert await first.ping() == "PONG"
    finally:
        await first.close()


async def test_large_values_under_write_back_pressure(
    server_factory: Callable[..., ServerProcess],
) -> None:
    srv = server_factory(sync="never")
    values = {b"big:%d" % i: bytes([i]) * (3 * 1024 * 1024 + i) for i in range(12)}
    async with connect(srv.host, srv.port, timeout=60) as c:
        assert c._proto is not None
        paused = []
        original = c._proto.pause_writing

        def spy() -> None:
            paused.append(True)
            original()

        c._proto.pause_writing = spy  # type: ignore[method-assign]
        await asyncio.gather(*(c.put(k, v) for k, v in values.items()))
        assert paused, "36 MiB of puts never filled the transport buffer"
        got = await asyncio.gather(*(c.get(k) for k in values))
        assert got == list(values.values())
        assert not c._proto.write_paused


async def test_graceful_server_restart_under_the_client(server: ServerProcess) -> None:
    async with connect(
        server.host, server.port, timeout=20, reconnect_attempts=8, backoff_base=0.1
    ) as c:
        pending = [asyncio.create_task(c.put(b"g:%d" % i, b"v")) for i in range(200)]
        await asyncio.sleep(0.01)
        stopper = asyncio.get_running_loop().run_in_executor(None, server.stop, signal.SIGTERM)
        outcomes = await asyncio.gather(*pending, return_exceptions=True)
        assert await stopper == 0
        done = [i for i, o in enumerate(outcomes) if o is None]
        failed = [o for o in outcomes if o is not None]
        assert all(isinstance(o, ConnectionLostError | ShuttingDownError) for o in failed), failed
        server.start()
        # every put the server acknowledged survived the restart
        got = await c.mget([b"g:%d" % i for i in done]) if done else []
        assert got == [b"v"] * len(done)
        await c.put(b"after", b"ok")
        assert await c.get(b"after") == b"ok"
