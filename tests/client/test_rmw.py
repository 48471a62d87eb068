"""The client's read-modify-write calls and transactions against a real server."""

from __future__ import annotations

import asyncio
import os
import re
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from client import (
    BatchTooLargeError,
    CallTimeoutError,
    Client,
    FrameTooLargeError,
    InterfaceError,
    KeyTooLargeError,
    NoSuchKeyError,
    NotANumberError,
    Transaction,
    TransactionAbortedError,
    connect,
)
from tests.serverproc import ServerProcess

pytestmark = pytest.mark.timeout(120)
ROOT = Path(__file__).resolve().parents[2]


async def test_each_call(server: ServerProcess) -> None:
    async with connect(server.host, server.port) as c:
        assert await c.set(b"s", b"1", nx=True) is True
        assert await c.set(b"s", b"2", nx=True) is False
        assert await c.set(b"s", b"3", xx=True, get=True) == b"1"
        assert await c.set(b"s", b"4", ttl=100) is True
        assert 90 < await c.ttl(b"s") <= 100
        assert await c.set(b"s", b"5", keep_ttl=True) is True
        assert 90 < await c.ttl(b"s") <= 100
        assert await c.set(b"s", b"6", at_ms=int(time.time() * 1000) + 50_000) is True
        assert 40 < await c.ttl(b"s") <= 50
        assert await c.incr(b"n") == 1
        assert await c.incr(b"n", 9) == 10
        assert await c.incr(b"n", -11) == -1
        assert await c.incr_float(b"f", 10.5) == 10.5
        assert await c.incr_float(b"f", 0.1) == 10.6
        assert await c.get(b"f") == b"10.6"
        assert await c.append(b"a", "xy") == 2
        assert await c.append(b"a", b"z") == 3
        assert await c.get_delete(b"a") == b"xyz"
        assert await c.get_delete(b"a") is None
        assert await c.expire(b"n", 100) is True
        assert await c.expire(b"n", 200, cond="lt") is False
        assert await c.persist(b"n") is True
        assert await c.ttl(b"n") == -1
        assert await c.expire(b"missing", 5) is False
        assert await c.rename(b"n", b"n2") is True
        assert await c.rename(b"s", b"n2", nx=True) is False
        assert await c.get(b"n2") == b"-1"
        assert await c.clear() == 3
        assert await c.get(b"n2") is None


async def test_errors_are_typed(server: ServerProcess) -> None:
    async with connect(server.host, server.port) as c:
        await c.put(b"w", b"word")
        with pytest.raises(NotANumberError) as info:
            await c.incr(b"w")
        assert info.value.code == 410 and isinstance(info.value, ValueError)
        with pytest.raises(NotANumberError):
            await c.incr_float(b"w", 1.0)
        with pytest.raises(NoSuchKeyError) as missing:
            await c.rename(b"nope", b"x")
        assert missing.value.name == "NO_SUCH_KEY" and "NO_SUCH_KEY" in str(missing.value)
        # Misuse fails locally, before anything is sent.
        with pytest.raises(InterfaceError):
            await c.set(b"k", b"v", nx=True, xx=True)
        with pytest.raises(InterfaceError):
            await c.set(b"k", b"v", keep_ttl=True, ttl=5)
        with pytest.raises(InterfaceError):
            await c.incr(b"k", 2**63)
        with pytest.raises(InterfaceError):
            await c.incr_float(b"k", float("nan"))
        with pytest.raises(InterfaceError):
            await c.expire(b"k")
        with pytest.raises(InterfaceError):
            await c.expire(b"k", 5, cond="sometimes")
        with pytest.raises(KeyTooLargeError):
            await c.incr(b"k" * (c.limits.max_key_size + 1))
        assert await c.get(b"w") == b"word"


async def test_1600_concurrent_increments_from_8_clients(server: ServerProcess) -> None:
    clients = [await connect(server.host, server.port) for _ in range(8)]
    try:

        async def bump(c: Client) -> None:
            for _ in range(200):
                await c.incr(b"counter")

        await asyncio.gather(*(bump(c) for c in clients))
        assert await clients[0].get(b"counter") == b"1600"
    finally:
        for c in clients:
            await c.close()


async def test_transaction_applies_atomically_with_per_op_results(server: ServerProcess) -> None:
    async with connect(server.host, server.port) as c:
        await c.put(b"word", b"abc")
        async with c.transaction() as tx:
            tx.incr(b"t:n", 5).put(b"t:s", b"x").incr(b"word").set(b"t:s", b"y", get=True)
            tx.incr_float(b"t:f", 1.5).rename(b"t:nope", b"t:x").delete(b"t:n")
        assert tx.results is not None
        assert tx.results[0] == 5 and tx.results[1] is True
        assert isinstance(tx.results[2], NotANumberError)
        assert tx.results[3] == b"x" and tx.results[4] == 1.5
        assert isinstance(tx.results[5], NoSuchKeyError)
        assert tx.results[6] is True
        assert await c.get(b"t:s") == b"y"
        with pytest.raises(InterfaceError):
            tx.put(b"again", b"1")


