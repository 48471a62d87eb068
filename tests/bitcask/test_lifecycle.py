"""The store's long-running life: merges that fail part way, descriptors, disk space."""

from __future__ import annotations

import errno
import os
from pathlib import Path

import pytest

import bitcask
from bitcask import _io, merge

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
