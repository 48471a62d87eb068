"""docs/format.md is enough to read a store: an independent reader agrees with the engine.

`tests/spec/_format_reader.py` was written from the document only. Each test makes the
engine write a store (puts, deletes, TTLs, batches, rotation, merge, with and without
hints, an open writer, a crash, a half-finished merge) and checks that every key, value
and expiry the reader derives equals what `bitcask.open(...)` answers.
"""

from __future__ import annotations

import os
import shutil
import struct
import subprocess
import sys
import zlib
from pathlib import Path

import pytest

import bitcask
from tests.spec._format_reader import (
    FILE_HEADER,
    HINT_HEADER,
    OPEN_FILE,
    RECORD_HEADER,
    CorruptKey,
    Store,
    data_files,
    read_record,
)

NOW = 1_700_000_000.0


class Clock:
    def __init__(self, now: float = NOW) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def assert_agrees(path: Path, *, now: float = NOW, readonly_reader: bool = True) -> Store:
    """Reader (with hints, and scanning only) == a readonly engine open, key by key."""
    clock = Clock(now)
    now_ms = int(now * 1000)
    with_hints = Store(path, readonly=readonly_reader)
    scanned = Store(path, use_hints=False, readonly=readonly_reader)
    assert with_hints.live(now_ms).keys() == scanned.live(now_ms).keys()
    db = bitcask.open(path, readonly=True, clock=clock)
    try:
        engine_keys = set(db.keys())
        for reader in (with_hints, scanned):
            live = reader.live(now_ms)
            assert set(live) == engine_keys
            for key, loc in live.items():
                if loc.corrupt:
                    with pytest.raises(bitcask.CorruptRecordError):
                        db.get(key)
                    continue
                assert reader.value(key) == db.get(key), key
                ttl = db.ttl(key)
                if loc.expiry_ms:
                    assert ttl is not None and ttl >= 0
                    assert abs((now_ms + ttl * 1000) - loc.expiry_ms) <= 1, key
                else:
                    assert ttl is None, key
    finally:
        db.close()
    return with_hints


def fill(db: bitcask.Bitcask, rounds: int) -> None:
    """Puts, overwrites, deletes, TTLs and batches, enough to rotate small files."""
    for i in range(rounds):
        db.put(f"k{i:03d}".encode(), f"value {i} ".encode() * (i % 7 + 1))
        if i % 3 == 0:
            db.put(f"ttl{i:03d}".encode(), b"short", ttl=5 + i)
        if i % 4 == 0:
            db.put(f"k{i // 2:03d}".encode(), b"overwritten")
        if i % 5 == 0:
            db.delete(f"k{i // 3:03d}".encode())
        if i % 6 == 0:
            with db.batch() as b:
                b.put(f"b{i:03d}".encode(), b"in a batch")
                b.put(f"k{i:03d}".encode(), b"batched overwrite")
                b.delete(f"k{i // 4:03d}".encode())
    db.put(b"empty", b"")
    db.put(b"\x00zero\x00", b"\x00" * 40)  # a value ending in zeros, near the unwritten tail


@pytest.mark.parametrize("hint_files", [True, False], ids=["hints", "no-hints"])
def test_closed_store_with_rotation(tmp_path: Path, hint_files: bool) -> None:
    path = tmp_path / "s"
    with bitcask.open(path, max_file_size=1024, clock=Clock(), hint_files=hint_files) as db:
        fill(db, 60)
    files = data_files(path)
    assert len(files) > 3, "rotation made several files"
    hints = [p for p in path.iterdir() if p.suffix == ".hint"]
    assert bool(hints) == hint_files
    store = assert_agrees(path)
    assert all(r.used_hint for r in store.files.values()) == hint_files
    # Sealed files carry flags 0 and a header naming their own id.
    for fid, p in files:
        magic, version, flags, file_id, _crc = FILE_HEADER.unpack_from(p.read_bytes())
        assert (magic, version, flags, file_id) == (b"BCDF", 1, 0, fid)
        buf = p.read_bytes()
        off = FILE_HEADER.size
        while (rec := read_record(buf, off)) is not None and rec.valid:
            off += rec.size
        assert off == len(buf), "sealing truncates a file to its records"


