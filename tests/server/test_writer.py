"""The group-commit writer against a fake store: grouping, isolation, failures, pressure."""

from __future__ import annotations

import asyncio
import struct
import threading
from typing import Any

import pytest

from server._metrics import Metrics
from server._writer import MODES, Writer


class FakeStore:
    """Records write_group calls (ops flattened); can be told to fail."""

    def __init__(self) -> None:
        self.calls: list[tuple[list[tuple[Any, ...]], bool | None]] = []
        self.threads: set[str] = set()
        self.data: dict[bytes, bytes] = {}
        self.fail_with: BaseException | None = None
        self.syncs = 0

    def write_group(
        self, batches: list[list[tuple[Any, ...]]], sync: bool | None = None
    ) -> list[list[object] | ValueError]:
        self.threads.add(threading.current_thread().name)
        self.calls.append(([op for ops in batches for op in ops], sync))
        if self.fail_with is not None:
            raise self.fail_with
        out: list[list[object] | ValueError] = []
        for ops in batches:
            if any(op[0] == "put" and len(op[1]) > 8 for op in ops):
                out.append(ValueError("key too large"))  # refused alone, nothing written
                continue
            results: list[object] = []
            for op in ops:
                if op[0] == "put":
                    self.data[op[1]] = op[2]
                    results.append(None)
                else:
                    results.append(self.data.pop(op[1], None) is not None)
            out.append(results)
        return out

    def sync(self) -> None:
        self.syncs += 1


class Collector:
    def __init__(self) -> None:
        self.got: list[tuple[Any, BaseException | None]] = []

    def cb(self, results: Any, exc: BaseException | None) -> None:
        self.got.append((results, exc))


async def settle(writer: Writer) -> None:
    await asyncio.wait_for(writer.wait_idle(), 5)


@pytest.mark.parametrize("mode", MODES)
async def test_one_turn_is_one_group(mode: str) -> None:
    db, out = FakeStore(), Collector()
    writer = Writer(db, mode=mode, metrics=Metrics())
    for i in range(50):
        assert writer.submit([("put", b"k%d" % i, b"v", None)], out.cb, nbytes=3)
    assert writer.submit([("delete", b"k0"), ("delete", b"nope")], out.cb)
    await settle(writer)
    writer.shutdown_pool()
    assert len(db.calls) == 1, "everything queued in one loop turn is one write_group"
    assert len(db.calls[0][0]) == 52
    assert out.got[:50] == [([None], None)] * 50
    assert out.got[50] == ([True, False], None)
    if mode == "thread":
        assert db.threads == {"bitcask-writer"}
    if mode == "loop":
        assert db.threads == {threading.current_thread().name}


async def test_later_requests_form_the_next_group() -> None:
    db, out = FakeStore(), Collector()
    writer = Writer(db, mode="executor", metrics=Metrics())
    writer.submit([("put", b"a", b"1", None)], out.cb)
    await asyncio.sleep(0)  # the first group starts
    for _ in range(10):
        writer.submit([("put", b"b", b"2", None)], out.cb)
    await settle(writer)
    assert [len(ops) for ops, _ in db.calls] == [1, 10]
    assert len(out.got) == 11


async def test_a_bad_request_fails_alone() -> None:
    db, out = FakeStore(), Collector()
    writer = Writer(db, mode="thread", metrics=Metrics())
    writer.submit([("put", b"good1", b"v", None)], out.cb)
    writer.submit([("put", b"much-too-long-key", b"v", None)], out.cb)
    writer.submit([("put", b"good2", b"v", None), ("put", b"good3", b"v", None)], out.cb)
    await settle(writer)
    writer.shutdown_pool()
    assert out.got[0] == ([None], None)
    assert out.got[1][0] is None and isinstance(out.got[1][1], ValueError)
    assert out.got[2] == ([None, None], None)
    assert set(db.data) == {b"good1", b"good2", b"good3"}


@pytest.mark.parametrize(
    "refusal",
    [struct.error("int too large to convert"), OverflowError("too big"), KeyError("odd")],
    ids=["struct-error", "overflow", "other"],
)
async def test_any_engine_refusal_of_one_op_fails_only_its_request(refusal: Exception) -> None:
    class Picky(FakeStore):
        def write_group(
            self, batches: list[list[tuple[Any, ...]]], sync: bool | None = None
        ) -> list[list[object] | ValueError]:
            if any(op[1] == b"poison" for ops in batches for op in ops):
                self.calls.append(([op for ops in batches for op in ops], sync))
                raise refusal
            return super().write_group(batches, sync)

    db, out = Picky(), Collector()
    writer = Writer(db, mode="thread", metrics=Metrics())
    writer.submit([("put", b"good1", b"v", None)], out.cb)
    writer.submit([("put", b"poison", b"v", 1e300)], out.cb)
    writer.submit([("put", b"good2", b"v", None)], out.cb)
    await settle(writer)
    writer.shutdown_pool()
    assert out.got[0] == ([None], None)
    assert out.got[1][0] is None and out.got[1][1] is refusal
    assert out.got[2] == ([None], None)
    assert set(db.data) == {b"good1", b"good2"}


