"""Resource bounds of the engine: descriptors at the limit, O(1) counts.

Each test runs real stores in tmp_path; the descriptor tests run a child process under
a lowered RLIMIT_NOFILE (soft = hard, so the engine cannot raise it).
"""

from __future__ import annotations

import random
import resource
import subprocess
import sys
import threading
from pathlib import Path

import pytest

import bitcask
from bitcask import _expiry, _publish, snapshot
from tests.bitcask.conftest import Clock

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


def _visible(db: bitcask.Bitcask, now_ms: float) -> int:
    """len(db) the slow way: every key, its expiry read from the store."""
    count = 0
    for key in list(db._kmap):
        exp = db._kd.expiry.get(key)
        count += exp is None or exp > now_ms
    return count


@pytest.mark.parametrize("small", [False, True], ids=["default-bounds", "tiny-bounds"])
def test_len_stays_exact_without_walking_the_ttl_keys(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, small: bool
) -> None:
    # len(db) and stats()["keys"] walked every key with a TTL (50 ms at 1,000,000
    # keys, at every metrics scrape, INFO and /health). They now reclaim the keys
    # whose time has come from a heap of the expiries, which the writer feeds; the
    # answer must stay exact through every way an expiry changes, and when the heap
    # or the writer's log outgrow their bounds and are rebuilt (tiny-bounds).
    if small:
        monkeypatch.setattr(_publish, "DUE_LOG_MAX", 5)
        monkeypatch.setattr(_expiry, "DUE_SLACK", 3)
    clock = Clock()
    rng = random.Random(7)
    with bitcask.open(tmp_path, sync="never", clock=clock, max_file_size=8192) as db:
        assert len(db) == 0
        for step in range(3000):
            key = b"k%d" % rng.randrange(200)
            roll = rng.random()
            if roll < 0.35:
                db.put(key, b"v", ttl=rng.choice([1, 5, 30, 300]))
            elif roll < 0.45:
                db.put(key, b"v")
            elif roll < 0.55:
                db.expire(key, rng.choice([0.5, 2, 60]))  # shortened or lengthened
            elif roll < 0.6:
                db.persist(key)
            elif roll < 0.7:
                db.delete(key)
            elif roll < 0.75:
                db.write_batch([("put", key, b"b", 3), ("put", key + b"x", b"c", 1)])
            elif roll < 0.8:
                db.expire_sample(5)
            elif roll < 0.81:
                db.merge()
            if step % 7 == 0:
                clock.now += rng.choice([0.2, 1, 3])
            if step % 3 == 0:
                want = _visible(db, clock.now * 1000)
                assert len(db) == want == db.stats()["keys"], step
        clock.now += 1000
        assert len(db) == _visible(db, clock.now * 1000)
        stored = db.stored_keys()
        assert stored > len(db)  # a count reclaims nothing: the sampler does
        while db.expire_sample(100):
            pass
        assert db.stored_keys() == len(db) < stored