def test_expiry_boundary(tmp_path: Path) -> None:
    """Expired when now_ms >= expiry: the reader and the engine agree on either side."""
    path = tmp_path / "s"
    with bitcask.open(path, clock=Clock()) as db:
        db.put(b"t", b"v", ttl=10)
        db.put(b"forever", b"v")
    store = Store(path)
    expiry = store.keydir[b"t"].expiry_ms
    assert expiry == int(NOW * 1000) + 10_000
    for now_ms in (expiry - 1, expiry, expiry + 1):
        assert_agrees(path, now=now_ms / 1000)
    # The record's TTL flag is set exactly when the expiry is.
    for _fid, p in data_files(path):
        buf = p.read_bytes()
        off = FILE_HEADER.size
        while (rec := read_record(buf, off)) is not None and rec.valid:
            assert bool(rec.flags & 0x02) == bool(rec.expiry_ms)
            off += rec.size


def test_batch_markers_on_disk(tmp_path: Path) -> None:
    """A write_batch is BEGIN(n) | n IN_BATCH records | COMMIT(n); a put is flags 0."""
    path = tmp_path / "s"
    with bitcask.open(path, hint_files=False) as db:
        db.put(b"plain", b"1")
        with db.batch() as b:
            b.put(b"a", b"1")
            b.delete(b"plain")
            b.put(b"c", b"3", ttl=100)
    ((_fid, p),) = data_files(path)
    buf = p.read_bytes()
    off, flags = FILE_HEADER.size, []
    while (rec := read_record(buf, off)) is not None and rec.valid:
        flags.append((rec.flags, rec.key, rec.value))
        off += rec.size
    assert flags[0] == (0, b"plain", b"1")
    assert flags[1] == (0x04, b"", struct.pack(">I", 3))
    assert [f for f, _, _ in flags[2:5]] == [0x10, 0x10 | 0x01, 0x10 | 0x02]
    assert flags[3][2] == struct.pack(">I", 1), "a tombstone names the file of what it deletes"
    assert flags[5] == (0x08, b"", struct.pack(">I", 3))
    assert_agrees(path)


def test_torn_batch_is_dropped_whole(tmp_path: Path) -> None:
    """Cutting a sealed file inside a batch: the reader and a readonly open drop it whole."""
    path = tmp_path / "s"
    with bitcask.open(path, hint_files=False) as db:
        db.put(b"before", b"1")
        with db.batch() as b:
            b.put(b"a", b"1")
            b.put(b"b", b"2")
    ((_fid, p),) = data_files(path)
    buf = p.read_bytes()
    p.write_bytes(buf[: len(buf) - RECORD_HEADER.size - 4 - 1])  # into the COMMIT
    store = assert_agrees(path)
    assert set(store.keydir) == {b"before"}


def test_after_merge(tmp_path: Path) -> None:
    path = tmp_path / "s"
    clock = Clock()
    with bitcask.open(path, max_file_size=1024, clock=clock) as db:
        fill(db, 60)
        before = {k: db.get(k) for k in db}
        clock.now += 20  # some TTLs have passed: merge drops them
        report = db.merge()
        assert report.outputs
    store = assert_agrees(path, now=clock.now)
    assert not (path / "merge").exists()
    assert {fid for fid, _ in data_files(path)} >= set(report.outputs)
    assert not {fid for fid, _ in data_files(path)} & set(report.inputs)
    live = store.live(int(clock.now * 1000))
    assert {k: store.value(k) for k in live} == {k: v for k, v in before.items() if k in live}
    # Merge outputs clear batch flags: no marker survives in them.
    for fid in report.outputs:
        buf = (path / f"{fid:010d}.data").read_bytes()
        off = FILE_HEADER.size
        while (rec := read_record(buf, off)) is not None:
            assert rec.valid and not rec.flags & (0x04 | 0x08 | 0x10)
            off += rec.size
        assert off == len(buf)


def _hand_made_merge(tmp_path: Path) -> tuple[Path, Path]:
    """Two copies of one store: before a merge, and the merge's outputs in merge/."""
    path = tmp_path / "s"
    with bitcask.open(path, max_file_size=1024, clock=Clock()) as db:
        fill(db, 40)
    before = tmp_path / "before"
    shutil.copytree(path, before)
    with bitcask.open(path, clock=Clock()) as db:
        report = db.merge()
    # The state of a crash between the MANIFEST's rename and the swap: inputs still in
    # place, outputs still in merge/.
    staged = tmp_path / "staged"
    shutil.copytree(before, staged)
    (staged / "merge").mkdir()
    for fid in report.outputs:
        for suffix in (".data", ".hint"):
            name = f"{fid:010d}{suffix}"
            shutil.copy(path / name, staged / "merge" / name)
    return staged, path


