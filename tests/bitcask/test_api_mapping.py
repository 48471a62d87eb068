"""The store as a dict/dbm/shelve user reaches for it (bitcask/_db_mapping.py): the
dict methods it has, the ones it refuses with one clear error, and what it is not
(a MutableMapping: keys()/items()/values() are iterators in key order, not views)."""

from __future__ import annotations

import collections.abc
import copy
import datetime
import os
import pickle
import stat
import threading
from pathlib import Path
from typing import Any

import pytest

import bitcask
from bitcask import Bitcask, StoreClosedError

from .conftest import Clock


def test_get_takes_a_default_as_dict_get_does(db: Bitcask, clock: Clock) -> None:
    # Before: db.get(k, default) was a TypeError (get took the key alone).
    db.put(b"a", b"1")
    db.put(b"t", b"x", ttl=5)
    assert db.get(b"a", b"d") == b"1"
    assert db.get(b"zz", b"d") == b"d"
    assert db.get(b"zz", default=0) == 0
    assert db.get(b"zz") is None
    clock.now += 5
    assert db.get(b"t", b"gone") == b"gone"  # expired: the default, as absent
    assert db.get_many([b"a", b"t"]) == [b"1", None]


def test_values_yields_in_key_order_with_a_prefix(db: Bitcask, clock: Clock) -> None:
    db.update({b"b": b"2", b"a": b"1", b"c:1": b"3", b"c:2": b"4"})
    db.put(b"c:0", b"gone", ttl=1)
    clock.now += 1
    assert list(db.values()) == [b"1", b"2", b"3", b"4"]
    assert list(db.values(b"c:")) == [b"3", b"4"]
    assert list(db.values("c:")) == [b"3", b"4"]


def test_pop_is_get_delete_with_dicts_default_and_keyerror(db: Bitcask) -> None:
    db.put(b"a", b"1")
    assert db.pop(b"a") == b"1"
    assert db.pop("a", None) is None
    assert db.pop(b"a", b"d") == b"d"
    with pytest.raises(KeyError):
        db.pop(b"a")
    assert len(db) == 0 and db.get(b"a") is None


def test_setdefault_writes_only_an_absent_key_and_returns_the_value(
    db: Bitcask, clock: Clock
) -> None:
    assert db.setdefault(b"a", b"1") == b"1"
    assert db.setdefault(b"a", b"2") == b"1"
    db.put(b"t", b"old", ttl=1)
    clock.now += 1
    assert db.setdefault("t", "new") == b"new"  # an expired key is absent
    with pytest.raises(TypeError, match="setdefault"):
        db.setdefault(b"b")  # dict's default None is no value a store can hold
    assert dict(db.items()) == {b"a": b"1", b"t": b"new"}


