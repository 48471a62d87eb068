"""How far one damaged byte reaches: one record, never its neighbours, at every step.

Strategy: build a store on real files, flip one byte of one record (a value, a key,
a tombstone, a batch marker), with its hint kept and removed, then walk the store
through open, merge, reopen, reopen, repair, reopen, reopen, and after every step
assert what *every* key answers: the damaged record's key answers CorruptRecordError
(never an older value, never absent, never a resurrected delete) until repair turns
it into a tombstone; every other key answers its latest value. The Hypothesis
property at the end does the same for any store a random history builds and any
single flipped byte, against the answers of an undamaged copy.
"""

from __future__ import annotations

import json
import os
import shutil
from collections.abc import Callable
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import bitcask
from bitcask._datafile import data_name, hint_name, list_data_files
from bitcask._record import BATCH_BEGIN, BATCH_COMMIT, HEADER_SIZE, IN_BATCH, TOMBSTONE
from tests.bitcask._damage import Rec, flip, records

CORRUPT = "CORRUPT"  # what a key answers when its latest record is unreadable
Answers = dict[bytes, "bytes | str | None"]


def answer(db: bitcask.Bitcask, key: bytes) -> bytes | str | None:
    try:
        return db.get(key)
    except bitcask.CorruptRecordError:
        return CORRUPT


def answers(path: Path, keys: list[bytes]) -> Answers:
    with bitcask.open(path, sync="never") as db:
        return {k: answer(db, k) for k in keys}


def drop_hints(path: Path) -> None:
    for name in os.listdir(path):
        if name.endswith(".hint"):
            os.unlink(path / name)


def find(path: Path, pick: Callable[[Rec], bool]) -> tuple[Path, Rec]:
    """The last record (in file order) that ``pick`` accepts, and its file."""
    found = None
    for fid in list_data_files(str(path)):
        dpath = path / data_name(fid)
        for rec in records(dpath):
            if pick(rec):
                found = (dpath, rec)
    assert found is not None
    return found


def walk(path: Path, keys: list[bytes], want: Answers, after_repair: Answers) -> None:
    """open, merge, reopen x2, repair, reopen x2: the answers at every step."""
    assert not bitcask.check(path).ok
    assert answers(path, keys) == want, "open"
    with bitcask.open(path, sync="never") as db:
        report = db.merge()
        assert report.left_out, f"a damaged file must be left out of the merge: {report}"
        assert {k: answer(db, k) for k in keys} == want, "after merge"
    for step in ("reopen 1", "reopen 2"):
        assert answers(path, keys) == want, step
    repaired = bitcask.repair(path)
    assert repaired.quarantined, str(repaired)
    q = path / repaired.quarantined[0]
    index = json.loads(q.with_suffix(".json").read_text())
    assert q.stat().st_size == sum(r["bytes"] for r in index) > 0
    assert bitcask.check(path).ok
    for step in ("after repair", "reopen 1", "reopen 2"):
        assert answers(path, keys) == after_repair, step


def history(path: Path, *, batch: bool) -> tuple[list[bytes], Answers]:
    """k0..k9 written twice (old, then new: the new ones in one batch or one by one),
    d0 put then deleted; one sealed file, so every step has something to merge."""
    keys = [b"k%d" % i for i in range(10)] + [b"d0"]
    with bitcask.open(path, sync="never") as db:
        for k in keys:
            db.put(k, b"old " + k)
        new = [("put", b"k%d" % i, b"new k%d" % i, None) for i in range(10)]
        if batch:
            db.write_batch([*new, ("delete", b"d0")])
        else:
            db.write_group([[op] for op in [*new, ("delete", b"d0")]])
        for i in range(20):
            db.put(b"filler", b"%d" % i)  # dead bytes for the merge to reclaim
    want: Answers = {b"k%d" % i: b"new k%d" % i for i in range(10)}
    want[b"d0"] = None
    return keys, want


@pytest.mark.parametrize("hint", ["kept", "removed"])
@pytest.mark.parametrize("batch", [True, False], ids=["batch", "group"])
@pytest.mark.parametrize("spot", ["value", "key", "crc", "flags"])
def test_flipped_record_costs_that_record(
    tmp_path: Path, hint: str, batch: bool, spot: str
) -> None:
    keys, want = history(tmp_path, batch=batch)
    dpath, rec = find(tmp_path, lambda r: r.key == b"k5" and r.value == b"new k5")
    assert bool(rec.flags & IN_BATCH) == batch
    where = {
        "value": HEADER_SIZE + len(rec.key) + 2,
        "key": HEADER_SIZE + 1,
        "crc": 2,
        "flags": 4,
    }[spot]
    flip(dpath, rec.offset + where)
    if hint == "removed":
        drop_hints(tmp_path)
    walk(tmp_path, keys, {**want, b"k5": CORRUPT}, {**want, b"k5": None})