def _write_manifest(merge_dir: Path, inputs: list[int], outputs: list[int]) -> None:
    import json

    line = json.dumps({"inputs": inputs, "outputs": outputs, "version": 1}).encode()
    (merge_dir / "MANIFEST").write_bytes(line + b"\n" + b"%08x\n" % zlib.crc32(line))


def test_merge_directory_with_manifest_is_finished(tmp_path: Path) -> None:
    staged, merged = _hand_made_merge(tmp_path)
    outputs = sorted(int(p.name[:10]) for p in (staged / "merge").glob("*.data"))
    inputs = [fid for fid, _ in data_files(staged) if fid < min(outputs)]
    _write_manifest(staged / "merge", inputs, outputs)
    # A readonly open ignores merge/: inputs are authoritative, and agree.
    assert_agrees(staged)
    writer_view = Store(staged)  # the reader applying the manifest, as a writer open
    expected = {k: writer_view.value(k) for k in writer_view.live(int(NOW * 1000))}
    assert not set(writer_view.files) & set(inputs)
    with bitcask.open(staged, clock=Clock()):
        pass  # a writer open finishes the swap
    assert not (staged / "merge").exists()
    assert sorted(fid for fid, _ in data_files(staged)) == sorted(
        fid for fid, _ in data_files(merged)
    )
    after = assert_agrees(staged)
    assert expected == {k: after.value(k) for k in after.live(int(NOW * 1000))}


def test_merge_directory_without_valid_manifest_is_discarded(tmp_path: Path) -> None:
    staged, _merged = _hand_made_merge(tmp_path)
    outputs = sorted(int(p.name[:10]) for p in (staged / "merge").glob("*.data"))
    _write_manifest(staged / "merge", [1], outputs)
    manifest = staged / "merge" / "MANIFEST"
    manifest.write_bytes(manifest.read_bytes().replace(b"[1]", b"[2]"))  # CRC now wrong
    inputs_before = [fid for fid, _ in data_files(staged)]
    writer_view = Store(staged)
    assert sorted(writer_view.files) == inputs_before
    with bitcask.open(staged, clock=Clock()):
        pass
    assert not (staged / "merge").exists()
    assert [fid for fid, _ in data_files(staged)] == inputs_before
    assert_agrees(staged)


def test_open_writer_active_file(tmp_path: Path) -> None:
    """While a writer holds the store: OPEN_FILE, a zero tail, and a readonly open agrees."""
    path = tmp_path / "s"
    db = bitcask.open(path, clock=Clock(), max_file_size=1 << 20)
    try:
        fill(db, 20)
        db.sync()
        fid, p = data_files(path)[-1]
        buf = p.read_bytes()
        flags = FILE_HEADER.unpack_from(buf)[2]
        assert flags & OPEN_FILE
        store = assert_agrees(path)
        assert not store.files[fid].used_hint
    finally:
        db.close()
    fid, p = data_files(path)[-1]
    assert FILE_HEADER.unpack_from(p.read_bytes())[2] == 0, "sealing clears OPEN_FILE"
    assert_agrees(path)


CRASH = """
import os, sys, bitcask
db = bitcask.open(sys.argv[1], sync="never", max_file_size=2048, clock=lambda: {now})
for i in range(100):
    db.put(b"k%03d" % i, b"v" * (i % 50), ttl=(100 + i) if i % 2 else None)
    if i % 7 == 0:
        db.delete(b"k%03d" % (i // 2))
    if i % 9 == 0:
        with db.batch() as b:
            b.put(b"b%03d" % i, b"batched")
            b.delete(b"k%03d" % (i - 1))
os._exit(9)
"""


def test_after_a_crash(tmp_path: Path) -> None:
    """A killed writer leaves OPEN_FILE and a zero tail: the reader still agrees."""
    path = tmp_path / "s"
    code = CRASH.format(now=NOW)
    proc = subprocess.run([sys.executable, "-c", code, str(path)], timeout=60, check=False)
    assert proc.returncode == 9
    _last_fid, last = data_files(path)[-1]
    assert FILE_HEADER.unpack_from(last.read_bytes())[2] & OPEN_FILE
    assert_agrees(path)
    with bitcask.open(path, clock=Clock()):
        pass  # recovery: truncates the tail, clears the flag
    assert_agrees(path)


