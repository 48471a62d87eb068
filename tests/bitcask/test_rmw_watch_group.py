"""Watches against writes of the same group commit, and against readers: two fixes
found by the server's transactions (tests/server/test_rmw_methods.py)."""

from __future__ import annotations

from pathlib import Path

import pytest

import bitcask


@pytest.fixture
def db(tmp_path: Path) -> bitcask.Bitcask:
    store = bitcask.open(tmp_path / "db")
    yield store  # type: ignore[misc]
    store.close()


def test_a_watch_sees_a_write_of_an_earlier_batch_of_the_same_group(db: bitcask.Bitcask) -> None:
    db.put(b"n", b"0")
    first, second = db.watch(b"n"), db.watch(b"n")
    got = db.write_planned([[("put", b"n", b"1")], [("put", b"n", b"1")]], [first, second])
    assert got == [[None], None]  # both read 0: only the first may write 1
    assert db.get(b"n") == b"1"
    first.release()
    second.release()


def test_a_refused_batch_does_not_count_as_a_write(db: bitcask.Bitcask) -> None:
    w0, w1, w2 = db.watch(b"n"), db.watch(b"n"), db.watch(b"n")
    db.put(b"n", b"x")  # w0 and w1 see this
    got = db.write_planned([[("put", b"n", b"1")], [("put", b"n", b"2")]], [w1, w2])
    assert got == [None, None]
    for w in (w0, w1, w2):
        w.release()


@pytest.mark.parametrize("batch", [False, True], ids=["put", "write_batch"])
def test_a_write_is_counted_only_once_readers_see_it(db: bitcask.Bitcask, batch: bool) -> None:
    # A watch taken between the count and the keydir update would pair a counted
    # write with the old value: the count must come after the value is visible.
    watches = db._watches
    bump = watches.bump
    seen: list[bytes | None] = []

    def spy(keys: object) -> None:
        seen.append(db.get(b"k"))
        bump(keys)  # type: ignore[arg-type]

    watches.bump = spy  # type: ignore[method-assign]
    with db.watch(b"k"):
        if batch:
            db.write_batch([("put", b"k", b"new"), ("delete", b"other")])
        else:
            db.put(b"k", b"new")
    assert seen == [b"new"]