def test_setdefault_from_many_threads_keeps_the_first_value(db: Bitcask) -> None:
    got: list[bytes] = []

    def one(i: int) -> None:
        got.append(db.setdefault(b"k", b"%d" % i))

    threads = [threading.Thread(target=one, args=(i,)) for i in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(set(got)) == 1 and got[0] == db[b"k"]


@pytest.mark.parametrize(
    "args, kwargs",
    [
        pytest.param(({b"a": b"1", "b": "2"},), {}, id="dict"),
        pytest.param(([(b"a", b"1"), ("b", b"2")],), {}, id="pairs"),
        pytest.param((iter([(b"a", b"1"), (b"b", b"2")]),), {}, id="iterator"),
        pytest.param(({b"a": b"1"},), {"b": "2"}, id="dict+kwargs"),
        pytest.param((), {"a": b"1", "b": "2"}, id="kwargs"),
    ],
)
def test_update_takes_what_dict_update_takes(
    db: Bitcask, args: tuple[Any, ...], kwargs: dict[str, Any]
) -> None:
    db.update(*args, **kwargs)
    assert dict(db.items()) == {b"a": b"1", b"b": b"2"}


def test_update_from_another_store_and_an_object_with_keys(tmp_path: Path, db: Bitcask) -> None:
    class KeysOnly:
        def keys(self) -> list[bytes]:
            return [b"x"]

        def __getitem__(self, key: bytes) -> bytes:
            return b"from-keys"

    with bitcask.open(tmp_path / "other", sync="never") as other:
        other.update({b"a": b"1", b"b": b"2"})
        db.update(other)
    db.update(KeysOnly())
    assert dict(db.items()) == {b"a": b"1", b"b": b"2", b"x": b"from-keys"}


def test_update_is_one_batch_refused_whole(db: Bitcask) -> None:
    db.put(b"keep", b"1")
    with pytest.raises(ValueError, match=r"element #1 is not a \(key, value\) pair"):
        db.update([(b"a", b"1"), (b"b", b"2", b"3")])
    with pytest.raises(TypeError, match="value must be bytes or str"):
        db.update({b"a": b"1", b"b": 2})
    with pytest.raises(TypeError, match="positional arguments"):
        db.update({}, {})  # type: ignore[call-arg]
    assert dict(db.items()) == {b"keep": b"1"}


def test_popitem_pops_each_visible_item_once_until_empty(db: Bitcask, clock: Clock) -> None:
    db.update({b"b": b"2", b"a": b"1"})
    db.put(b"0", b"expired", ttl=1)  # first in the keydir, and not to be handed out
    db.put(b"c", b"3", ttl=100)
    clock.now += 1
    got = [db.popitem() for _ in range(3)]
    assert sorted(got) == [(b"a", b"1"), (b"b", b"2"), (b"c", b"3")]
    with pytest.raises(KeyError, match="empty"):
        db.popitem()
    assert len(db) == 0


def test_popitem_from_threads_hands_each_item_out_once(db: Bitcask) -> None:
    db.update({b"k%03d" % i: b"%d" % i for i in range(200)})
    got: list[tuple[bytes, bytes]] = []

    def drain() -> None:
        while True:
            try:
                got.append(db.popitem())
            except KeyError:
                return

    threads = [threading.Thread(target=drain) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(got) == [(b"k%03d" % i, b"%d" % i) for i in range(200)]
    assert len(db) == 0


def test_what_it_is_not_is_said_clearly(db: Bitcask) -> None:
    db.put(b"a", b"1")
    assert not isinstance(db, collections.abc.Mapping)  # iterators, not views: docs/engine.md
    with pytest.raises(TypeError, match="ascending"):
        reversed(db)  # used to call db[len(db) - 1]: "key must be bytes or str, not int"
    assert db != {b"a": b"1"}  # identity, as dbm's objects; compare dict(db.items())
    assert dict(db.items()) == {b"a": b"1"}


@pytest.mark.parametrize(
    "call",
    [
        pytest.param(pickle.dumps, id="pickle"),
        pytest.param(copy.copy, id="copy"),
        pytest.param(copy.deepcopy, id="deepcopy"),
    ],
)
def test_pickle_and_copy_are_refused_with_what_to_do(db: Bitcask, call: Any) -> None:
    # Before: pickle said "cannot pickle '_thread.lock' object", and copy.copy made a
    # second Bitcask sharing the first's files and lock: closing it unlocked the store
    # under the first.
    db.put(b"a", b"1")
    with pytest.raises(TypeError, match="reopen it by its path"):
        call(db)
    db.put(b"b", b"2")
    assert dict(db.items()) == {b"a": b"1", b"b": b"2"}


@pytest.mark.parametrize(
    "ttl, seconds",
    [
        pytest.param(datetime.timedelta(seconds=90), 90.0, id="timedelta"),
        pytest.param(datetime.timedelta(milliseconds=1500), 1.5, id="timedelta-ms"),
        pytest.param(90, 90.0, id="int"),
        pytest.param(1.5, 1.5, id="float"),
    ],
)
def test_a_ttl_is_seconds_or_a_timedelta_everywhere(
    db: Bitcask, clock: Clock, ttl: Any, seconds: float
) -> None:
    db.put(b"p", b"v", ttl=ttl)
    db.set(b"s", b"v", ttl=ttl)
    db.write_batch([("put", b"w", b"v", ttl)])
    with db.batch() as b:
        b.put(b"b", b"v", ttl=ttl)
    db.put(b"e", b"v")
    assert db.expire(b"e", ttl) is True
    want = int((clock.now + seconds) * 1000)
    assert {k: db.expire_at_ms(k) for k in [b"p", b"s", b"w", b"b", b"e"]} == dict.fromkeys(
        [b"p", b"s", b"w", b"b", b"e"], want
    )


@pytest.mark.parametrize(
    "ttl",
    [
        pytest.param(datetime.timedelta(0), id="zero"),
        pytest.param(datetime.timedelta(seconds=-1), id="negative"),
    ],
)
def test_a_timedelta_ttl_must_be_positive_too(db: Bitcask, ttl: datetime.timedelta) -> None:
    with pytest.raises(ValueError, match="positive"):
        db.put(b"k", b"v", ttl=ttl)
    assert len(db) == 0


def test_a_closed_store_refuses_the_dict_methods_and_with(tmp_path: Path) -> None:
    db = bitcask.open(tmp_path, sync="never")
    db.put(b"a", b"1")
    db.close()
    calls = {
        # Before: get of an absent key answered None (db[key] KeyError) from the keydir
        # left in memory, while a present key raised StoreClosedError.
        "get-absent": lambda: db.get(b"absent"),
        "getitem-absent": lambda: db[b"absent"],
        "get-default": lambda: db.get(b"a", b"d"),
        "values": lambda: list(db.values()),
        "pop": lambda: db.pop(b"a", None),
        "setdefault": lambda: db.setdefault(b"a", b"1"),
        "update": lambda: db.update({b"a": b"2"}),
        "popitem": db.popitem,
        "sync": db.sync,
        "expiry_stats": db.expiry_stats,
        "expiring_keys": db.expiring_keys,
        "with": lambda: db.__enter__(),
    }
    got = {}
    for name, call in calls.items():
        try:
            got[name] = repr(call())
        except Exception as exc:
            got[name] = type(exc).__name__
    assert got == dict.fromkeys(calls, "StoreClosedError")
    assert repr(db) == f"<Bitcask {str(tmp_path)!r} closed>"  # was "never keys=1"
    with bitcask.open(tmp_path) as again:
        assert dict(again.items()) == {b"a": b"1"}


def test_open_of_a_file_says_it_is_not_a_directory(tmp_path: Path) -> None:
    path = tmp_path / "file"
    path.write_bytes(b"x")
    # Before: FileExistsError "[Errno 17] File exists", for a path the user gave as a store.
    with pytest.raises(NotADirectoryError, match="not a directory"):
        bitcask.open(path)
    with pytest.raises(NotADirectoryError, match="not a directory"):
        bitcask.open(path / "sub")
    assert path.read_bytes() == b"x"


def test_store_closed_error_is_what_every_dict_method_raises_after_close_even_mid_iteration(
    tmp_path: Path,
) -> None:
    db = bitcask.open(tmp_path, sync="never")
    db.update({b"k%04d" % i: b"v" for i in range(3000)})
    it = db.values()
    next(it)
    db.close()
    with pytest.raises(StoreClosedError):
        list(it)


def test_open_and_backup_create_their_directory_for_the_owner_only_whatever_the_umask(
    tmp_path: Path,
) -> None:
    # docs/engine.md said "created (mode 0700)"; it was 0777 less the umask (0755 under
    # the usual 022, 0777 under 000): every value readable by every local user.
    existing = tmp_path / "existing"
    existing.mkdir(mode=0o755)
    existing.chmod(0o755)
    old = os.umask(0)
    try:
        with bitcask.open(tmp_path / "a" / "new", sync="never") as db:
            db.put(b"k", b"v")
        with bitcask.open(existing, sync="never") as db:
            db.put(b"k", b"v")
            db.backup(tmp_path / "backup")  # was 0777 less the umask too
    finally:
        os.umask(old)
    assert stat.S_IMODE((tmp_path / "a" / "new").stat().st_mode) == 0o700
    assert stat.S_IMODE((tmp_path / "backup").stat().st_mode) == 0o700
    assert stat.S_IMODE(existing.stat().st_mode) == 0o755  # left as the user made it


@pytest.mark.parametrize("one", [b"ab", "ab", bytearray(b"ab")], ids=["bytes", "str", "bytearray"])
def test_one_key_where_an_iterable_of_keys_goes_is_refused(db: Bitcask, one: Any) -> None:
    # Before: get_many("ab") answered [value of "a", value of "b"] and value_bytes
    # their sizes (each character taken for a key); get_many(b"ab") said "key must
    # be bytes or str, not int".
    db.update({b"a": b"1", b"b": b"2", b"ab": b"3"})
    with pytest.raises(TypeError, match="iterable of keys, not one key"):
        db.get_many(one)
    with pytest.raises(TypeError, match="iterable of keys, not one key"):
        db.value_bytes(one)
    assert db.get_many([one]) == [b"3"] and db.value_bytes((one,)) == 1


def test_a_written_batch_cannot_be_entered_again(db: Bitcask) -> None:
    # Before: a second `with b:` wrote the same ops again (here deleting the new b"b").
    with db.batch() as b:
        b.put(b"a", b"1")
        b.delete(b"b")
    db.put(b"b", b"new")
    with pytest.raises(RuntimeError, match="already written"), b:
        pass
    assert dict(db.items()) == {b"a": b"1", b"b": b"new"} and b.results == [None, False]


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs os.fork")
def test_the_dict_methods_in_a_forked_child_read_and_refuse_writes(tmp_path: Path) -> None:
    from .test_api_contract_fork import _in_child

    with bitcask.open(tmp_path, sync="never") as db:
        db.update({b"a": b"1", b"b": b"2"})
        got = _in_child(
            {
                "get": lambda: db.get(b"z", b"d"),
                "values": lambda: list(db.values()),
                "pop": lambda: db.pop(b"a"),
                "setdefault": lambda: db.setdefault(b"z", b"1"),
                "update": lambda: db.update(z=b"1"),
                "popitem": db.popitem,
            }
        )
        assert got == {
            "get": "b'd'",
            "values": "[b'1', b'2']",
            "pop": "ReadOnlyError",
            "setdefault": "ReadOnlyError",
            "update": "ReadOnlyError",
            "popitem": "ReadOnlyError",
        }
        assert dict(db.items()) == {b"a": b"1", b"b": b"2"}
        db.pop(b"a")
    with bitcask.open(tmp_path) as again:
        assert dict(again.items()) == {b"b": b"2"}


def _unwritable_store(tmp_path: Path) -> Path:
    path = tmp_path / "store"
    with bitcask.open(path, sync="never") as db:
        db.put(b"a", b"1")
    return path


@pytest.mark.parametrize("where", ["lock", "active"])
def test_a_store_it_may_not_write_says_how_to_read_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, where: str
) -> None:
    # Root writes through modes, so the refusal is faked here at the two places an
    # open meets it (test_an_unwritable_store_as_its_user below is the real one).
    # Before: "[Errno 13] Permission denied: '.../0000000002.data'", naming no way out.
    path = _unwritable_store(tmp_path)
    target = (
        "bitcask._lock.DirLock.__init__"
        if where == "lock"
        else ("bitcask._files.FileTable.create_active")
    )

    def refuse(*args: object, **kwargs: object) -> None:
        raise PermissionError(13, "Permission denied", str(path / "LOCK"))

    monkeypatch.setattr(target, refuse)
    with pytest.raises(PermissionError, match=r"readonly=True\) reads it") as info:
        bitcask.open(path)
    assert info.value.filename == str(path) and "Permission denied on" in str(info.value)
    monkeypatch.undo()
    with bitcask.open(path, readonly=True) as db:
        assert dict(db.items()) == {b"a": b"1"}
    with bitcask.open(path) as db:  # the lock was let go of
        assert dict(db.items()) == {b"a": b"1"}


@pytest.mark.skipif(os.geteuid() == 0, reason="root writes through directory modes")
def test_an_unwritable_store_as_its_user(tmp_path: Path) -> None:
    path = _unwritable_store(tmp_path)
    (path / "LOCK").unlink()
    path.chmod(stat.S_IRUSR | stat.S_IXUSR)
    try:
        with pytest.raises(PermissionError, match=r"readonly=True\) reads it"):
            bitcask.open(path)
        with bitcask.open(path, readonly=True) as db:
            assert dict(db.items()) == {b"a": b"1"}
    finally:
        path.chmod(stat.S_IRWXU)


def test_iterating_while_another_thread_writes_sees_every_untouched_key_once(
    tmp_path: Path,
) -> None:
    # docs/engine.md: writes made during an iteration may or may not appear. What a
    # dict user relies on besides: no RuntimeError ("changed size during iteration"),
    # ascending order, no key twice, and every key no one touched, with its value;
    # across pages (1,024 keys) and the sorted index's rebuild after many deletes.
    with bitcask.open(tmp_path, sync="never") as db:
        steady = {b"s%05d" % i: b"%d" % i for i in range(0, 6000, 2)}
        db.update(steady)
        db.update({b"s%05d" % i: b"churn" for i in range(1, 6000, 2)})
        done = threading.Event()

        def churn() -> None:
            for i in range(1, 6000, 2):  # delete every odd key, then write new ones
                db.delete(b"s%05d" % i)
            for i in range(3000):
                db.put(b"s%05d+" % (i * 2), b"new")
            done.set()

        writer = threading.Thread(target=churn)
        writer.start()
        for round_ in range(50):  # bounded: the writer is done well before
            keys = list(db.keys(b"s"))
            pairs = list(db.items(b"s"))
            assert keys == sorted(set(keys)), round_
            assert [k for k, _ in pairs] == sorted({k for k, _ in pairs}), round_
            assert set(steady) <= set(keys) and set(steady) <= {k for k, _ in pairs}
            assert all(dict(pairs)[k] == v for k, v in steady.items())
            if done.is_set() and round_ >= 2:
                break
        writer.join(timeout=60)
        assert not writer.is_alive()
        assert len(db) == len(steady) + 3000


@pytest.mark.parametrize(
    "ops",
    [
        pytest.param([("put", b"a")], id="put-without-value"),
        pytest.param([("set", b"a", b"1")], id="unknown-kind"),
        pytest.param(("put", b"a", b"1"), id="one-op-not-a-list"),
        pytest.param([("delete", b"a", b"1")], id="delete-with-value"),
    ],
)
def test_a_malformed_batch_op_names_the_shapes_there_are(db: Bitcask, ops: Any) -> None:
    # Before: "unknown batch op ('put', b'a')" (as if "put" were unknown) and, for one
    # op not in a list, "batch op must be a tuple, not 'put'".
    db.put(b"a", b"0")
    with pytest.raises(ValueError, match=r"a batch op is \('put', key, value\[, ttl\]\)"):
        db.write_batch(ops)
    assert dict(db.items()) == {b"a": b"0"}