def test_other_format_version_is_not_loaded(tmp_path: Path) -> None:
    """A file whose intact header names version 2 is not loaded (and never merged)."""
    path = tmp_path / "s"
    with bitcask.open(path, hint_files=False) as db:
        db.put(b"k", b"v1")
    fid = data_files(path)[-1][0] + 1
    head = struct.pack(">4sHHI", b"BCDF", 2, 0, fid)
    body = struct.pack(">BQQII", 0, 0, 0, 1, 2) + b"k" + b"v2"
    record = struct.pack(">I", zlib.crc32(body)) + body
    (path / f"{fid:010d}.data").write_bytes(head + struct.pack(">I", zlib.crc32(head)) + record)
    store = assert_agrees(path)
    assert not store.files[fid].loaded
    assert store.value(b"k") == b"v1"


def test_damaged_value_claims_its_key(tmp_path: Path) -> None:
    """Rule 4: a flipped value byte costs its record, which still claims the key."""
    path = tmp_path / "s"
    with bitcask.open(path, hint_files=False) as db:
        db.put(b"k", b"old")
        db.put(b"k", b"new value")
        db.put(b"other", b"fine")
    ((_fid, p),) = data_files(path)
    buf = bytearray(p.read_bytes())
    at = buf.rindex(b"new value")
    buf[at] ^= 0x01
    p.write_bytes(bytes(buf))
    store = Store(path)
    with pytest.raises(CorruptKey):
        store.value(b"k")
    assert store.value(b"other") == b"fine"
    db = bitcask.open(path, readonly=True)
    try:
        with pytest.raises(bitcask.CorruptRecordError):
            db.get(b"k")
        assert db.get(b"other") == b"fine"
    finally:
        db.close()


def test_hint_layout(tmp_path: Path) -> None:
    """The hint's header counts match its data file; a stale hint is not used."""
    path = tmp_path / "s"
    with bitcask.open(path, clock=Clock()) as db:
        db.put(b"a", b"1")
        db.put(b"b", b"2", ttl=50)
        db.put(b"gone", b"x")
        db.delete(b"gone")
    ((fid, p),) = data_files(path)
    hint = p.with_suffix(".hint").read_bytes()
    magic, version, reserved, file_id, n, n_exp, n_tomb, size = HINT_HEADER.unpack_from(hint)
    assert (magic, version, reserved, file_id) == (b"BCHT", 1, 0, fid)
    assert (n, n_exp, n_tomb, size) == (2, 1, 1, p.stat().st_size)
    assert Store(path).files[fid].used_hint
    # A hint whose data_size is not the data file's size (CRC intact): scanned instead.
    stale = tmp_path / "stale"
    shutil.copytree(path, stale)
    h = bytearray((stale / p.name).with_suffix(".hint").read_bytes())
    struct.pack_into("<Q", h, 24, size + 1)
    struct.pack_into("<I", h, len(h) - 4, zlib.crc32(bytes(h[:-4])))
    (stale / p.name).with_suffix(".hint").write_bytes(bytes(h))
    assert not Store(stale).files[fid].used_hint
    assert_agrees(stale)


@pytest.mark.parametrize(
    ("offset", "xor"),
    [
        pytest.param(0, 0x01, id="magic"),
        pytest.param(5, 0x01, id="version-under-bad-crc"),
        pytest.param(12, 0xFF, id="header-crc"),
    ],
)
def test_damaged_header_still_reads_records(tmp_path: Path, offset: int, xor: int) -> None:
    """Header damage other than an intact other version: the records are still read."""
    path = tmp_path / "s"
    with bitcask.open(path, hint_files=False) as db:
        db.put(b"k", b"v")
        db.put(b"j", b"w", ttl=100)
    ((fid, p),) = data_files(path)
    buf = bytearray(p.read_bytes())
    buf[offset] ^= xor
    p.write_bytes(bytes(buf))
    store = assert_agrees(path)
    assert store.files[fid].loaded and not store.files[fid].header_ok
    assert store.value(b"k") == b"v"


