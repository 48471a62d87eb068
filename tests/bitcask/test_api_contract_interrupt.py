"""An interrupt (Ctrl-C's KeyboardInterrupt, a signal handler's exception) raised inside
a write: the write is taken back whole, and the store stays writable and consistent.

A signal's Python handler runs at the first check after the system call it arrived
in, so each test makes one system call of the write path raise KeyboardInterrupt
after it has done its work, which is exactly where a real Ctrl-C lands (under
sync="always" nearly every Ctrl-C of a write loop lands right after the fsync).
"""

from __future__ import annotations

import os
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

import bitcask
from bitcask import _active, _io


def _interrupt_once_after(
    real: Callable[..., Any], when: Callable[..., bool]
) -> Callable[..., Any]:
    state = {"armed": True}

    def call(*args: Any) -> Any:
        result = real(*args)
        if state["armed"] and when(*args):
            state["armed"] = False
            raise KeyboardInterrupt
        return result

    return call


def _views(path: Path) -> tuple[dict[bytes, bytes], dict[bytes, bytes]]:
    """The store as a writer open reads it (hints) and as a scan of every file reads it."""
    with bitcask.open(path) as db:
        hinted = dict(db.items())
        assert db.recovery.corrupt_records == 0
    with bitcask.open(path, readonly=True, hint_files=False) as ro:
        scanned = dict(ro.items())
    return hinted, scanned


@pytest.mark.parametrize(
    "write",
    [
        pytest.param(lambda db: db.put(b"k", b"new"), id="put"),
        pytest.param(
            lambda db: db.write_batch([("put", b"k", b"new"), ("delete", b"gone")]), id="batch"
        ),
        pytest.param(lambda db: db.delete(b"gone"), id="delete"),
    ],
)
def test_an_interrupt_at_the_fsync_takes_the_write_back(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, write: Callable[[bitcask.Bitcask], object]
) -> None:
    # Before: the record stayed in the file, unpublished and missing from the hint,
    # so the store read differently in memory, after a reopen (hints) and after a
    # scan (hint_files=False, a merge, check): b"gone" was deleted in one only.
    db = bitcask.open(tmp_path, sync="always")
    try:
        db.write_batch([("put", b"k", b"old"), ("put", b"gone", b"x")])
        monkeypatch.setattr(_io, "fsync", _interrupt_once_after(_io.fsync, lambda fd: True))
        with pytest.raises(KeyboardInterrupt):
            write(db)
        assert dict(db.items()) == {b"k": b"old", b"gone": b"x"}
        db.put(b"after", b"1")
    finally:
        db.close()
    hinted, scanned = _views(tmp_path)
    assert hinted == scanned == {b"k": b"old", b"gone": b"x", b"after": b"1"}


def test_an_interrupt_between_the_copies_of_a_batch_leaves_nothing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A buffer of several records is copied body first, CRC last: interrupted in
    # between, the body was left after the end, for a crash to read back.
    db = bitcask.open(tmp_path, sync="never")
    try:
        db.put(b"a", b"1")
        real_min = min
        state = {"armed": True}

        def interrupted_min(*args: Any) -> Any:
            if state["armed"]:
                state["armed"] = False
                raise KeyboardInterrupt
            return real_min(*args)

        monkeypatch.setattr(_active, "min", interrupted_min, raising=False)
        end = db.files.offset
        with pytest.raises(KeyboardInterrupt):
            db.write_batch([("put", b"b", b"2"), ("put", b"c", b"3")])
        monkeypatch.undo()
        active = db.files.entries[db.files.active_id][0]
        assert active is not None and bytes(active[end : end + 200]) == bytes(200)
        db.put(b"d", b"4")
        db._abandon()  # a crash: the next open scans the flagged file
    finally:
        db.close()
    hinted, scanned = _views(tmp_path)
    assert hinted == scanned == {b"a": b"1", b"d": b"4"}