@pytest.mark.parametrize("hint", ["kept", "removed"])
@pytest.mark.parametrize("batch", [True, False], ids=["batch", "group"])
def test_flipped_tombstone_never_resurrects(tmp_path: Path, hint: str, batch: bool) -> None:
    keys, want = history(tmp_path, batch=batch)
    dpath, rec = find(tmp_path, lambda r: bool(r.flags & TOMBSTONE) and r.key == b"d0")
    flip(dpath, rec.offset + HEADER_SIZE + len(rec.key) + 3)  # the target file id
    if hint == "removed":
        drop_hints(tmp_path)
    # A valid hint still witnesses the delete (absent is the truth); without it the
    # scan can only say the key's latest record is unreadable. Never the old value.
    walk(tmp_path, keys, {**want, b"d0": CORRUPT if hint == "removed" else None}, want)


@pytest.mark.parametrize("hint", ["kept", "removed"])
@pytest.mark.parametrize("marker", [BATCH_BEGIN, BATCH_COMMIT], ids=["begin", "commit"])
@pytest.mark.parametrize("spot", ["count", "crc"])
def test_flipped_batch_marker_keeps_the_batch(
    tmp_path: Path, hint: str, marker: int, spot: str
) -> None:
    """A marker whose framing holds is recognised by its shape: the batch applies whole."""
    keys, want = history(tmp_path, batch=True)
    dpath, rec = find(tmp_path, lambda r: bool(r.flags & marker))
    flip(dpath, rec.offset + (HEADER_SIZE + 3 if spot == "count" else 1))
    if hint == "removed":
        drop_hints(tmp_path)
    walk(tmp_path, keys, want, want)


def test_zeroed_sealed_file_keeps_its_keys_refused(tmp_path: Path) -> None:
    """Framing destroyed: with the hint kept, every key of the file answers CORRUPT at
    every step (a merge never turns them into missing keys); repair reports the range."""
    with bitcask.open(tmp_path, sync="never", max_file_size=1024) as db:
        for i in range(60):
            db.put(b"key:%02d" % i, b"v%02d" % i * 8)
    fids = list_data_files(str(tmp_path))
    victim = tmp_path / data_name(fids[1])
    lost = {r.key for r in records(victim)}
    assert lost
    size = victim.stat().st_size
    with open(victim, "r+b") as f:
        f.seek(16)
        f.write(bytes(size - 16))
    keys = [b"key:%02d" % i for i in range(60)]
    want: Answers = {k: (CORRUPT if k in lost else b"v%02d" % int(k[4:]) * 8) for k in keys}
    assert answers(tmp_path, keys) == want
    with bitcask.open(tmp_path, sync="never", max_file_size=1024) as db:
        report = db.merge()
        assert [fid for fid, _ in report.left_out] == [fids[1]], str(report)
        assert fids[1] not in report.inputs
    for _ in range(2):
        assert answers(tmp_path, keys) == want
    repaired = bitcask.repair(tmp_path)
    assert [p.file for p in repaired.dropped] == [data_name(fids[1])], str(repaired)
    assert answers(tmp_path, keys) == {k: (None if v == CORRUPT else v) for k, v in want.items()}


def test_merge_left_out_file_keeps_older_tombstones(tmp_path: Path) -> None:
    """A tombstone in a later merged file whose value sits in a left-out (damaged) file
    is kept, so the deleted key cannot come back from that file."""
    with bitcask.open(tmp_path, sync="never", max_file_size=256) as db:
        db.put(b"gone", b"x" * 40)
        db.put(b"hurt", b"y" * 40)
        for i in range(12):
            db.put(b"pad%d" % i, b"p" * 40)
        db.delete(b"gone")
        for i in range(12):
            db.put(b"more%d" % i, b"m" * 40)
    dpath, rec = find(tmp_path, lambda r: r.key == b"hurt")
    flip(dpath, rec.offset + HEADER_SIZE + len(rec.key) + 1)
    with bitcask.open(tmp_path, sync="never", max_file_size=256) as db:
        report = db.merge()
        assert report.left_out
        assert answer(db, b"gone") is None and answer(db, b"hurt") == CORRUPT
    drop_hints(tmp_path)  # the scan alone must agree
    assert answers(tmp_path, [b"gone", b"hurt"]) == {b"gone": None, b"hurt": CORRUPT}


# ------------------------------------------------------------- the property