def test_wrong_file_id_in_header_still_reads_records(tmp_path: Path) -> None:
    path = tmp_path / "s"
    with bitcask.open(path, hint_files=False) as db:
        db.put(b"k", b"v")
    ((fid, p),) = data_files(path)
    buf = bytearray(p.read_bytes())
    struct.pack_into(">I", buf, 8, fid + 5)
    struct.pack_into(">I", buf, 12, zlib.crc32(bytes(buf[:12])))
    p.write_bytes(bytes(buf))
    store = assert_agrees(path)
    assert store.value(b"k") == b"v"


def test_merge_reserves_ids(tmp_path: Path) -> None:
    """Outputs take ids from `next` (the id after the sealed active file); the new
    active file is next + |S| + 1; ids in between stay unused."""
    path = tmp_path / "s"
    with bitcask.open(path, max_file_size=1024, clock=Clock()) as db:
        fill(db, 30)
        before = [fid for fid, _ in data_files(path)]
        report = db.merge()
        nxt = max(before) + 1
        assert list(report.inputs) == before
        assert report.outputs[0] == nxt and max(report.outputs) <= nxt + len(before)
        db.put(b"after merge", b"1")
        db.sync()
        assert data_files(path)[-1][0] == nxt + len(before) + 1
    store = assert_agrees(path)
    assert store.keydir[b"after merge"].file_id == nxt + len(before) + 1


def test_tombstones_name_the_file_of_what_they_delete(tmp_path: Path) -> None:
    """TOMBSTONE's value is the u32 id of the file holding the value it deletes."""
    path = tmp_path / "s"
    with bitcask.open(path, max_file_size=1024, hint_files=False) as db:
        fill(db, 60)
        with db.batch() as b:  # put and delete of one key inside one batch
            b.put(b"same batch", b"1")
            b.delete(b"same batch")
    holder: dict[bytes, int] = {}
    checked = 0
    for fid, p in data_files(path):
        buf = p.read_bytes()
        off = FILE_HEADER.size
        while (rec := read_record(buf, off)) is not None and rec.valid:
            if rec.flags & 0x01:
                assert rec.key in holder, rec.key  # only what existed is deleted
                assert struct.unpack(">I", rec.value)[0] == holder.pop(rec.key), rec.key
                checked += 1
            elif not rec.flags & (0x04 | 0x08):
                holder[rec.key] = fid
            off += rec.size
    assert checked > 5


def _batch_store(path: Path) -> tuple[Path, list[int]]:
    """File 1: put a | BEGIN(3) | b1 | delete a | b3 | COMMIT(3) | put z; then file 2."""
    with bitcask.open(path, hint_files=False) as db:
        db.put(b"a", b"old")
        with db.batch() as b:
            b.put(b"b1", b"one")
            b.delete(b"a")
            b.put(b"b3", b"three")
        db.put(b"z", b"last")
    with bitcask.open(path, hint_files=False) as db:
        db.put(b"later file", b"x")
    (_fid, p), _second = data_files(path)
    buf = p.read_bytes()
    offsets, off = [], FILE_HEADER.size
    while (rec := read_record(buf, off)) is not None and rec.valid:
        offsets.append(off)
        off += rec.size
    assert len(offsets) == 7
    return p, offsets


@pytest.mark.parametrize(
    ("record", "damage", "expected"),
    [
        pytest.param(1, "timestamp", {b"b1", b"b3", b"z"}, id="begin-damaged"),
        pytest.param(5, "timestamp", {b"b1", b"b3", b"z"}, id="commit-damaged"),
        pytest.param(1, "zero", {b"b1", b"b3", b"z"}, id="begin-zeroed"),
        pytest.param(2, "value", {b"b1", b"b3", b"z"}, id="member-value-damaged"),
        pytest.param(3, "zero", {b"a", b"b1", b"b3", b"z"}, id="member-zeroed"),
        pytest.param(5, "zero", {b"a", b"z"}, id="commit-zeroed"),
        pytest.param(3, "timestamp", {b"a", b"b1", b"b3", b"z"}, id="tombstone-damaged"),
    ],
)
def test_damage_inside_a_batch(
    tmp_path: Path, record: int, damage: str, expected: set[bytes]
) -> None:
    """The Batches rules for damaged markers and members, reader against a readonly open."""
    path = tmp_path / "s"
    p, offsets = _batch_store(path)
    buf = bytearray(p.read_bytes())
    at = offsets[record]
    size = offsets[record + 1] - at
    if damage == "timestamp":
        buf[at + 6] ^= 0x40
    elif damage == "value":
        buf[at + size - 1] ^= 0x01
    else:
        buf[at : at + size] = bytes(size)
    p.write_bytes(bytes(buf))
    store = assert_agrees(path)
    assert set(store.live(int(NOW * 1000))) == expected | {b"later file"}


