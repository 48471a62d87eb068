"""A store carried across fork(): the child reads the state at the fork and never
writes, seals or unlocks the parent's files (bitcask/_db_lifecycle.py, "fork()")."""

from __future__ import annotations

import json
import os
import time
from collections.abc import Callable
from pathlib import Path

import pytest

import bitcask
from bitcask import Bitcask, StoreClosedError, StoreLockedError

pytestmark = pytest.mark.skipif(not hasattr(os, "fork"), reason="needs os.fork")


def _outcome(call: Callable[[], object]) -> str:
    try:
        result = call()
    except Exception as exc:  # the child reports what it got, whatever it is
        return type(exc).__name__
    return repr(result)


def _in_child(steps: dict[str, Callable[[], object]]) -> dict[str, str]:
    """Run ``steps`` in order in a forked child; return what each returned or raised
    (the child is killed after 30 s, so a hang fails the test instead of blocking)."""
    r, w = os.pipe()
    pid = os.fork()
    if pid == 0:  # pragma: no cover - runs in the child
        os.close(r)
        out = {name: _outcome(step) for name, step in steps.items()}
        os.write(w, json.dumps(out).encode())
        os._exit(0)
    os.close(w)
    deadline = time.monotonic() + 30
    while os.waitpid(pid, os.WNOHANG) == (0, 0):
        if time.monotonic() > deadline:
            os.kill(pid, 9)
            os.waitpid(pid, 0)
            pytest.fail("the forked child hung")
        time.sleep(0.01)
    with os.fdopen(r, "rb") as f:
        data = f.read()
    return json.loads(data) if data else {}


def test_a_forked_child_reads_the_fork_state_and_refuses_writes(tmp_path: Path) -> None:
    db = bitcask.open(tmp_path, sync="always")
    try:
        db.put(b"a", b"1")
        got = _in_child(
            {
                "get": lambda: db.get(b"a"),
                "keys": lambda: list(db.keys()),
                "put": lambda: db.put(b"b", b"child"),
                "delete": lambda: db.delete(b"a"),
                "write_batch": lambda: db.write_batch([("put", b"b", b"child")]),
                "incr": lambda: db.incr(b"n"),
                "watch": lambda: db.watch(b"a"),
                "merge": lambda: db.merge(),
                "backup": lambda: db.backup(tmp_path / "copy"),
                "sync": lambda: db.sync(),
                "reason": lambda: "fork" in (db.readonly_reason or ""),
                "stats_readonly": lambda: db.stats()["readonly"],
                "close": lambda: db.close(),
                "get_after_close": lambda: db.get(b"a"),
            }
        )
        assert got == {
            "get": "b'1'",
            "keys": "[b'a']",
            "put": "ReadOnlyError",
            "delete": "ReadOnlyError",
            "write_batch": "ReadOnlyError",
            "incr": "ReadOnlyError",
            "watch": "ReadOnlyError",
            "merge": "ReadOnlyError",
            "backup": "ReadOnlyError",
            "sync": "None",
            "reason": "True",
            "stats_readonly": "True",
            "close": "None",
            "get_after_close": "StoreClosedError",
        }
        assert not (tmp_path / "copy").exists()
        db.put(b"c", b"3")
        assert db.get(b"a") == b"1" and db.get(b"b") is None and db.get(b"c") == b"3"
    finally:
        db.close()
    with bitcask.open(tmp_path) as again:
        assert dict(again.items()) == {b"a": b"1", b"c": b"3"}
        assert again.recovery.corrupt_records == 0


def test_a_child_closing_its_copy_keeps_the_parents_lock_and_files(tmp_path: Path) -> None:
    # Before: the child's close unlocked the store (flock is shared with the parent)
    # and sealed the parent's active file, so a second writer opened it and the
    # parent's next put read back as CorruptRecordError.
    db = bitcask.open(tmp_path, sync="never")
    try:
        for i in range(100):
            db.put(b"k%d" % i, b"v" * 100)
        assert _in_child({"close": db.close}) == {"close": "None"}
        with pytest.raises(StoreLockedError):
            bitcask.open(tmp_path)
        db.put(b"k2", b"parent")
        assert db.get(b"k2") == b"parent"
    finally:
        db.close()
    with bitcask.open(tmp_path) as again:
        assert again.get(b"k2") == b"parent" and len(again) == 100
        assert again.recovery.corrupt_records == 0


def test_locks_held_by_a_parent_thread_at_the_fork_do_not_hang_the_child(
    tmp_path: Path,
) -> None:
    db: Bitcask = bitcask.open(tmp_path, sync="never")
    try:
        db.put(b"a", b"1")
        db.scan()  # builds the sorted index, so scans take its lock
        # As if a parent thread were inside a write, a scan and a merge at the fork.
        held = [db.writer.lock, db.keydir._index_lock, db.merges.lock]
        for lock in held:
            lock.acquire()
        try:
            got = _in_child(
                {
                    "put": lambda: db.put(b"b", b"2"),
                    "scan": lambda: db.scan(),
                    "expire_sample": lambda: db.expire_sample(),
                    "close": lambda: db.close(),
                }
            )
        finally:
            for lock in held:
                lock.release()
        assert got == {
            "put": "ReadOnlyError",
            "scan": "[b'a']",
            "expire_sample": "0",
            "close": "None",
        }
        db.put(b"b", b"2")
        assert db.scan() == [b"a", b"b"]
    finally:
        db.close()


def test_a_readonly_store_in_a_forked_child_reads_and_closes(tmp_path: Path) -> None:
    with bitcask.open(tmp_path, sync="never") as writer:
        writer.put(b"a", b"1")
    ro = bitcask.open(tmp_path, readonly=True)
    try:
        got = _in_child({"get": lambda: ro.get(b"a"), "close": ro.close})
        assert got == {"get": "b'1'", "close": "None"}
        assert ro.get(b"a") == b"1"
    finally:
        ro.close()
    with pytest.raises(StoreClosedError):
        ro.get(b"a")
