"""Batches: atomic, one write and at most one fsync, result shapes, torn batches dropped."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

import bitcask
from bitcask import _io

POLICIES = [
    pytest.param("always", id="always"),
    pytest.param("interval", id="interval"),
    pytest.param("never", id="never"),
]


class IoCounter:
    """Counts calls through the _io hook (the engine's only write/fsync path)."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        self.writes: list[int] = []
        self.fsyncs = 0
        real_write, real_fsync = _io.write, _io.fsync

        def write(fd: int, data: bytes) -> None:
            self.writes.append(len(data))
            real_write(fd, data)

        def fsync(fd: int) -> None:
            self.fsyncs += 1
            real_fsync(fd)

        monkeypatch.setattr(_io, "write", write)
        monkeypatch.setattr(_io, "fsync", fsync)

    def reset(self) -> None:
        self.writes.clear()
        self.fsyncs = 0


@pytest.fixture
def io(monkeypatch: pytest.MonkeyPatch) -> IoCounter:
    return IoCounter(monkeypatch)


@pytest.fixture(params=POLICIES)
def db(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[bitcask.Bitcask]:
    with bitcask.open(tmp_path, sync=request.param, sync_interval_ms=3_600_000) as store:
        yield store


def test_write_batch_results_and_effects(db: bitcask.Bitcask) -> None:
    db.put(b"old", b"1")
    results = db.write_batch(
        [
            ("put", b"a", b"1", None),
            ("put", "b", "2"),
            ("delete", b"old"),
            ("delete", b"never-existed"),
            ("put", b"c", b"3", 60),
            ("delete", b"a"),
            ["put", b"a", b"again", None],
            ("delete", b"c"),
            ("delete", b"c"),
        ]
    )
    assert results == [None, None, True, False, None, True, None, True, False]
    assert dict(db.items()) == {b"a": b"again", b"b": b"2"}
    assert db.write_batch([]) == []


def test_batch_context_manager(db: bitcask.Bitcask) -> None:
    db.put(b"gone", b"x")
    with db.batch() as b:
        b.put(b"a", b"1")
        b.put(b"t", b"2", ttl=30)
        b.delete(b"gone")
        assert db.get(b"a") is None  # nothing visible before the block ends
    assert b.results == [None, None, True]
    assert db.get(b"a") == b"1" and db.ttl(b"t") is not None and b"gone" not in db
    with pytest.raises(RuntimeError):
        b.put(b"late", b"x")


def test_batch_is_discarded_when_the_block_raises(db: bitcask.Bitcask) -> None:
    with pytest.raises(ZeroDivisionError), db.batch() as b:
        b.put(b"a", b"1")
        1 / 0  # noqa: B018
    assert db.get(b"a") is None


@pytest.mark.parametrize(
    "bad",
    [
        pytest.param(("put", b"k"), id="put-missing-value"),
        pytest.param(("upsert", b"k", b"v"), id="unknown-op"),
        pytest.param(("delete",), id="delete-missing-key"),
        pytest.param("put", id="not-a-tuple"),
        pytest.param(("put", 5, b"v", None), id="int-key"),
        pytest.param(("put", b"k", b"v", -1), id="negative-ttl"),
        pytest.param(("put", b"k", b"v" * 100, None), id="value-too-large"),
    ],
)
def test_validation_happens_before_anything_is_written(
    tmp_path: Path, io: IoCounter, bad: object
) -> None:
    with bitcask.open(tmp_path, sync="never", max_value_size=50) as db:
        io.reset()
        with pytest.raises((ValueError, TypeError)):
            db.write_batch([("put", b"first", b"v", None), bad])  # type: ignore[list-item]
        assert io.writes == []
        assert db.get(b"first") is None


def test_one_write_and_fsync_per_policy(tmp_path: Path, io: IoCounter) -> None:
    ops = [("put", b"k%d" % i, b"v" * 10, None) for i in range(100)]
    expected_fsyncs = {"always": 1, "interval": 0, "never": 0}
    for policy, fsyncs in expected_fsyncs.items():
        with bitcask.open(tmp_path / policy, sync=policy, sync_interval_ms=3_600_000) as db:
            io.reset()
            db.write_batch(ops)
            assert len(io.writes) == 1 and io.fsyncs == fsyncs, policy
            io.reset()
            db.write_batch(ops, sync=True)
            assert len(io.writes) == 1 and io.fsyncs == 1, policy
            io.reset()
            db.write_batch(ops, sync=False)
            assert len(io.writes) == 1 and io.fsyncs == 0, policy


def test_single_put_writes_once_and_fsyncs_per_policy(tmp_path: Path, io: IoCounter) -> None:
    for policy, fsyncs in {"always": 1, "interval": 0, "never": 0}.items():
        with bitcask.open(tmp_path / policy, sync=policy, sync_interval_ms=3_600_000) as db:
            io.reset()
            db.put(b"k", b"v")
            db.delete(b"k")
            db.delete(b"k")  # absent: writes nothing
            assert len(io.writes) == 2 and io.fsyncs == 2 * fsyncs, policy


def test_interval_syncer_fsyncs_in_the_background(tmp_path: Path, io: IoCounter) -> None:
    import time

    with bitcask.open(tmp_path, sync="interval", sync_interval_ms=5) as db:
        io.reset()
        db.put(b"k", b"v")
        deadline = time.monotonic() + 5
        while io.fsyncs == 0 and time.monotonic() < deadline:
            time.sleep(0.005)
        assert io.fsyncs >= 1
        settled = io.fsyncs
        time.sleep(0.05)  # nothing dirty: no more fsyncs
        assert io.fsyncs == settled


def _newest(path: Path) -> Path:
    return sorted(path.glob("*.data"))[-1]


def test_torn_batch_at_the_tail_is_dropped_whole(tmp_path: Path) -> None:
    src = tmp_path / "db"
    with bitcask.open(src, sync="never") as db:
        db.put(b"before", b"1")
        db.write_batch([("put", b"b%d" % i, b"x" * 20, None) for i in range(5)])
    last = _newest(src)
    last.with_suffix(".hint").unlink()
    full = last.stat().st_size
    batch_bytes = 2 * (29 + 4) + 5 * (29 + 2 + 20)
    for cut in (1, 29 + 4, 60, batch_bytes - 33, batch_bytes - 1):
        store = tmp_path / f"cut{cut}"
        store.mkdir()
        for data in src.glob("*.data"):
            (store / data.name).write_bytes(data.read_bytes())
        with open(store / last.name, "r+b") as fh:
            fh.truncate(full - cut)
        with bitcask.open(store, sync="never") as db:
            assert dict(db.items()) == {b"before": b"1"}, cut
            assert db.recovery.truncated_bytes == batch_bytes - cut, cut
        assert (store / last.name).stat().st_size == full - batch_bytes


def test_corrupt_record_inside_a_committed_batch_costs_only_itself(tmp_path: Path) -> None:
    with bitcask.open(tmp_path, sync="never") as db:
        db.write_batch([("put", b"b%d" % i, b"x" * 20, None) for i in range(3)])
        db.put(b"after", b"2")
    data = sorted(tmp_path.glob("*.data"))[0]
    data.with_suffix(".hint").unlink()
    raw = bytearray(data.read_bytes())
    raw[16 + 33 + 51 + 40] ^= 0xFF  # a value byte of the second batch record
    data.write_bytes(bytes(raw))
    with bitcask.open(tmp_path, sync="never") as db:
        assert {k: db.get(k) for k in (b"b0", b"b2", b"after")} == {
            b"b0": b"x" * 20,
            b"b2": b"x" * 20,
            b"after": b"2",
        }
        with pytest.raises(bitcask.CorruptRecordError):
            db.get(b"b1")
        assert db.recovery.corrupt_records == 1 and db.recovery.dropped_batches == 0


def test_write_group_of_single_writes_refuses_only_the_bad_one(tmp_path: Path) -> None:
    """The one-pass encoding of a group of single writes falls back per batch, so one
    refused op fails alone and the others apply, in order."""
    with bitcask.open(tmp_path, sync="never") as db:
        got = db.write_group(
            [
                [("put", b"a", b"1")],
                [("put", b"k" * 70000, b"x")],
                [("put", b"b", b"2", 1e300)],
                [("delete", b"a")],
                [("put", b"c", b"3")],
            ]
        )
        assert got[0] == [None] and got[3] == [True] and got[4] == [None]
        assert isinstance(got[1], bitcask.KeyTooLargeError)
        assert isinstance(got[2], ValueError)
        assert (db.get(b"a"), db.get(b"b"), db.get(b"c")) == (None, None, b"3")


def test_write_group_of_single_writes_over_max_keys_refuses_only_the_new_keys(
    tmp_path: Path,
) -> None:
    """A group of single writes answers one result per batch whether every op is taken
    (the short path of write_group) or max_keys refuses some (the per-batch split)."""
    with bitcask.open(tmp_path, sync="never", max_keys=2) as db:
        taken = db.write_group([[("put", b"a", b"1")], [("put", b"b", b"2")]])
        assert taken == [[None], [None]]
        got = db.write_group(
            [
                [("put", b"c", b"3")],
                [("put", b"a", b"4")],
                [("delete", b"b")],
                [("put", b"d", b"5")],
            ]
        )
        assert isinstance(got[0], bitcask.StoreFullError)
        assert got[1:] == [[None], [True], [None]]  # the delete made room for d, in order
        assert {k: db.get(k) for k in (b"a", b"b", b"c", b"d")} == {
            b"a": b"4",
            b"b": None,
            b"c": None,
            b"d": b"5",
        }
