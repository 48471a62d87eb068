"""Concurrent callers that fail for one reason each get their own exception.

Every call waiting for a reconnection fails with that reconnection's error. When
they were handed the same exception object, what one caller did to it (the
sharded client's notes, a traceback) showed up in every other caller's: three
health checks at once each read the note three times, and an mput's note naming
the shards that applied *its* part landed on another mput's error.
"""

from __future__ import annotations

import asyncio
import signal
from collections.abc import Callable

import pytest

from client import ConnectError, Pool, connect, connect_sharded
from tests.client.test_wedged import dropped
from tests.serverproc import ServerProcess, free_port

pytestmark = pytest.mark.timeout(60)


async def test_calls_failing_on_one_reconnection_get_their_own_errors(
    server: ServerProcess,
) -> None:
    c = await connect(server.host, server.port, timeout=2, reconnect_attempts=2)
    await c.put(b"k", b"v")
    server.stop(signal.SIGKILL)
    assert await dropped(c)  # the client has seen its connection close
    errors = await asyncio.gather(*(c.get(b"k") for _ in range(5)), return_exceptions=True)
    assert all(isinstance(e, ConnectError) for e in errors), errors
    assert len({id(e) for e in errors}) == 5, "one exception object shared by every caller"
    assert len({str(e) for e in errors}) == 1  # the same failure, told the same way
    assert all(isinstance(e, ConnectError) and e.__cause__ for e in errors)  # why they failed
    server.start()
    assert await c.get(b"k") == b"v"
    await c.close()


async def test_each_sharded_health_check_gets_one_note(server: ServerProcess) -> None:
    shards = {"a": f"{server.host}:{server.port}", "b": f"127.0.0.1:{free_port()}"}
    async with connect_sharded(shards, timeout=2, reconnect_attempts=1) as sc:
        errors = await asyncio.gather(*(sc.ping() for _ in range(3)), return_exceptions=True)
        for err in errors:
            assert isinstance(err, ConnectError), err
            assert len(err.__notes__) == 1, err.__notes__
            assert err.__notes__[0].startswith("ping failed on 1 of 2 shards (b: ")


async def test_each_sharded_mput_names_only_its_own_applied_shards(
    server_factory: Callable[..., ServerProcess],
) -> None:
    a, b = server_factory(sync="never"), server_factory(sync="never")
    shards = {"a": f"{a.host}:{a.port}", "b": f"{b.host}:{b.port}"}
    async with connect_sharded(shards, timeout=2, reconnect_attempts=1) as sc:
        batches = [{b"m%d:%d" % (n, i): b"v" for i in range(20)} for n in range(3)]
        await asyncio.gather(*(sc.mput(pairs) for pairs in batches))  # both shards known
        b.stop(signal.SIGKILL)
        assert await dropped(sc.clients["b"])  # shard b's client saw its connection close
        errors = await asyncio.gather(
            *(sc.mput(pairs) for pairs in batches), return_exceptions=True
        )
        for err in errors:
            assert isinstance(err, ConnectError), err
            assert err.__notes__ == ["mput applied on shards ['a']; not on the failing shard(s)"], (
                err.__notes__
            )
        # shard a holds every pair of its own; shard b is down, the rest is unchanged
        on_a = [k for pairs in batches for k in pairs if sc.shard_for(k) == "a"]
        assert await sc.clients["a"].mget(on_a) == [b"v"] * len(on_a)


async def test_tasks_starting_one_pool_get_their_own_errors() -> None:
    pool = Pool("127.0.0.1", free_port(), size=2, timeout=2)
    errors = await asyncio.gather(*(pool.start() for _ in range(3)), return_exceptions=True)
    assert all(isinstance(e, ConnectError) for e in errors), errors
    assert len({id(e) for e in errors}) == 3, "one exception object shared by every starter"
    assert len({str(e) for e in errors}) == 1
    await pool.close()