def _hint_columns(path: Path) -> dict[str, list[int] | list[bytes]]:
    """Every column of a hint file, parsed by the layout in docs/format.md."""
    buf = path.read_bytes()
    _m, _v, _r, _fid, n, n_exp, n_tomb, _size = HINT_HEADER.unpack_from(buf)
    pos = HINT_HEADER.size

    def ints(fmt: str, count: int) -> list[int]:
        nonlocal pos
        out = list(struct.unpack_from(f"<{count}{fmt}", buf, pos))
        pos += struct.calcsize(f"<{count}{fmt}")
        return out

    def blobs(lens: list[int]) -> list[bytes]:
        nonlocal pos
        out = []
        for length in lens:
            out.append(buf[pos : pos + length])
            pos += length
        return out

    cols: dict[str, list[int] | list[bytes]] = {}
    cols["keys"] = blobs(ints("I", n))
    cols["locs"] = ints("Q", n)
    cols["timestamps"] = ints("Q", n)
    cols["exp_index"] = ints("I", n_exp)
    cols["exp_ms"] = ints("Q", n_exp)
    cols["tomb_keys"] = blobs(ints("I", n_tomb))
    cols["tomb_files"] = ints("I", n_tomb)
    assert pos == len(buf) - 4
    return cols


def test_hint_columns_match_the_records(tmp_path: Path) -> None:
    """Entries in the order of each key's last record, with its timestamp and expiry;
    tombstones with the file id they name."""
    path = tmp_path / "s"
    with bitcask.open(path, max_file_size=1024, clock=Clock()) as db:
        fill(db, 60)
    for _fid, p in data_files(path):
        buf = p.read_bytes()
        last: dict[bytes, tuple[int, int, int, int, int]] = {}  # key -> off, size, ts, exp, tomb
        off = FILE_HEADER.size
        while (rec := read_record(buf, off)) is not None and rec.valid:
            if not rec.flags & (0x04 | 0x08):
                ts = struct.unpack_from(">Q", buf, off + 5)[0]
                tomb = struct.unpack(">I", rec.value)[0] if rec.flags & 0x01 else -1
                last.pop(rec.key, None)
                last[rec.key] = (off, rec.size, ts, rec.expiry_ms, tomb)
            off += rec.size
        cols = _hint_columns(p.with_suffix(".hint"))
        live = [(k, v) for k, v in last.items() if v[4] == -1]
        assert cols["keys"] == [k for k, _ in live]
        assert cols["locs"] == [v[0] << 32 | v[1] for _, v in live]
        assert cols["timestamps"] == [v[2] for _, v in live]
        expiring = [(i, v[3]) for i, (_, v) in enumerate(live) if v[3]]
        assert list(zip(cols["exp_index"], cols["exp_ms"], strict=True)) == expiring
        tombs = [(k, v[4]) for k, v in last.items() if v[4] != -1]
        assert list(zip(cols["tomb_keys"], cols["tomb_files"], strict=True)) == tombs


def test_lock_file_and_empty_data_file(tmp_path: Path) -> None:
    """LOCK holds the writer's pid and a newline; a 16-byte data file is deleted by a
    writer open."""
    path = tmp_path / "s"
    with bitcask.open(path) as db:
        db.put(b"k", b"v")
        assert (path / "LOCK").read_bytes() == b"%d\n" % os.getpid()
        with pytest.raises(bitcask.StoreLockedError, match=str(os.getpid())):
            bitcask.open(path)
        assert_agrees(path)  # readonly opens neither lock nor read it
    fid = data_files(path)[-1][0] + 1
    head = struct.pack(">4sHHI", b"BCDF", 1, 0, fid)
    empty = path / f"{fid:010d}.data"
    empty.write_bytes(head + struct.pack(">I", zlib.crc32(head)))
    assert Store(path).files[fid].ops == []
    with bitcask.open(path):
        pass
    assert not empty.exists()
    assert_agrees(path)


