"""The group-commit linger (Writer(linger=True), --sync always): after a group, the next
one waits for most of the requests in flight, within a bound, and never waits for a lone
client. Counted against a fake store, never timed: the bound is set to an hour where a
test needs the linger to hold, and to zero where it needs the bound to end it."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

import pytest

from server import _writer
from server._metrics import Metrics
from server._writer import Writer

PUT = ("put", b"k", b"v", None)


class CountingStore:
    """write_group that records each group's size; `during` runs inside a write (the
    requests that arrive while the fsync runs)."""

    def __init__(self) -> None:
        self.groups: list[int] = []
        self.during: Callable[[], None] | None = None

    def write_group(self, batches: list[Any], sync: bool | None = None) -> list[list[object]]:
        self.groups.append(len(batches))
        if self.during is not None:
            during, self.during = self.during, None
            during()
        return [[None] * len(ops) for ops in batches]

    def sync(self) -> None:
        pass


class Acks:
    def __init__(self) -> None:
        self.n = 0

    def cb(self, results: Any, exc: BaseException | None) -> None:
        assert exc is None
        self.n += 1


@pytest.fixture
def hold(monkeypatch: pytest.MonkeyPatch) -> None:
    """A linger that only the request count ends (an hour's bound)."""
    monkeypatch.setattr(Writer, "_linger_bound", lambda self: 3600.0)


async def turns(n: int = 5) -> None:
    for _ in range(n):
        await asyncio.sleep(0)


async def settle(writer: Writer) -> None:
    await asyncio.wait_for(writer.wait_idle(), 10)


def submit(writer: Writer, acks: Acks, n: int) -> None:
    for _ in range(n):
        assert writer.submit([PUT], acks.cb, nbytes=3)


@pytest.mark.parametrize("mode", ["loop", "thread"])
async def test_next_group_waits_for_most_of_the_requests_in_flight(hold: None, mode: str) -> None:
    db, acks = CountingStore(), Acks()
    metrics = Metrics()
    writer = Writer(db, mode=mode, metrics=metrics, linger=True)
    submit(writer, acks, 10)
    await settle(writer)
    assert db.groups == [10] and acks.n == 10
    assert metrics.group_lingers == 1, "10 clients were just answered: 9 of them are awaited"
    submit(writer, acks, 8)
    await turns()
    assert db.groups == [10] and writer.depth == 8, "8 < 0.9 * 10: still lingering"
    submit(writer, acks, 1)  # the 9th: the group starts (at the end of this loop turn)
    await settle(writer)
    assert db.groups == [10, 9] and acks.n == 19
    assert metrics.group_linger_timeouts == 0
    writer.shutdown_pool()


async def test_requests_that_came_during_the_write_count_as_in_flight(hold: None) -> None:
    # 10 written while 3 more arrive: 13 in flight, the next group waits for 11.
    db, acks = CountingStore(), Acks()
    metrics = Metrics()
    writer = Writer(db, mode="loop", metrics=metrics, linger=True)
    db.during = lambda: submit(writer, acks, 3)
    submit(writer, acks, 10)
    await turns()
    assert db.groups == [10] and writer.depth == 3
    submit(writer, acks, 7)
    await turns()
    assert db.groups == [10], "10 queued < 0.9 * 13"
    submit(writer, acks, 1)
    await settle(writer)
    assert db.groups == [10, 11]


async def test_a_burst_that_arrived_during_the_write_starts_at_once(hold: None) -> None:
    db, acks = CountingStore(), Acks()
    metrics = Metrics()
    writer = Writer(db, mode="loop", metrics=metrics, linger=True)
    db.during = lambda: submit(writer, acks, 100)  # 100 of 110 in flight are queued
    submit(writer, acks, 10)
    await settle(writer)
    assert db.groups == [10, 100] and acks.n == 110
    assert metrics.group_lingers == 1  # only after the second group (nothing queued then)


@pytest.mark.parametrize("mode", ["loop", "thread"])
async def test_a_lone_client_never_lingers(hold: None, mode: str) -> None:
    # One request in flight at a time: each is written in a group of one, at once.
    db, acks = CountingStore(), Acks()
    metrics = Metrics()
    writer = Writer(db, mode=mode, metrics=metrics, linger=True)
    for i in range(20):
        submit(writer, acks, 1)
        await settle(writer)
        assert acks.n == i + 1
    assert db.groups == [1] * 20
    assert metrics.group_lingers == 0
    writer.shutdown_pool()


async def test_a_large_crowd_does_not_linger(hold: None) -> None:
    # LINGER_ENOUGH in flight: the groups are large anyway, the next starts at once.
    db, acks = CountingStore(), Acks()
    metrics = Metrics()
    writer = Writer(db, mode="loop", metrics=metrics, linger=True)
    submit(writer, acks, _writer.LINGER_ENOUGH)
    await settle(writer)
    submit(writer, acks, 1)
    await settle(writer)
    assert db.groups == [_writer.LINGER_ENOUGH, 1] and metrics.group_lingers == 0


async def test_the_bound_ends_the_linger_on_arrival(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(Writer, "_linger_bound", lambda self: 0.0)  # arrivals are past it
    monkeypatch.setattr(_writer, "LINGER_TIMER", 3600.0)
    db, acks = CountingStore(), Acks()
    metrics = Metrics()
    writer = Writer(db, mode="loop", metrics=metrics, linger=True)
    submit(writer, acks, 10)
    await settle(writer)
    submit(writer, acks, 1)
    await settle(writer)
    assert db.groups == [10, 1]
    assert (metrics.group_lingers, metrics.group_linger_timeouts) == (1, 1)


async def test_the_timer_ends_the_linger_when_nothing_arrives(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(Writer, "_linger_bound", lambda self: 0.0)
    monkeypatch.setattr(_writer, "LINGER_TIMER", 0.001)
    db, acks = CountingStore(), Acks()
    metrics = Metrics()
    writer = Writer(db, mode="loop", metrics=metrics, linger=True)
    db.during = lambda: submit(writer, acks, 2)  # queued before the linger starts
    submit(writer, acks, 10)
    await settle(writer)  # 2 of the 10 awaited, and nothing arrives: only the timer
    assert db.groups == [10, 2] and acks.n == 12
    assert metrics.group_linger_timeouts == 1


async def test_close_does_not_wait_for_the_linger(hold: None) -> None:
    db, acks = CountingStore(), Acks()
    metrics = Metrics()
    writer = Writer(db, mode="loop", metrics=metrics, linger=True)
    submit(writer, acks, 10)
    await settle(writer)
    submit(writer, acks, 2)
    writer.close()
    await settle(writer)
    assert db.groups == [10, 2] and acks.n == 12


async def test_without_linger_the_next_group_starts_at_once(hold: None) -> None:
    # sync never / interval: no fsync per group to share, so no waiting.
    db, acks = CountingStore(), Acks()
    metrics = Metrics()
    writer = Writer(db, mode="loop", metrics=metrics)
    submit(writer, acks, 10)
    await settle(writer)
    submit(writer, acks, 1)
    await settle(writer)
    assert db.groups == [10, 1] and metrics.group_lingers == 0
