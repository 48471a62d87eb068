"""The server's active expiry task keeps sampling after a cycle fails (unit, no sockets)."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import bitcask
from server._active_expiry import ActiveExpiry


class _FlakyWriter:
    """Runs a cycle inline; the first `failures` calls raise what a thread pool that
    cannot start a thread raises."""

    def __init__(self, failures: int) -> None:
        self.closed = False
        self.failures = failures

    async def run_on_writer_thread(self, fn: Callable[[], Any]) -> Any:
        if self.failures:
            self.failures -= 1
            raise RuntimeError("can't start new thread")
        return fn()


def test_a_failed_cycle_costs_that_cycle_not_the_sampler(tmp_path: Path) -> None:
    with bitcask.open(tmp_path, sync="never") as db:
        db.put(b"gone", b"x", ttl=0.001)
        db.put(b"kept", b"y")
        time.sleep(0.01)
        writer = _FlakyWriter(failures=2)

        async def run() -> int:
            expiry = ActiveExpiry(db, writer, period=0.01)  # type: ignore[arg-type]
            expiry.start()
            deadline = time.monotonic() + 5
            while db.expiry_stats()["expired_keys"] == 0 and time.monotonic() < deadline:
                await asyncio.sleep(0.01)
            await expiry.stop()
            return expiry.cycles

        cycles = asyncio.run(run())
        # it went on after the two failures (it used to end for good at the first)
        assert writer.failures == 0 and cycles >= 1
        assert db.expiry_stats()["expired_keys"] == 1
        assert db.stored_keys() == 1 and db.get(b"kept") == b"y"


def test_the_sampler_ends_once_the_writer_is_closed(tmp_path: Path) -> None:
    with bitcask.open(tmp_path, sync="never") as db:
        writer = _FlakyWriter(failures=1)
        writer.closed = True

        async def run() -> bool:
            expiry = ActiveExpiry(db, writer, period=0.01)  # type: ignore[arg-type]
            expiry.start()
            task = expiry._task
            assert task is not None
            await asyncio.wait_for(task, timeout=5)  # ended by itself
            return task.done()

        assert asyncio.run(run())
