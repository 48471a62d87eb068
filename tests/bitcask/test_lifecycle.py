"""The store's long-running life: merges that fail part way, descriptors, disk space."""

from __future__ import annotations

import errno
import os
import resource
import subprocess
import sys
import threading
import tracemalloc
from pathlib import Path

import pytest

import bitcask
from bitcask import _io, _merge_swap, merge
from bitcask._datafile import data_name, list_data_files
from bitcask._record import HEADER_SIZE
from tests.bitcask._damage import flip, records

FD_DIR = Path("/proc/self/fd")
needs_proc = pytest.mark.skipif(not FD_DIR.is_dir(), reason="needs /proc/self/fd (Linux)")


def open_paths() -> list[str]:
    """What every descriptor of this process names (a deleted file ends "(deleted)")."""
    out = []
    for fd in os.listdir(FD_DIR):
        try:
            out.append(os.readlink(FD_DIR / fd))
        except OSError:  # the listing's own descriptor, closed since
            pass
    return out


def in_merge_dir(fd: int) -> bool:
    try:
        return os.path.basename(os.path.dirname(os.readlink(FD_DIR / str(fd)))) == "merge"
    except OSError:
        return False


@needs_proc
@pytest.mark.parametrize("fail", ["write", "fsync"])
def test_a_failed_merge_leaves_no_output_open(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, fail: str
) -> None:
    # A full disk (ENOSPC) or EIO while the merge writes its outputs: the merge fails
    # and deletes merge/, but it used to keep the descriptor of every output it had
    # opened, so the deleted files kept their blocks until the process exited. On a
    # full disk, the merge meant to free space held more of it at each retry.
    db = bitcask.open(tmp_path, sync="never", max_file_size=4096, merge_trigger=0)
    for i in range(400):
        db.put(b"k%03d" % (i % 200), b"v%03d" % i + b"." * 60)
    want = dict(db.items())
    real_write, real_fsync = _io.write, _io.fsync
    calls = 0

    def failing(fd: object, *args: object) -> None:
        nonlocal calls
        if isinstance(fd, int) and in_merge_dir(fd):
            calls += 1
            if calls >= 3:  # some outputs are written (and open) by then
                code = errno.ENOSPC if fail == "write" else errno.EIO
                raise OSError(code, os.strerror(code))
        (real_write if fail == "write" else real_fsync)(fd, *args)  # type: ignore[arg-type]

    monkeypatch.setattr(_io, fail, failing)
    for _ in range(3):
        with pytest.raises(OSError):
            db.merge()
    monkeypatch.undo()
    assert calls >= 3
    merge_dir = str(tmp_path / merge.MERGE_DIR)
    assert [p for p in open_paths() if p.startswith(merge_dir)] == []
    assert not os.path.exists(merge_dir)
    assert dict(db.items()) == want
    assert db.stats()["disk"]["state"] == "ok"  # a merge's own failure stops no write
    db.put(b"k000", b"new")
    want[b"k000"] = b"new"
    report = db.merge()
    assert report.records_copied == 200
    db.close()
    with bitcask.open(tmp_path) as db:
        assert dict(db.items()) == want


# A store of many small files, and a child process under a low descriptor limit.
_MANY = 300
_CHILD = """
import os, resource, sys
import bitcask
try:
    db = bitcask.open(sys.argv[1], max_file_size=64)
except OSError as exc:
    print("refused", type(exc).__name__, exc.errno, exc)
    sys.exit(0)
values = dict(db.items())
assert len(values) == {n} and all(v == b"v" * 40 for v in values.values()), len(values)
for i in range(200):  # a rotation each: more files than the limit first allowed
    db.put(b"new%d" % i, b"w" * 40)
report = db.merge()
db.close()
with bitcask.open(sys.argv[1]) as db:
    assert len(db) == {n} + 200
print("served", resource.getrlimit(resource.RLIMIT_NOFILE)[0], len(report.inputs))
""".replace("{n}", str(_MANY))


def _many_files(path: Path) -> None:
    with bitcask.open(path, sync="never", max_file_size=64, merge_trigger=0) as db:
        for i in range(_MANY):
            db.put(b"k%d" % i, b"v" * 40)  # one file each
    assert len(list(path.glob("*.data"))) == _MANY