_KEYS = [b"a", b"bb", b"key:1", b"key:2", b"key:3", b"zz"]
_op = st.one_of(
    st.tuples(st.just("put"), st.sampled_from(_KEYS), st.binary(min_size=0, max_size=48)),
    st.tuples(st.just("delete"), st.sampled_from(_KEYS)),
)
_step = st.one_of(_op.map(lambda op: [op]), st.lists(_op, min_size=2, max_size=4))


def _build(path: Path, steps: list[list[tuple[object, ...]]]) -> None:
    with bitcask.open(path, sync="never", max_file_size=400) as db:
        for ops in steps:
            db.write_batch([(*op, None) if op[0] == "put" else op for op in ops])


@settings(
    max_examples=int(os.environ.get("BITCASK_FLIP_EXAMPLES", "60")),
    deadline=None,
    derandomize=bool(os.environ.get("CI")),
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(
    steps=st.lists(_step, min_size=3, max_size=25),
    which=st.integers(0, 1 << 16),
    where=st.floats(0.0, 1.0, exclude_max=True),
    mask=st.integers(1, 255),
    keep_hint=st.booleans(),
)
def test_any_flipped_byte_costs_at_most_its_record(
    tmp_path_factory: pytest.TempPathFactory,
    steps: list[list[tuple[object, ...]]],
    which: int,
    where: float,
    mask: int,
    keep_hint: bool,
) -> None:
    root = tmp_path_factory.mktemp("prop")
    path = root / "store"
    _build(path, steps)
    pristine = answers(path, _KEYS)
    # The latest record of each key, from a reader written from the spec.
    latest: dict[bytes, tuple[int, Rec]] = {}
    for fid in list_data_files(str(path)):
        for rec in records(path / data_name(fid)):
            if not rec.flags & (BATCH_BEGIN | BATCH_COMMIT):
                latest[rec.key] = (fid, rec)
    fids = list_data_files(str(path))
    if not fids:  # every op was a delete of an absent key: nothing on disk
        shutil.rmtree(root)
        return
    fid = fids[which % len(fids)]
    dpath = path / data_name(fid)
    size = dpath.stat().st_size
    if size <= 16:
        shutil.rmtree(root)
        return
    offset = 16 + int(where * (size - 16))
    with open(dpath, "r+b") as f:
        f.seek(offset)
        byte = f.read(1)[0]
        f.seek(offset)
        f.write(bytes([byte ^ mask]))
    if not keep_hint:
        (path / hint_name(fid)).unlink(missing_ok=True)
    report = bitcask.check(path)
    assert not report.ok
    ranges = [(p.offset, p.offset + p.bytes) for p in report.problems if p.file == dpath.name]

    def allowed(key: bytes, got: object, step: str) -> None:
        if key not in latest:
            assert got is None, (step, key, got)
            return
        lfid, rec = latest[key]
        hit = lfid == fid and rec.offset <= offset < rec.offset + rec.size
        in_length_fields = hit and 21 <= offset - rec.offset < HEADER_SIZE
        reported = lfid == fid and any(a <= rec.offset < b for a, b in ranges)
        if hit and not in_length_fields:
            # value, key, tombstone target, crc, flags, timestamp, expiry: refused;
            # a valid hint still witnesses a delete (absent is the truth there)
            tomb_with_hint = keep_hint and bool(rec.flags & TOMBSTONE) and got is None
            assert got == CORRUPT or tomb_with_hint, (step, key, got, offset - rec.offset)
        elif in_length_fields or reported:
            pass  # framing destroyed: the report names the range; any older state
        else:
            assert got == pristine[key], (step, key, got, pristine[key])

    for step in ("open", "merge", "reopen"):
        if step == "merge":
            with bitcask.open(path, sync="never", max_file_size=400) as db:
                db.merge()
                got = {k: answer(db, k) for k in _KEYS}
        else:
            got = answers(path, _KEYS)
        for k in _KEYS:
            allowed(k, got[k], step)
    shutil.rmtree(root)


def test_corrupt_reads_and_refused_writes_are_logged_rate_limited(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    history(tmp_path, batch=False)
    dpath, rec = find(tmp_path, lambda r: r.key == b"k5" and r.value == b"new k5")
    flip(dpath, rec.offset + HEADER_SIZE + len(rec.key) + 2)
    with caplog.at_level("WARNING", logger="bitcask"), bitcask.open(tmp_path) as db:
        for _ in range(5):
            assert answer(db, b"k5") == CORRUPT
    lines = [r for r in caplog.records if "corrupt record read" in r.getMessage()]
    assert len(lines) == 1 and lines[0].levelname == "WARNING"
    assert "b'k5'" in lines[0].getMessage()