async def test_io_error_fails_the_whole_group() -> None:
    db, out = FakeStore(), Collector()
    db.fail_with = OSError(28, "No space left on device")
    metrics = Metrics()
    writer = Writer(db, mode="thread", metrics=metrics)
    for i in range(3):
        writer.submit([("put", b"k%d" % i, b"v", None)], out.cb)
    await settle(writer)
    writer.shutdown_pool()
    assert len(db.calls) == 1
    assert all(res is None and isinstance(exc, OSError) for res, exc in out.got)
    assert metrics.writer_failures == 3


async def test_sync_request_forces_one_fsync() -> None:
    db, out = FakeStore(), Collector()
    writer = Writer(db, mode="loop", metrics=Metrics())
    writer.submit([], out.cb, sync=True)
    await settle(writer)
    assert db.syncs == 1 and db.calls == []
    writer.submit([("put", b"a", b"1", None)], out.cb)
    writer.submit([], out.cb, sync=True)
    await settle(writer)
    assert db.calls == [([("put", b"a", b"1", None)], True)]
    assert out.got == [([], None), ([None], None), ([], None)]


async def test_pressure_pauses_and_resumes() -> None:
    db, out = FakeStore(), Collector()
    events: list[bool] = []
    writer = Writer(db, mode="loop", metrics=Metrics(), max_depth=4, on_pressure=events.append)
    for i in range(16):
        assert writer.submit([("put", b"k%d" % i, b"v", None)], out.cb)
    assert events == [True]
    assert not writer.submit([("put", b"x", b"v", None)], out.cb), "hard cap: 4x max_depth"
    await settle(writer)
    assert events == [True, False]
    assert len(out.got) == 16


async def test_closed_writer_refuses_but_drains() -> None:
    db, out = FakeStore(), Collector()
    writer = Writer(db, mode="executor", metrics=Metrics())
    writer.submit([("put", b"a", b"1", None)], out.cb)
    writer.close()
    assert not writer.submit([("put", b"b", b"1", None)], out.cb)
    await settle(writer)
    assert out.got == [([None], None)]
    assert writer.closed


async def test_group_metrics_recorded() -> None:
    db, out = FakeStore(), Collector()
    metrics = Metrics()
    writer = Writer(db, mode="loop", metrics=metrics)
    for _ in range(5):
        writer.submit([("put", b"a", b"1", None)], out.cb)
    await settle(writer)
    assert metrics.group_size.count == 1 and metrics.group_size.sum == 5
    assert metrics.commit_seconds.count == 1
    assert "bitcask_group_commit_requests_count 1" in metrics.render({}, ready=True)


def test_unknown_mode_is_refused() -> None:
    async def make() -> None:
        Writer(FakeStore(), mode="fast")

    with pytest.raises(ValueError, match="writer mode"):
        asyncio.run(make())


async def test_groups_are_cut_by_bytes(monkeypatch: pytest.MonkeyPatch) -> None:
    import server._writer as writer_module

    monkeypatch.setattr(writer_module, "MAX_GROUP_BYTES", 10)
    db, out = FakeStore(), Collector()
    writer = Writer(db, mode="loop", metrics=Metrics())
    for i in range(6):
        writer.submit([("put", b"k%d" % i, b"v", None)], out.cb, nbytes=4)
    await settle(writer)
    assert [len(ops) for ops, _ in db.calls] == [2, 2, 2], "groups stay within the byte cap"
    assert len(out.got) == 6


@pytest.mark.parametrize("mode", MODES)
async def test_plain_and_special_groups_answer_alike(
    mode: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A group of plain puts takes the writer's one-call path; a group holding a sync
    # takes the general one. Cut by bytes, a sync in the second group forces only its
    # own group's fsync, and every request gets the same answer either way.
    import server._writer as writer_module

    monkeypatch.setattr(writer_module, "MAX_GROUP_BYTES", 10)
    db, out = FakeStore(), Collector()
    writer = Writer(db, mode=mode, metrics=Metrics())
    for i in range(2):
        writer.submit([("put", b"k%d" % i, b"v", None)], out.cb, nbytes=6)
    writer.submit([("put", b"key-too-long", b"v", None)], out.cb, nbytes=6)
    writer.submit([], out.cb, sync=True)
    await settle(writer)
    writer.shutdown_pool()
    assert [(len(ops), sync) for ops, sync in db.calls] == [(1, None), (1, None), (1, True)]
    assert [got for got, _ in out.got[:2]] == [[None], [None]]
    assert out.got[2][0] is None and isinstance(out.got[2][1], ValueError)
    assert out.got[3] == ([], None)