async def test_watched_transaction_aborts_after_another_clients_write(
    server: ServerProcess,
) -> None:
    async with connect(server.host, server.port) as a, connect(server.host, server.port) as b:
        await a.put(b"bal", b"100")
        with pytest.raises(TransactionAbortedError):
            async with a.transaction(b"bal") as tx:
                n = int(await a.get(b"bal") or 0)
                await b.put(b"bal", b"100")  # the same value still counts
                tx.put(b"bal", str(n - 10))
        assert await a.get(b"bal") == b"100"
        tx2 = a.transaction(b"bal")
        await tx2.watch()
        await b.incr(b"bal")
        tx2.incr(b"bal")
        assert await tx2.commit() is None
        async with a.transaction(b"bal") as tx3:
            tx3.incr(b"bal", -1)
        assert tx3.results == [100]


async def test_transact_retries_until_it_commits(server: ServerProcess) -> None:
    clients = [await connect(server.host, server.port) for _ in range(4)]
    try:

        async def worker(c: Client) -> None:
            async def double_then_add(tx: Transaction) -> int:
                n = int(await c.get(b"acc") or 0)
                await asyncio.sleep(0)  # let the others interleave
                tx.put(b"acc", str(n + 1))
                return n + 1

            for _ in range(25):
                await c.transact(double_then_add, b"acc", attempts=1000)

        await asyncio.gather(*(worker(c) for c in clients))
        assert await clients[0].get(b"acc") == b"100"
    finally:
        for c in clients:
            await c.close()


async def test_transact_gives_up_after_its_attempts(server: ServerProcess) -> None:
    async with connect(server.host, server.port) as a, connect(server.host, server.port) as b:

        async def always_raced(tx: Transaction) -> None:
            await b.incr(b"hot")
            tx.incr(b"hot")

        with pytest.raises(TransactionAbortedError):
            await a.transact(always_raced, b"hot", attempts=3)
        assert await a.get(b"hot") == b"3"


async def test_an_exception_in_the_block_applies_nothing(server: ServerProcess) -> None:
    async with connect(server.host, server.port) as c:
        with pytest.raises(RuntimeError):
            async with c.transaction(b"e") as tx:
                tx.put(b"e", b"1")
                raise RuntimeError("changed my mind")
        assert await c.get(b"e") is None
        assert not tx.watched


async def test_a_watch_lost_with_its_connection_aborts_without_sending(
    server: ServerProcess,
) -> None:
    async with connect(server.host, server.port) as c:
        tx = c.transaction(b"r")
        await tx.watch()
        proto = c._proto
        assert proto is not None
        proto.abort()  # the connection breaks: the server drops the watch
        await asyncio.sleep(0.05)
        tx.put(b"r", b"1")
        assert await tx.commit() is None
        assert await c.get(b"r") is None  # the client reconnected; nothing was applied


def test_the_documented_transaction_example_prints_what_the_doc_says(
    server: ServerProcess, tmp_path: Path
) -> None:
    text = (ROOT / "docs" / "client.md").read_text(encoding="utf-8")
    section = text.split("## Atomic read-modify-write and transactions", 1)[1]
    app = re.search(r"```python\n(.*?)```", section, re.S)
    out = re.search(r"It prints:\n\n```\n(.*?)```", section, re.S)
    assert app is not None and out is not None
    script = tmp_path / "pay.py"
    script.write_text(app.group(1), encoding="utf-8")
    env = {**os.environ, "BITCASK_URL": server.url, "PYTHONPATH": str(ROOT)}
    proc = subprocess.run(
        [sys.executable, str(script)], capture_output=True, text=True, timeout=60, env=env
    )
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.splitlines() == out.group(1).splitlines()


async def _one_watch_commits(c: Client) -> None:
    """A watched transaction on `c` still commits (the server holds at most 64 watches
    per connection: one leaked by every call below would refuse it)."""
    async with c.transaction(b"w") as tx:
        tx.incr(b"w")
    assert tx.results is not None and isinstance(tx.results[0], int)


async def test_a_commit_refused_locally_releases_its_watch(
    server_factory: Callable[..., ServerProcess],
) -> None:
    # 70 transactions with more ops than max_batch: each commit fails locally (nothing
    # sent) and used to keep its watch on the server; the 65th watch then failed with
    # "this connection holds 64 watches" for every later transaction on the connection
    srv = server_factory(sync="never", extra=["--max-batch", "4", "--max-frame", "65536"])
    async with connect(srv.host, srv.port) as c:
        for _ in range(70):
            with pytest.raises(BatchTooLargeError):
                async with c.transaction(b"w") as tx:
                    for i in range(5):
                        tx.put(b"x%d" % i, b"v")
        for _ in range(70):
            tx = c.transaction(b"w")
            await tx.watch()
            tx.put(b"big", b"v" * 40_000).put(b"big2", b"v" * 40_000)  # each fits, not both
            with pytest.raises(FrameTooLargeError):
                await tx.commit()
        await _one_watch_commits(c)


async def test_a_watch_cancelled_or_timed_out_in_flight_is_released(server: ServerProcess) -> None:
    # the watch reply arrives after its caller gave up; it used to be dropped, so the
    # server kept the watch forever: 64 of them and the connection refused every watch
    async with connect(server.host, server.port) as c:
        for _ in range(70):
            task = asyncio.ensure_future(c.transaction(b"w").watch())
            await asyncio.sleep(0)  # the watch request is written
            task.cancel()
            with pytest.raises(asyncio.CancelledError):
                await task
        for _ in range(70):
            with pytest.raises(CallTimeoutError):
                await c.transaction(b"w").watch(timeout=1e-9)
        await c.ping()  # every late watch reply has arrived, and its release was sent
        await _one_watch_commits(c)