def test_temporaries_and_quarantine_are_ignored(tmp_path: Path) -> None:
    """*.tmp, *.repair, *.corrupt and quarantine/ are never loaded, even when they hold
    well-formed records of a later id."""
    path = tmp_path / "s"
    with bitcask.open(path, hint_files=False) as db:
        db.put(b"k", b"real")
    donor = tmp_path / "donor"
    with bitcask.open(donor, hint_files=False) as db:
        db.put(b"k", b"impostor")
        db.put(b"other", b"impostor")
    (_fid, donor_file), *_ = data_files(donor)
    names = ["0000000009.data.tmp", "0000000009.data.repair", "0000000009.data.corrupt"]
    for name in names:
        shutil.copy(donor_file, path / name)
    (path / "quarantine").mkdir()
    shutil.copy(donor_file, path / "quarantine" / "0000000009.data")
    store = assert_agrees(path)
    assert store.value(b"k") == b"real" and b"other" not in store.keydir
    with bitcask.open(path):
        pass
    assert_agrees(path)


def test_zero_crc_in_open_file_ends_the_scan(tmp_path: Path) -> None:
    """OPEN_FILE set: a record with a stored CRC of 0 is an interrupted CRC-last copy;
    it and every record after it, however valid, were never acknowledged."""
    path = tmp_path / "s"
    code = CRASH.format(now=NOW)
    proc = subprocess.run([sys.executable, "-c", code, str(path)], timeout=60, check=False)
    assert proc.returncode == 9
    fid, last = data_files(path)[-1]
    buf = bytearray(last.read_bytes())
    offsets: list[tuple[int, int]] = []  # (offset, BEGIN offset of its open batch or -1)
    off, begin = FILE_HEADER.size, -1
    while (rec := read_record(bytes(buf), off)) is not None and rec.valid:
        begin = off if rec.flags & 0x04 else begin
        offsets.append((off, begin if rec.flags & 0x10 else -1))
        begin = -1 if rec.flags & 0x08 else begin
        off += rec.size
    assert len(offsets) >= 3
    cut, batch_begin = offsets[-3]
    struct.pack_into(">I", buf, cut, 0)
    last.write_bytes(bytes(buf))
    store = assert_agrees(path)
    # The tail from the stop offset, or from the BEGIN of the batch it tears, whichever
    # comes first, is dropped (truncated by a writer open).
    torn = batch_begin if batch_begin >= 0 else cut
    assert not any(loc.offset >= torn for loc in store.keydir.values() if loc.file_id == fid)
    with bitcask.open(path, clock=Clock()) as db:
        assert db.stats()["recovery"]["truncated_bytes"] == off - torn
    assert last.stat().st_size == torn
    assert_agrees(path)


@pytest.mark.parametrize("unlinked", [0, 1, 2], ids=["outputs-moved", "one-input-gone", "two"])
def test_a_half_done_swap_loads_the_same(tmp_path: Path, unlinked: int) -> None:
    """Crash points inside the swap: outputs renamed into place, then inputs unlinked.
    Every state loads the same values, readonly or after a writer open finishes it."""
    staged, _merged = _hand_made_merge(tmp_path)
    expected = {k: Store(staged).value(k) for k in Store(staged).live(int(NOW * 1000))}
    outputs = sorted(int(p.name[:10]) for p in (staged / "merge").glob("*.data"))
    inputs = [fid for fid, _ in data_files(staged) if fid < min(outputs)]
    _write_manifest(staged / "merge", inputs, outputs)
    for fid in outputs:
        for suffix in (".data", ".hint"):
            (staged / "merge" / f"{fid:010d}{suffix}").rename(staged / f"{fid:010d}{suffix}")
    for fid in inputs[:unlinked]:
        (staged / f"{fid:010d}.data").unlink()
        (staged / f"{fid:010d}.hint").unlink(missing_ok=True)
    now_ms = int(NOW * 1000)
    for readonly in (True, False):
        store = Store(staged, readonly=readonly)
        assert {k: store.value(k) for k in store.live(now_ms)} == expected
    assert_agrees(staged)
    with bitcask.open(staged, clock=Clock()):
        pass
    assert not (staged / "merge").exists()
    assert not {fid for fid, _ in data_files(staged)} & set(inputs)
    after = assert_agrees(staged)
    assert {k: after.value(k) for k in after.live(now_ms)} == expected
