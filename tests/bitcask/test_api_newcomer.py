"""The engine as a newcomer from plyvel, redis-py or dbm calls it: the argument shapes
those libraries take (a mapping for MSETNX, a bytes path, a forgotten argument, a
wrong object where a Watch goes), each answered with the documented result or one
clear error, never a silent wrong write or an error from deep inside."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pytest

import bitcask
from bitcask import Bitcask

from .conftest import Clock
from .test_scan_deleted_runs import expired_before_live


@pytest.mark.parametrize(
    "pairs",
    [
        pytest.param({"ab": "1", "cd": "2"}, id="dict-of-str"),
        pytest.param({b"ab": b"1", b"cd": b"2"}, id="dict-of-bytes"),
        pytest.param([(b"ab", b"1"), [b"cd", b"2"]], id="pairs"),
    ],
)
def test_msetnx_takes_a_mapping_as_redis_py_does(db: Bitcask, pairs: Any) -> None:
    # Before: iterating the dict gave its keys, each unpacked as a (key, value) pair:
    # {"ab": "1"} stored b"a" = b"b" and answered True; {b"ab": b"1"} raised
    # "key must be bytes or str, not int".
    assert db.commit([bitcask.MSetNx(pairs)]) == [True]
    assert dict(db.items()) == {b"ab": b"1", b"cd": b"2"}
    assert db.commit([bitcask.MSetNx(pairs)]) == [False]  # all present: nothing written
    assert dict(db.items()) == {b"ab": b"1", b"cd": b"2"}


@pytest.mark.parametrize(
    ("pairs", "error", "needle"),
    [
        pytest.param(["ab", "cd"], ValueError, "pair #0 is not a (key, value) pair", id="strs"),
        pytest.param([(b"a", b"1", b"x")], ValueError, "pair #0", id="triple"),
        pytest.param(b"abcd", TypeError, "not bytes", id="bytes"),
        pytest.param("abcd", TypeError, "not str", id="str"),
        pytest.param([], ValueError, "at least one pair", id="empty"),
    ],
)
def test_msetnx_refuses_what_is_not_pairs(
    db: Bitcask, pairs: Any, error: type[Exception], needle: str
) -> None:
    # Before: ["ab", "cd"] (and b"abcd", "abcd") were unpacked character by character
    # into pairs (b"a" = b"b", ...).
    with pytest.raises(error, match=needle.replace("(", r"\(").replace(")", r"\)")):
        bitcask.MSetNx(pairs)
    assert list(db.items()) == []


@pytest.mark.parametrize(
    "kwargs",
    [pytest.param({}, id="no-ttl"), pytest.param({"at_ms": 0}, id="at_ms-0")],
)
def test_expire_without_an_expiry_names_the_method_to_call(
    db: Bitcask, kwargs: dict[str, Any]
) -> None:
    # Before: "an expiry of 0 means none: use Persist", the Op's message, for a call
    # that named no expiry at all.
    db.put(b"k", b"v", ttl=60)
    with pytest.raises(ValueError, match=r"expire\(\) needs a ttl .* persist\(\) removes"):
        db.expire(b"k", **kwargs)
    assert db.get(b"k") == b"v"
    assert round(db.ttl(b"k") or 0) == 60  # untouched


@pytest.mark.parametrize("watch", [5, "w", (b"k",)], ids=["int", "str", "tuple"])
def test_commit_with_something_that_is_not_a_watch_is_a_type_error(db: Bitcask, watch: Any) -> None:
    # Before: AttributeError: 'int' object has no attribute '_owner'.
    with pytest.raises(TypeError, match=r"watch must be a Watch from db\.watch\(\)"):
        db.commit([("put", b"k", b"v")], watch=watch)
    assert db.get(b"k") is None
    db.put(b"k", b"v")  # the store goes on
    assert db.get(b"k") == b"v"


def test_a_bytes_path_works_for_backup_check_and_repair(tmp_path: Path) -> None:
    # bitcask.open takes a bytes path; before, backup() raised "startswith first arg
    # must be bytes", check() "endswith first arg must be bytes" and repair() "Can't
    # mix strings and bytes in path components".
    store, copy = tmp_path / "store", tmp_path / "copy"
    with bitcask.open(os.fsencode(store), sync="never") as db:
        db.put(b"k", b"v")
        db.backup(os.fsencode(copy))
    assert bitcask.check(os.fsencode(store)).ok
    assert bitcask.check(os.fsencode(copy)).ok
    assert not bitcask.repair(os.fsencode(store)).changed  # nothing to repair
    for path in (store, copy):
        with bitcask.open(path, readonly=True) as db:
            assert dict(db.items()) == {b"k": b"v"}


def test_an_op_that_grows_a_value_too_large_is_that_ops_answer(tmp_path: Path) -> None:
    # docs/engine.md and commit()'s docstring named three per-op errors; the fourth,
    # ValueTooLargeError for a value an op grows past max_value_size, is held here.
    with bitcask.open(tmp_path, sync="never", max_value_size=4) as db:
        db.put(b"k", b"abc")
        out = db.commit([bitcask.Append(b"k", b"de"), ("put", b"z", b"1")])
        assert out is not None
        assert isinstance(out[0], bitcask.ValueTooLargeError)
        assert out[1] is None
        assert db.get_many([b"k", b"z"]) == [b"abc", b"1"]


def test_merge_with_a_progress_that_is_not_callable_is_refused_before_it_starts(
    db: Bitcask, caplog: pytest.LogCaptureFixture
) -> None:
    # Before: the merge began, then failed at the first progress call, logging an
    # ERROR "merge failed in DIR ...: TypeError: 'int' object is not callable".
    db.put(b"k", b"1")
    db.put(b"k", b"2")
    with pytest.raises(TypeError, match="progress must be callable"):
        db.merge(progress=5)  # type: ignore[arg-type]
    assert not [r for r in caplog.records if "merge failed" in r.getMessage()]
    assert db.stats()["merges"] == 0
    assert db.merge().records_copied == 1
    assert db.get(b"k") == b"2"


def test_popitem_reclaims_the_expired_keys_it_walks_past(db: Bitcask, clock: Clock) -> None:
    # Before: they stayed in the keydir (the engine runs no sampler by itself), so
    # every popitem walked them again: 1,000 popitems past 50,000 expired keys took
    # 40 s. Now the first popitem reclaims those it passes, as an access would.
    expired_before_live(db, clock, 3_000)
    popped = sorted(db.popitem() for _ in range(4))
    assert popped == [(b"m", b"later"), (b"z0", b"y"), (b"z1", b"y"), (b"z2", b"y")]
    assert db.stored_keys() == 0
    assert db.expiry_stats()["expired_keys"] == 3_000
    with pytest.raises(KeyError, match="empty"):
        db.popitem()
    assert len(db) == 0 and list(db.items()) == []


@pytest.mark.parametrize(
    "remove",
    [
        pytest.param(lambda db, k: db.delete(k), id="delete"),
        pytest.param(lambda db, k: db.pop(k), id="pop"),
        pytest.param(lambda db, k: db.get_delete(k), id="get_delete"),
        pytest.param(lambda db, k: db.write_batch([("delete", k)]), id="write_batch"),
        pytest.param(lambda db, k: db.clear(), id="clear"),
        pytest.param(lambda db, k: db.popitem(), id="popitem"),
    ],
)
def test_a_key_stored_under_a_larger_max_key_size_can_still_be_deleted(
    tmp_path: Path, remove: Any
) -> None:
    # Before: reopened with a lower max_key_size, the store served the key but every
    # way to remove it raised KeyTooLargeError, clear() included.
    long = b"k" * 100
    with bitcask.open(tmp_path, sync="never") as db:
        db.put(long, b"v")
    with bitcask.open(tmp_path, sync="never", max_key_size=10) as db:
        assert db.get(long) == b"v"
        with pytest.raises(bitcask.KeyTooLargeError):
            db.put(long, b"w")  # never written again
        remove(db, long)
        assert db.get(long) is None and len(db) == 0
        with pytest.raises(bitcask.KeyTooLargeError):
            db.delete(long)  # absent now: refused as before
    with bitcask.open(tmp_path, readonly=True) as db:
        assert list(db.items()) == []


def test_a_batch_copies_a_reused_buffer_at_each_put(db: Bitcask) -> None:
    # Before: the batch queued the bytearray itself and read it at the write: a
    # buffer reused for each put (buf[:] = key, as plyvel code does) wrote every op
    # with its last contents: {b"k3": b"2"} for three keys.
    key, value = bytearray(2), bytearray(1)
    with db.batch() as b:
        for i, k in enumerate([b"k1", b"k2", b"k3"]):
            key[:] = k
            value[:] = b"%d" % i
            b.put(key, memoryview(value))
        key[:] = b"k1"
        b.delete(key)
        key[:] = b"zz"
    assert b.results == [None, None, None, True]
    assert dict(db.items()) == {b"k2": b"1", b"k3": b"2"}


def test_a_batch_refuses_a_key_of_the_wrong_type_at_the_put(db: Bitcask) -> None:
    with pytest.raises(TypeError, match="key must be bytes or str, not int"), db.batch() as b:
        b.put(b"a", b"1")
        b.put(5, b"v")  # type: ignore[arg-type]
    assert list(db.items()) == []  # the block raised: nothing written


@pytest.mark.parametrize(
    ("call", "error", "needle"),
    [
        pytest.param(lambda db: db.expire_sample("5"), TypeError, "limit must be an int", id="str"),
        pytest.param(
            lambda db: db.expire_sample(1.5), TypeError, "limit must be an int", id="float"
        ),
        pytest.param(
            lambda db: db.expire_sample(True), TypeError, "limit must be an int", id="bool"
        ),
        pytest.param(lambda db: db.expire_sample(0), ValueError, "limit must be >= 1", id="zero"),
        pytest.param(lambda db: db.scan(limit=-1), ValueError, "limit must be >= 0", id="scan"),
        pytest.param(
            lambda db: db.expire_cycle("5"), TypeError, "budget_ms must be a number", id="cycle"
        ),
    ],
)
def test_the_expiry_calls_name_a_bad_argument(
    db: Bitcask, clock: Clock, call: Any, error: type[Exception], needle: str
) -> None:
    # Before: expire_sample("5") raised "'<=' not supported between instances of 'str'
    # and 'int'", expire_cycle("5") "unsupported operand type(s) for /", and
    # expire_sample(1.5) or (True) sampled as if given 2 or 1.
    db.put(b"k", b"v", ttl=1)
    clock.now += 2
    with pytest.raises(error, match=needle):
        call(db)
    assert db.stored_keys() == 1  # nothing reclaimed by the refused call
    assert db.expire_sample(20) == 1