def test_an_interrupt_in_a_rotation_leaves_the_store_writable(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Before: a Ctrl-C at the seal's truncate left the rotation half done: puts went
    # into the new file under the old file's id (read back as b"" or corrupt) and
    # the next rotation failed with FileExistsError, the store read-only for good.
    armed = {"on": False}
    monkeypatch.setattr(
        _active.os, "ftruncate", _interrupt_once_after(os.ftruncate, lambda fd, size: armed["on"])
    )
    values = {}
    with bitcask.open(tmp_path, sync="never", max_file_size=4096) as db:
        armed["on"] = True
        interrupted = 0
        for i in range(60):
            key = b"k%02d" % i
            try:
                db.put(key, b"%d" % i * 100)
            except KeyboardInterrupt:
                interrupted += 1
                continue
            values[key] = b"%d" % i * 100
        assert interrupted == 1
        assert dict(db.items()) == values
        assert db.readonly_reason is None
    hinted, scanned = _views(tmp_path)
    assert hinted == scanned == values


def test_an_interrupt_right_after_creating_the_next_file_leaves_the_store_writable(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Before: the new data file was left behind (its descriptor lost) and every
    # later rotation failed on it with FileExistsError.
    def creates_a_data_file(path: str, flags: int, *mode: int) -> bool:
        return path.endswith(".data") and bool(flags & os.O_EXCL)

    values = {}
    with bitcask.open(tmp_path, sync="never", max_file_size=4096) as db:
        monkeypatch.setattr(_active.os, "open", _interrupt_once_after(os.open, creates_a_data_file))
        for i in range(60):
            key = b"k%02d" % i
            try:
                db.put(key, b"v" * 500)
            except KeyboardInterrupt:
                continue
            values[key] = b"v" * 500
        assert len(values) == 59 and dict(db.items()) == values
        assert db.readonly_reason is None
    hinted, scanned = _views(tmp_path)
    assert hinted == scanned == values


def test_an_interrupt_while_the_active_file_grows_takes_the_put_back(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    with bitcask.open(tmp_path, sync="never") as db:
        db.put(b"a", b"1")
        monkeypatch.setattr(_io, "reserve", _interrupt_once_after(_io.reserve, lambda *a: True))
        with pytest.raises(KeyboardInterrupt):
            db.put(b"big", b"x" * (1 << 20))  # past the first reservation: it grows
        assert db.get(b"big") is None
        db.put(b"big", b"y" * (1 << 20))
    hinted, scanned = _views(tmp_path)
    assert hinted == scanned == {b"a": b"1", b"big": b"y" * (1 << 20)}


def test_a_close_interrupted_at_its_fsync_is_finished_by_the_next_close(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Before: the second close() returned at once and the store stayed locked for
    # the rest of the process (a with-block left by a second Ctrl-C, in a notebook).
    db = bitcask.open(tmp_path, sync="always")
    db.put(b"k", b"v")
    monkeypatch.setattr(_io, "fsync", _interrupt_once_after(_io.fsync, lambda fd: True))
    with pytest.raises(KeyboardInterrupt):
        db.close()
    db.close()
    with pytest.raises(bitcask.StoreClosedError):
        db.get(b"k")
    with bitcask.open(tmp_path) as again:
        assert again.get(b"k") == b"v"


@pytest.mark.parametrize(
    ("step", "write"),
    [
        pytest.param("_publish", lambda db: db.put(b"k", b"new"), id="put"),
        pytest.param(
            "_publish_puts",
            lambda db: db.write_batch([("put", b"k", b"new"), ("put", b"k2", b"new")]),
            id="batch",
        ),
        pytest.param(
            "_publish_puts", lambda db: db.write_group([[("put", b"k", b"new")]]), id="group"
        ),
        # The one-key writes publish as put does (bitcask/_single.py).
        pytest.param("_publish", lambda db: db.incr(b"n"), id="incr"),
        pytest.param("_publish_removal", lambda db: db.delete(b"k"), id="delete"),
        pytest.param("_publish_removal", lambda db: db.get_delete(b"k"), id="get_delete"),
    ],
)
def test_an_interrupt_after_the_append_stops_writes_until_a_reopen_that_agrees(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    step: str,
    write: Callable[[bitcask.Bitcask], object],
) -> None:
    # An interrupt at the publish (no system call there: under sync="never" one
    # Ctrl-C in ~13 of a write loop) left the record in the file and out of the
    # keydir and the hint, so a scan open read another store than a hinted one.
    db = bitcask.open(tmp_path, sync="never")
    try:
        db.put(b"k", b"old")
        real = getattr(db.writer, step)

        def interrupted(*args: Any) -> Any:
            monkeypatch.setattr(db.writer, step, real)
            raise KeyboardInterrupt

        monkeypatch.setattr(db.writer, step, interrupted)
        with pytest.raises(KeyboardInterrupt):
            write(db)
        assert "interrupted" in (db.readonly_reason or "")
        with pytest.raises(bitcask.ReadOnlyError):
            db.put(b"other", b"1")
        assert db.get(b"k") == b"old"  # reads go on
    finally:
        db.close()
    hinted, scanned = _views(tmp_path)
    assert hinted == scanned  # the write reached the file: both read it
    with bitcask.open(tmp_path) as again:
        assert again.readonly_reason is None
        again.put(b"other", b"1")


def test_an_exception_before_the_append_leaves_the_store_writable(tmp_path: Path) -> None:
    with bitcask.open(tmp_path, sync="never", max_keys=1) as db:
        db.put(b"a", b"1")
        with pytest.raises(bitcask.StoreFullError):
            db.put(b"b", b"2")
        with pytest.raises(bitcask.StoreFullError):
            db.write_batch([("put", b"b", b"2"), ("put", b"c", b"3")])
        assert db.readonly_reason is None
        db.put(b"a", b"2")
        assert db.get(b"a") == b"2"


class _InterruptedAsAcquired:
    """The store's lock, but the first acquire() takes it and then raises
    KeyboardInterrupt, as the eval loop does when a signal's handler runs as the
    call returns."""

    def __init__(self, real: Any) -> None:
        self.real = real
        self.armed = True

    def acquire(self, *args: Any) -> bool:
        got = self.real.acquire(*args)
        if self.armed:
            self.armed = False
            raise KeyboardInterrupt
        return bool(got)

    def release(self) -> None:
        self.real.release()

    def _is_owned(self) -> bool:
        return bool(self.real._is_owned())


@pytest.mark.parametrize(
    "write",
    [
        pytest.param(lambda db: db.put(b"k", b"v"), id="put"),
        pytest.param(lambda db: db.write_batch([("put", b"k", b"v")]), id="batch"),
        pytest.param(lambda db: db.write_group([[("put", b"k", b"v")]]), id="group"),
        pytest.param(lambda db: db.incr(b"n"), id="incr"),
    ],
)
def test_an_interrupt_as_the_write_lock_is_taken_does_not_keep_it(
    tmp_path: Path, write: Callable[[bitcask.Bitcask], object]
) -> None:
    # Before: about one Ctrl-C in 100 of a sync="never" put loop landed between
    # lock.acquire() and the try that releases it: the next write and close() hung.
    db = bitcask.open(tmp_path, sync="never")
    real = db.writer._lock
    db.writer._lock = _InterruptedAsAcquired(real)  # type: ignore[assignment]
    try:
        with pytest.raises(KeyboardInterrupt):
            write(db)
        assert not real._is_owned(), "the write lock was left held"
        got: list[bool] = []

        def take() -> None:  # another thread: an RLock lets its owner in again
            got.append(real.acquire(timeout=5))
            if got[-1]:
                real.release()

        taker = threading.Thread(target=take)
        taker.start()
        taker.join(10)
        assert got == [True]
        db.writer._lock = real
        db.put(b"after", b"1")
    finally:
        db.writer._lock = real
        db.close()
    with bitcask.open(tmp_path) as again:
        assert again.get(b"after") == b"1"


def test_an_interrupt_while_waiting_for_the_write_lock_leaves_it_to_its_holder(
    tmp_path: Path,
) -> None:
    # The other case of an interrupt at acquire(): raised while waiting, without the
    # lock. Releasing it then would let two writers in at once.
    with bitcask.open(tmp_path, sync="never") as db:
        real = db.writer._lock
        holding, done = threading.Event(), threading.Event()
        released: list[bool] = []

        def holder() -> None:
            with real:
                holding.set()
                done.wait(10)
                released.append(True)

        class _InterruptedWhileWaiting:
            def acquire(self, *args: Any) -> bool:
                raise KeyboardInterrupt

            def release(self) -> None:
                real.release()

        t = threading.Thread(target=holder)
        t.start()
        assert holding.wait(10)
        db.writer._lock = _InterruptedWhileWaiting()  # type: ignore[assignment]
        try:
            with pytest.raises(KeyboardInterrupt):
                db.put(b"k", b"v")
            assert not real.acquire(blocking=False), "the holder's lock was released"
        finally:
            db.writer._lock = real
            done.set()
            t.join(10)
        assert released == [True]  # the holder released its own lock, no RuntimeError
        db.put(b"k", b"v")
        assert db.get(b"k") == b"v"