def _run_limited(path: Path, soft: int, hard: int) -> str:
    def limit() -> None:
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))

    out = subprocess.run(
        [sys.executable, "-c", _CHILD, str(path)],
        preexec_fn=limit,  # the child has no threads before exec
        capture_output=True,
        timeout=120,
        check=False,
    )
    assert out.returncode == 0, out.stderr.decode()
    return out.stdout.decode()


@pytest.mark.skipif(resource.getrlimit(resource.RLIMIT_NOFILE)[1] < 2048, reason="hard limit")
def test_a_store_of_more_files_than_the_soft_descriptor_limit_opens(tmp_path: Path) -> None:
    # Each data file stays mapped: one descriptor each. A store of more files than the
    # soft limit (1024 on most systems; 128 here) failed to open with a bare EMFILE,
    # and `bitcask merge DIR`, the way to fewer files, failed the same way. The
    # engine now raises the soft limit to the hard one, as the server does at start.
    _many_files(tmp_path)
    out = _run_limited(tmp_path, 128, 2048)
    word, soft, merged = out.split()
    assert (word, soft) == ("served", "2048") and int(merged) >= _MANY + 199


def test_a_hard_descriptor_limit_too_low_for_the_store_is_named(tmp_path: Path) -> None:
    _many_files(tmp_path)
    out = _run_limited(tmp_path, 128, 128)
    assert out.startswith(f"refused StoreIOError {errno.EMFILE} ")
    assert f"it has {_MANY} data files" in out and "may open 128 (RLIMIT_NOFILE)" in out


class Clock:
    def __init__(self) -> None:
        self.now = 1_700_000_000.0

    def __call__(self) -> float:
        return self.now


