"""Resource bounds of the engine: descriptors at the limit, O(1) counts.

Each test runs real stores in tmp_path; the descriptor tests run a child process under
a lowered RLIMIT_NOFILE (soft = hard, so the engine cannot raise it).
"""

from __future__ import annotations

import resource
import subprocess
import sys
import threading
from pathlib import Path

import bitcask
from bitcask import snapshot

# A store under sync="never" that rotated (files sealed, never fsynced), then a process
# at its descriptor limit: sync() must still make every write durable and leave the
# store writable.
_SYNC_AT_LIMIT = """
import errno, os, sys
import bitcask
db = bitcask.open(sys.argv[1], sync="never", max_file_size=64, merge_trigger=0)
for i in range(20):
    db.put(b"k%d" % i, b"v" * 40)  # a rotation each
held = []
try:
    while True:
        held.append(os.open(os.devnull, os.O_RDONLY))
except OSError as exc:
    assert exc.errno == errno.EMFILE, exc
try:
    db.sync()
    print("synced")
except OSError as exc:
    print("sync-failed", exc.errno)
for fd in held:  # descriptors again: the next put (a rotation) needs some
    os.close(fd)
db.put(b"after", b"x")
print("writable", db.get(b"after"))
db.close()
with bitcask.open(sys.argv[1]) as db:
    print("keys", len(db))
"""


def _run_limited(code: str, path: Path, limit: int) -> str:
    def lower() -> None:
        resource.setrlimit(resource.RLIMIT_NOFILE, (limit, limit))

    out = subprocess.run(
        [sys.executable, "-c", code, str(path)],
        preexec_fn=lower,  # the child has no threads before exec
        capture_output=True,
        timeout=60,
        check=False,
    )
    assert out.returncode == 0, out.stderr.decode()
    return out.stdout.decode()


def test_sync_at_the_descriptor_limit_keeps_the_store_writable(tmp_path: Path) -> None:
    # sync() under never opened every sealed file (and the directory) to fsync it: at
    # the descriptor limit the open raised EMFILE, taken as a failed fsync, and the
    # store turned read-only (every later write refused until reopen).
    out = _run_limited(_SYNC_AT_LIMIT, tmp_path, 256)
    assert out.split("\n")[:3] == ["synced", "writable b'x'", "keys 21"]


def _drain(db: bitcask.Bitcask) -> None:
    """Wait until the background worker ran every task queued so far (auto-merges)."""
    done = threading.Event()
    db.writer.tasks.put(done.set)
    assert done.wait(30)


def test_auto_merge_does_not_rerun_on_dead_bytes_it_cannot_reclaim(tmp_path: Path) -> None:
    # While a snapshot pins the old files, every tombstone of a key whose value sits
    # in them must stay, and so do those values: dead bytes no merge can reclaim.
    # The trigger counted them, so every rotation queued another full merge that
    # reclaimed nothing (one per rotation, back to back under load). It now counts
    # only dead bytes past what the last merge had to leave, until the files a merge
    # may not take change (the snapshot released: then it merges them away).
    with bitcask.open(
        tmp_path, sync="never", max_file_size=4096, merge_trigger=0.5, merge_min_dead_bytes=1
    ) as db:
        for i in range(300):
            db.put(b"old%d" % i, b"v" * 50)
        snap = snapshot.take_snapshot(db, "test")
        for i in range(300):
            db.delete(b"old%d" % i)
        _drain(db)
        before = db.stats()["merges"]
        rotations = 0
        for i in range(400):  # fresh keys only: no dead byte a merge could reclaim
            files = db.data_files()
            db.put(b"new%d" % i, b"w" * 50)
            rotations += db.data_files() > files
            _drain(db)
        merges = db.stats()["merges"] - before
        assert rotations >= 8 and merges <= 1, (rotations, merges)
        snapshot.release(db, snap.id)
        dead = db.stats()["dead_bytes"]
        for i in range(100):  # a rotation: the pinned files may be merged now
            db.put(b"more%d" % i, b"w" * 50)
        _drain(db)
        assert db.stats()["merges"] > before + merges
        assert db.stats()["dead_bytes"] < dead // 4
        assert len(db) == 500
