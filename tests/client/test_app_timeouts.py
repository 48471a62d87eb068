"""Calls bounded by the application's own timeouts, against a real server.

An application coming from redis.asyncio bounds its calls with `asyncio.timeout`
or `asyncio.wait_for`, not with the client's `timeout=`: the call is cancelled,
it never times out in the client. Whatever cancelled it, the client must end up
where a timed-out call leaves it: every caller gets its own reply, no entry is
left behind, and a connection that went silent is replaced
(docs/client.md, "Timeouts and cancellation").
"""

from __future__ import annotations

import asyncio
import random
from collections.abc import Awaitable, Callable
from typing import Any

import pytest

from client import Pool, connect
from tests.client.test_threads import LOOP_IDS, LOOPS, LoopFactory
from tests.client.test_wedged import dropped, relay_to
from tests.serverproc import ServerProcess

pytestmark = pytest.mark.timeout(60)

BOUND = 15.0  # any single wait longer than this counts as a hang


async def _with_timeout(aw: Awaitable[Any], seconds: float) -> Any:
    async with asyncio.timeout(seconds):
        return await aw


async def _with_wait_for(aw: Awaitable[Any], seconds: float) -> Any:
    return await asyncio.wait_for(aw, seconds)


BOUNDED: list[Callable[[Awaitable[Any], float], Awaitable[Any]]] = [_with_timeout, _with_wait_for]
IDS = ["asyncio.timeout", "wait_for"]


def on(new_loop: LoopFactory, main: Awaitable[None]) -> None:
    """Run `main` in a loop `new_loop` makes (asyncio's, or uvloop's)."""

    async def run() -> None:
        await main

    with asyncio.Runner(loop_factory=new_loop) as runner:
        runner.run(run())


@pytest.mark.parametrize("new_loop", LOOPS, ids=LOOP_IDS)
@pytest.mark.parametrize("bounded", BOUNDED, ids=IDS)
def test_a_silent_connection_is_replaced_when_the_app_cancels_its_calls(
    server: ServerProcess,
    bounded: Callable[[Awaitable[Any], float], Awaitable[Any]],
    new_loop: LoopFactory,
) -> None:
    on(new_loop, _silent_connection_replaced(server, bounded))


async def _silent_connection_replaced(
    server: ServerProcess, bounded: Callable[[Awaitable[Any], float], Awaitable[Any]]
) -> None:
    # Before: a call cancelled by the application's timeout never counted as timed out
    # in the client (its entry was only forgotten at its deadline), so the silent
    # connection was never probed: every later call went out on it and was cancelled
    # in turn, for as long as the application ran (the relay saw one connection).
    async with relay_to(server) as relay:
        c = await connect("127.0.0.1", relay.port, timeout=0.5, backoff_base=0.01)
        await c.put(b"k", b"v1")
        relay.black_hole()
        with pytest.raises(TimeoutError):
            await bounded(c.get(b"k"), 0.2)
        assert await dropped(c), "the silent connection was kept"
        assert await bounded(c.get(b"k"), BOUND) == b"v1"  # on a fresh connection
        assert relay.connections == 2
        assert c.in_flight == 0
        await c.close()


@pytest.mark.parametrize("new_loop", LOOPS, ids=LOOP_IDS)
@pytest.mark.parametrize("bounded", BOUNDED, ids=IDS)
def test_calls_cancelled_by_the_app_on_a_live_connection_keep_it(
    server: ServerProcess,
    bounded: Callable[[Awaitable[Any], float], Awaitable[Any]],
    new_loop: LoopFactory,
) -> None:
    on(new_loop, _live_connection_kept(server, bounded))


async def _live_connection_kept(
    server: ServerProcess, bounded: Callable[[Awaitable[Any], float], Awaitable[Any]]
) -> None:
    # many tasks sharing one client and one pool, a third of their calls cancelled
    # mid-flight by the application's timeout: every answer is the caller's own, the
    # connections stay (a cancelled call on a live connection is not a silent one)
    # and nothing is left pending once the replies are in
    rng = random.Random(7)
    async with (
        connect(server.host, server.port, timeout=5.0) as c,
        Pool(server.host, server.port, size=3, strategy="least_busy") as pool,
    ):
        await c.mput({b"k:%d" % i: b"v:%d" % i for i in range(200)})
        wrong: list[Any] = []
        cancelled = 0

        async def worker(db: Any, n: int) -> None:
            nonlocal cancelled
            for j in range(30):
                key = b"k:%d" % ((n * 31 + j) % 200)
                limit = rng.choice([0, 0.0001, 0.001, BOUND, BOUND])
                try:
                    got = await bounded(db.get(key), limit)
                except TimeoutError:
                    cancelled += 1
                    continue
                if got != b"v" + key[1:]:
                    wrong.append((key, got))

        async with asyncio.TaskGroup() as tg:
            for n in range(40):
                tg.create_task(worker(c if n % 2 else pool, n))
        assert wrong == []
        assert cancelled > 0
        assert await c.ping() == "PONG" and await pool.ping() == "PONG"
        assert c.in_flight == 0 and pool.in_flight == 0
        assert c.is_connected and all(p.is_connected for p in pool.clients)