def test_writes_go_on_while_a_merge_points_the_keydir_at_its_outputs(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The merge used to point every copied key at its output in one hold of the write
    # lock: every write stalled for the whole loop (0.46 s a merge at 1,000,000 keys).
    # Now it takes the lock a slice at a time; a write made between two slices (an
    # overwrite, a delete, a new key, a key the merge found expired) must win over
    # what the merge copied, then and after a reopen.
    clock = Clock()
    db = bitcask.open(tmp_path, sync="never", max_file_size=4096, merge_trigger=0, clock=clock)
    for i in range(300):
        db.put(b"k%03d" % i, b"old%03d" % i + b"." * 40, ttl=10 if i % 10 == 0 else None)
    for i in range(0, 300, 3):
        db.put(b"k%03d" % i, b"new%03d" % i + b"." * 40)  # dead bytes to drop
    clock.now += 60  # k010, k020, ... (not overwritten) have expired
    want = {k: v for k, v in db.items()}
    ops = iter(range(300))
    slices = 0

    def write_between_slices() -> None:
        nonlocal slices
        slices += 1
        for _ in range(3):
            i = next(ops, None)
            if i is None:
                return
            key = b"k%03d" % i
            if i % 4 == 0:
                writer = threading.Thread(target=db.delete, args=(key,))
                want.pop(key, None)
            else:
                value = b"mid%03d" % i
                writer = threading.Thread(target=db.put, args=(key, value))
                want[key] = value
            writer.start()
            writer.join(10)  # the merge holds no lock here: this returns at once
            assert not writer.is_alive()

    monkeypatch.setattr(_merge_swap, "_INSTALL_STEP", 16)
    monkeypatch.setattr(_merge_swap, "_yield_lock", write_between_slices)
    report = db.merge()
    assert report.expired_dropped == 20 and slices > 10
    assert dict(db.items()) == want
    assert db.expiring_keys() == 0
    db.close()
    with bitcask.open(tmp_path, clock=clock) as db:
        assert dict(db.items()) == want
    assert bitcask.check(tmp_path).ok


def test_a_merge_needs_a_few_hundred_bytes_a_key_beside_the_keydir(tmp_path: Path) -> None:
    # The merge kept a 7-tuple per record copied (for the output's hint) and another
    # tuple per key (old and new location): about 540 bytes a key of 8 bytes on top of
    # the keydir, more than 4 times the keydir itself (a merge of 1,000,000 keys
    # peaked 590 MiB above the store's 220). Now an output's hint journal holds the
    # locations the keydir is pointed at: about 280 bytes a key, the hint's encoding
    # included. Python allocations traced, not RSS (mapped file pages are not counted).
    n = 20_000
    with bitcask.open(tmp_path, sync="never", merge_trigger=0, max_file_size=1 << 20) as db:
        db.write_batch([("put", b"key:%08d" % i, b"v" * 20) for i in range(n)])
        db.write_batch([("put", b"key:%08d" % i, b"w" * 20) for i in range(0, n, 2)])
        tracemalloc.start()
        try:
            base = tracemalloc.get_traced_memory()[0]
            tracemalloc.reset_peak()
            report = db.merge()
            peak = tracemalloc.get_traced_memory()[1]
        finally:
            tracemalloc.stop()
        assert report.records_copied == n
        assert (peak - base) / n < 400
        assert db.get(b"key:00000002") == b"w" * 20 and db.get(b"key:00000003") == b"v" * 20


def test_an_input_left_out_part_way_leaves_nothing_of_it_in_the_outputs_hints(
    tmp_path: Path,
) -> None:
    # The merge copies a file's records before it meets the damaged one at its end,
    # then rolls them back: the outputs' data and hint entries (kept as the outputs'
    # hint journals) must both end where the previous file ended.
    keys = [b"key:%02d" % i for i in range(18)]
    with bitcask.open(tmp_path, sync="never", max_file_size=4096, merge_trigger=0) as db:
        for part in (keys[:6], keys[6:12], keys[12:]):  # three files, one output
            for key in part:
                db.put(key, key + b"." * 20)
            with db._lock:
                db._rotate()
    fids = list_data_files(str(tmp_path))
    victim = tmp_path / data_name(fids[1])
    recs = list(records(victim))
    assert len(recs) == 6
    flip(victim, recs[-1].offset + HEADER_SIZE + len(recs[-1].key) + 1)  # its last value

    def answers(hints: bool) -> dict[bytes, bytes | str | None]:
        out: dict[bytes, bytes | str | None] = {}
        with bitcask.open(tmp_path, readonly=True, hint_files=hints) as db:
            for key in keys:
                try:
                    out[key] = db.get(key)
                except bitcask.CorruptRecordError:
                    out[key] = "corrupt"
        return out

    want = answers(hints=False)
    assert want[recs[-1].key] == "corrupt" and list(want.values()).count("corrupt") == 1
    with bitcask.open(tmp_path, sync="never", max_file_size=4096, merge_trigger=0) as db:
        report = db.merge()
    assert [fid for fid, _ in report.left_out] == [fids[1]]
    assert report.records_copied == 12 and len(report.outputs) == 1
    assert answers(hints=True) == want == answers(hints=False)


def test_clock_jumps_forward_and_back_as_docs_format_md_says(tmp_path: Path) -> None:
    clock = Clock()
    year = 365 * 86400
    with bitcask.open(tmp_path, sync="never", merge_trigger=0, clock=clock) as db:
        for i in range(10):
            db.put(b"short%d" % i, b"s", ttl=3600)
        db.put(b"long", b"l", ttl=2 * year)
        db.put(b"forever", b"f")
        exact = db.expire_at_ms(b"long")
        clock.now += year  # every short TTL passes at once
        assert len(db) == 2 and db.get(b"short1") is None
        assert db.expire_sample(4) == 4  # reclaimed from memory only
        report = db.merge()
        assert (report.expired_dropped, report.records_dropped) == (6, 10)
        assert report.records_copied == 2
        clock.now -= year  # back: what the merge dropped stays gone
        assert [db.get(b"short%d" % i) for i in range(10)] == [None] * 10
    with bitcask.open(tmp_path, sync="never", clock=clock) as db:
        assert db.recovery.hinted_files >= 1  # the merge output's hint
        assert db.expire_at_ms(b"long") == exact  # the hint carries the expiry
        assert dict(db.items()) == {b"long": b"l", b"forever": b"f"}
    # Reclaimed from memory only (no merge): back at the next open once the clock is.
    with bitcask.open(tmp_path, sync="never", merge_trigger=0, clock=clock) as db:
        db.put(b"t", b"v", ttl=3600)
        clock.now += year
        assert db.expire_sample(100) == 1 and db.stored_keys() == 2
        clock.now -= year
        assert db.get(b"t") is None  # gone from memory
    with bitcask.open(tmp_path, sync="never", clock=clock) as db:
        assert db.get(b"t") == b"v"  # the record is on disk and not expired by this clock
