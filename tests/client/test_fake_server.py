"""Client behaviour whose timing must be exact: against the scripted fake server."""

from __future__ import annotations

import asyncio
import random
import time
from typing import Any

import pytest

from client import (
    AuthFailedError,
    AuthRequiredError,
    BatchTooLargeError,
    CallTimeoutError,
    ConnectError,
    ConnectionLostError,
    FrameTooLargeError,
    InterfaceError,
    KeyTooLargeError,
    Pool,
    ReadOnlyError,
    ServerError,
    TooManyConnectionsError,
    UnsupportedVersionError,
    ValueTooLargeError,
    connect,
)
from protocol import ErrorInfo, RemoteProtocolError, Request, encode_response
from tests.client.fake import FakeServer, Reply, fake_server

pytestmark = pytest.mark.timeout(60)


def held_keys(srv: FakeServer, prefix: bytes) -> asyncio.Event:
    """Make gets of keys starting with `prefix` wait for the returned event."""
    release = asyncio.Event()

    async def get(req: Request) -> Any:
        if req.params[0].startswith(prefix):
            await release.wait()
        return srv.store.get(req.params[0])

    srv.handlers["get"] = get
    return release


async def check_next_calls(c: Any, n: int = 1000) -> None:
    """n concurrent gets of distinct keys, each result matched to its own key."""
    keys = [b"n:%d" % i for i in range(n)]
    await c.mput({k: k + b"=v" for k in keys[:50]})
    results = await asyncio.wait_for(asyncio.gather(*(c.get(k) for k in keys)), 20)
    for k, r in zip(keys, results, strict=True):
        assert r == (k + b"=v" if k in keys[:50] else None)


async def test_out_of_order_replies_match_their_calls() -> None:
    async with fake_server() as srv:
        srv.store = {b"k%d" % i: b"v%d" % i for i in range(200)}

        async def get(req: Request) -> Any:
            i = int(req.params[0][1:])
            await asyncio.sleep((199 - i) * 0.0005)  # later keys answer first
            return srv.store.get(req.params[0])

        srv.handlers["get"] = get
        async with connect("127.0.0.1", srv.port) as c:
            got = await asyncio.gather(*(c.get(b"k%d" % i) for i in range(200)))
        assert got == [b"v%d" % i for i in range(200)]


async def test_timeout_mid_pipeline_then_late_replies_are_discarded() -> None:
    async with fake_server() as srv:
        release = held_keys(srv, b"slow")
        srv.store[b"slow"] = b"late"
        async with connect("127.0.0.1", srv.port) as c:
            slow = [asyncio.create_task(c.get(b"slow", timeout=0.05)) for _ in range(20)]
            await asyncio.sleep(0)
            started = time.monotonic()
            for t in slow:
                with pytest.raises(CallTimeoutError):
                    await t
            assert time.monotonic() - started < 2
            assert isinstance(CallTimeoutError(), TimeoutError)
            # the late replies arrive while the next 1,000 calls are in flight
            nxt = asyncio.create_task(check_next_calls(c))
            await asyncio.sleep(0.01)
            release.set()
            await nxt
            assert await c.get(b"slow") == b"late"
            assert c.in_flight == 0


async def test_cancellation_mid_pipeline_never_shifts_replies() -> None:
    async with fake_server() as srv:
        release = held_keys(srv, b"held")
        srv.store.update({b"held": b"H", b"free": b"F"})
        async with connect("127.0.0.1", srv.port) as c:
            tasks = [asyncio.create_task(c.get(b"held" if i % 2 else b"free")) for i in range(100)]
            await asyncio.sleep(0.05)
            for i, t in enumerate(tasks):
                if i % 2:
                    assert not t.done()
                    t.cancel()
            release.set()
            for i, t in enumerate(tasks):
                if i % 2:
                    with pytest.raises(asyncio.CancelledError):
                        await t
                else:
                    assert await t == b"F"
            await check_next_calls(c)


async def test_mixed_timeouts_fire_in_deadline_order() -> None:
    async with fake_server() as srv:
        srv.withhold.add("get")
        async with connect("127.0.0.1", srv.port) as c:
            long = asyncio.create_task(c.get(b"a", timeout=0.4))
            short = asyncio.create_task(c.get(b"b", timeout=0.05))
            with pytest.raises(CallTimeoutError):
                await short
            assert not long.done()
            with pytest.raises(CallTimeoutError):
                await long
            srv.withhold.clear()
            assert await c.ping() == "PONG"


async def test_connection_loss_fails_pending_calls_typed_then_reconnects() -> None:
    async with fake_server() as srv:
        srv.withhold.add("put")
        async with connect("127.0.0.1", srv.port, backoff_base=0.01) as c:
            puts = [asyncio.create_task(c.put(b"k%d" % i, b"v")) for i in range(10)]
            await asyncio.sleep(0.05)
            srv.drop_all()
            for t in puts:
                with pytest.raises(ConnectionLostError) as info:
                    await t
                assert info.value.__cause__ is not None
            srv.withhold.clear()
            await c.put(b"after", b"ok")  # the next call reconnects
            assert await c.get(b"after") == b"ok"
            assert srv.connections == 2


@pytest.mark.parametrize("retry", [True, False], ids=["retry", "no-retry"])
async def test_idempotent_calls_in_flight_are_retried_once(retry: bool) -> None:
    async with fake_server() as srv:
        srv.store[b"k"] = b"v"
        seen: list[int] = []

        async def get(req: Request) -> Any:
            seen.append(req.msgid)
            if len(seen) == 1:
                await asyncio.sleep(10)  # the first attempt never answers
            return srv.store.get(req.params[0])

        srv.handlers["get"] = get
        async with connect("127.0.0.1", srv.port, retry_idempotent=retry, backoff_base=0.01) as c:
            call = asyncio.create_task(c.get(b"k"))
            await asyncio.sleep(0.05)
            srv.drop_all()
            if retry:
                assert await call == b"v"
                assert len(seen) == 2
            else:
                with pytest.raises(ConnectionLostError):
                    await call


async def test_garbage_from_the_server_is_a_typed_loss() -> None:
    async with fake_server() as srv:
        srv.withhold.add("put")
        async with connect("127.0.0.1", srv.port) as c:
            call = asyncio.create_task(c.put(b"k", b"v"))
            await asyncio.sleep(0.05)
            srv.send_raw(b"\x00\x00\x00\x02\xc1\xc1")
            with pytest.raises(ConnectionLostError) as info:
                await call
            assert isinstance(info.value.__cause__, RemoteProtocolError)


async def test_msgids_wrap_at_2_32_and_skip_zero() -> None:
    async with fake_server() as srv:
        srv.store[b"k"] = b"v"
        async with connect("127.0.0.1", srv.port) as c:
            assert c._proto is not None
            c._proto._next_id = 2**32 - 2
            assert await asyncio.gather(*(c.get(b"k") for _ in range(4))) == [b"v"] * 4
        ids = [r.msgid for r in srv.requests if r.method == "get"]
        assert ids == [2**32 - 2, 2**32 - 1, 1, 2]


async def test_connection_refused_by_the_server_is_typed() -> None:
    async with fake_server() as srv:
        srv.refuse_with = ErrorInfo(303, "TOO_MANY_CONNECTIONS", "full")
        with pytest.raises(TooManyConnectionsError):
            await connect("127.0.0.1", srv.port)


async def test_protocol_version_is_checked() -> None:
    async with fake_server() as srv:
        srv.hello_reply["protocol"] = 2
        with pytest.raises(UnsupportedVersionError):
            await connect("127.0.0.1", srv.port)


async def test_auth_required_and_failed() -> None:
    async with fake_server() as srv:
        srv.token = b"tok"
        with pytest.raises(AuthRequiredError):
            await connect("127.0.0.1", srv.port)
        with pytest.raises(AuthFailedError):
            await connect("127.0.0.1", srv.port, auth="wrong")
        async with connect("127.0.0.1", srv.port, auth="tok") as c:
            await c.put(b"k", b"v")
            assert await c.get(b"k") == b"v"
        hellos = [r for r in srv.requests if r.method == "hello"]
        assert hellos[-1].params[0]["auth"] == b"tok"


async def test_server_errors_are_typed_by_code() -> None:
    async with fake_server() as srv:

        async def put(req: Request) -> Any:
            raise Reply(400, "READ_ONLY", "disk full")

        async def delete(req: Request) -> Any:
            raise Reply(777, "FROM_THE_FUTURE", "new code")

        srv.handlers.update(put=put, delete=delete)
        async with connect("127.0.0.1", srv.port) as c:
            with pytest.raises(ReadOnlyError) as ro:
                await c.put(b"k", b"v")
            assert (ro.value.code, ro.value.name, ro.value.message) == (
                400,
                "READ_ONLY",
                "disk full",
            )
            with pytest.raises(ServerError) as other:
                await c.delete(b"k")
            assert type(other.value) is ServerError and other.value.code == 777
            assert await c.ping() == "PONG"  # the connection is still fine


@pytest.mark.parametrize(
    ("call", "error"),
    [
        pytest.param(lambda c: c.get(b"k" * 65), KeyTooLargeError, id="key"),
        pytest.param(lambda c: c.put(b"k", b"v" * 1025), ValueTooLargeError, id="value"),
        pytest.param(lambda c: c.mget([b"k"] * 101), BatchTooLargeError, id="mget-batch"),
        pytest.param(
            lambda c: c.mput({b"k%d" % i: b"v" for i in range(101)}), BatchTooLargeError, id="mput"
        ),
        pytest.param(lambda c: c.mput({b"k": b"v" * 1025}), ValueTooLargeError, id="mput-value"),
        pytest.param(
            lambda c: c.mput({b"k%d" % i: b"v" * 1000 for i in range(60)}),
            FrameTooLargeError,
            id="frame",
        ),
    ],
)
async def test_limits_are_enforced_before_sending(call: Any, error: type[Exception]) -> None:
    async with fake_server() as srv:
        srv.hello_reply["limits"]["max_frame"] = 50_000
        async with connect("127.0.0.1", srv.port) as c:
            before = len(srv.requests)
            with pytest.raises(error):
                await call(c)
            assert len(srv.requests) == before
            assert await c.ping() == "PONG"


async def test_batch_limit_applies_to_batches() -> None:
    async with fake_server() as srv, connect("127.0.0.1", srv.port) as c:
        b = c.batch()
        for i in range(101):
            b.put(b"k%d" % i, b"v")
        with pytest.raises(BatchTooLargeError):
            await b.execute()
        with pytest.raises(KeyTooLargeError):
            c.batch().delete(b"x" * 65)


async def test_reconnect_gives_up_after_bounded_attempts_then_recovers() -> None:
    srv = await FakeServer().start()
    port = srv.port
    c = await connect("127.0.0.1", port, reconnect_attempts=3, backoff_base=0.01, timeout=1.0)
    await srv.stop()
    started = time.monotonic()
    with pytest.raises(ConnectError):
        await c.get(b"k")
    assert time.monotonic() - started < 5
    srv2 = await FakeServer().start(port)
    try:
        assert await c.ping() == "PONG"
    finally:
        await c.close()
        await srv2.stop()


async def test_calls_wait_for_write_buffer_space() -> None:
    async with fake_server() as srv, connect("127.0.0.1", srv.port) as c:
        proto = c._proto
        assert proto is not None
        proto.pause_writing()
        call = asyncio.create_task(c.ping())
        await asyncio.sleep(0.05)
        assert not call.done() and proto.in_flight == 0
        proto.resume_writing()
        assert await asyncio.wait_for(call, 5) == "PONG"


async def test_write_wait_honours_the_timeout() -> None:
    async with fake_server() as srv, connect("127.0.0.1", srv.port) as c:
        assert c._proto is not None
        c._proto.pause_writing()
        with pytest.raises(CallTimeoutError):
            await c.ping(timeout=0.05)
        c._proto.resume_writing()


async def test_close_lets_calls_in_flight_finish() -> None:
    async with fake_server() as srv:
        srv.delays["put"] = 0.1
        c = await connect("127.0.0.1", srv.port)
        put = asyncio.create_task(c.put(b"k", b"v"))
        await asyncio.sleep(0.01)
        await c.close()
        await put
        assert srv.store[b"k"] == b"v"
        with pytest.raises(InterfaceError):
            await c.get(b"k")
        await c.close()  # twice is fine


async def test_terminate_fails_pending_calls() -> None:
    async with fake_server() as srv:
        srv.withhold.add("put")
        c = await connect("127.0.0.1", srv.port)
        put = asyncio.create_task(c.put(b"k", b"v"))
        await asyncio.sleep(0.01)
        c.terminate()
        with pytest.raises(ConnectionLostError):
            await put


@pytest.mark.parametrize("strategy", ["round_robin", "least_busy"])
async def test_pool_spreads_calls(strategy: Any) -> None:
    async with fake_server() as srv:
        srv.store[b"k"] = b"v"
        srv.delays["get"] = 0.01
        async with Pool("127.0.0.1", srv.port, size=3, strategy=strategy) as pool:
            assert await asyncio.gather(*(pool.get(b"k") for _ in range(30))) == [b"v"] * 30
            assert [c.in_flight for c in pool.clients] == [0, 0, 0]
            assert srv.connections == 3
            assert pool.server_info["server"] == "bitcask"
        with pytest.raises(InterfaceError):
            await pool.get(b"k")


async def test_pool_must_be_started() -> None:
    pool = Pool("127.0.0.1", 1, size=2)
    with pytest.raises(InterfaceError):
        await pool.get(b"k")
    with pytest.raises(InterfaceError):
        Pool(size=0)


async def test_close_during_reconnect_fails_waiting_calls_typed() -> None:
    srv = await FakeServer().start()
    c = await connect("127.0.0.1", srv.port, reconnect_attempts=50, backoff_base=0.05)
    await srv.stop()
    call = asyncio.create_task(c.get(b"k"))
    await asyncio.sleep(0.1)
    await c.close()
    with pytest.raises((InterfaceError, ConnectError)):
        await asyncio.wait_for(call, 10)


async def test_a_retried_call_keeps_its_deadline_while_reconnecting() -> None:
    srv = await FakeServer().start()
    srv.withhold.add("get")
    c = await connect("127.0.0.1", srv.port, reconnect_attempts=50, backoff_base=0.05)
    try:
        call = asyncio.create_task(c.get(b"k", timeout=0.3))
        await asyncio.sleep(0.05)
        await srv.stop()  # the get is lost and can only be retried after a reconnect
        started = time.monotonic()
        with pytest.raises(CallTimeoutError):
            await asyncio.wait_for(call, 10)
        assert time.monotonic() - started < 2
    finally:
        c.terminate()


async def test_a_call_is_retried_only_once() -> None:
    async with fake_server() as srv:

        async def get(req: Request) -> Any:
            asyncio.get_running_loop().call_later(0.02, srv.drop_all)  # lose every attempt
            await asyncio.sleep(10)

        srv.handlers["get"] = get
        async with connect("127.0.0.1", srv.port, backoff_base=0.01) as c:
            with pytest.raises(ConnectionLostError):
                await asyncio.wait_for(c.get(b"k"), 10)
            assert sum(r.method == "get" for r in srv.requests) == 2


def test_under_uvloop() -> None:
    """uvloop's transports differ (connection_made after create_connection returns)."""
    uvloop = pytest.importorskip("uvloop")

    async def main() -> None:
        async with fake_server() as srv:
            srv.store[b"k"] = b"v"
            async with connect("127.0.0.1", srv.port) as c:
                assert await asyncio.gather(*(c.get(b"k") for _ in range(500))) == [b"v"] * 500
                with pytest.raises(CallTimeoutError):
                    srv.withhold.add("get")
                    await c.get(b"k", timeout=0.05)

    uvloop.run(main())


async def test_replies_before_garbage_in_the_same_chunk_are_delivered() -> None:
    async with fake_server() as srv:

        async def get(req: Request) -> Any:
            srv.send_raw(encode_response(req.msgid, b"v") + b"\x00\x00\x00\x01\xc1")
            await asyncio.sleep(10)

        srv.handlers["get"] = get
        async with connect("127.0.0.1", srv.port, backoff_base=0.01) as c:
            assert await c.get(b"k") == b"v"
            srv.handlers.clear()
            assert await c.ping() == "PONG"  # reconnected after the garbage
            assert srv.connections == 2


@pytest.mark.parametrize("seed", [1, 2, 3])
async def test_random_delays_timeouts_and_cancellations_never_mix_replies(seed: int) -> None:
    rng = random.Random(seed)
    async with fake_server() as srv:
        srv.store = {b"r%d" % i: b"value-%d" % i for i in range(300)}
        delays = {b"r%d" % i: rng.choice([0, 0, 0.001, 0.01, 0.05]) for i in range(300)}

        async def get(req: Request) -> Any:
            await asyncio.sleep(delays.get(req.params[0], 0))
            return srv.store.get(req.params[0])

        srv.handlers["get"] = get
        async with connect("127.0.0.1", srv.port) as c:
            tasks = []
            for i in range(300):
                timeout = rng.choice([None, None, 0.02, 0.2])
                tasks.append(asyncio.create_task(c.get(b"r%d" % i, timeout=timeout)))
                if rng.random() < 0.3:
                    await asyncio.sleep(0)
            for t in rng.sample(tasks, 60):
                t.cancel()
            outcomes = await asyncio.wait_for(asyncio.gather(*tasks, return_exceptions=True), 20)
            answered = 0
            for i, out in enumerate(outcomes):
                if isinstance(out, BaseException):
                    assert isinstance(out, asyncio.CancelledError | CallTimeoutError), out
                else:
                    assert out == b"value-%d" % i
                    answered += 1
            assert answered > 100
            await asyncio.sleep(0.1)  # late replies arrive and are dropped
            await check_next_calls(c, 300)
