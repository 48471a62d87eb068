"""Atomic read-modify-write in the engine: each operation's rule, atomicity against
other writers and inside one group commit, watches, limits, and what reaches disk."""

from __future__ import annotations

import os
import threading
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import bitcask
from bitcask import (
    Append,
    Clear,
    CountKeys,
    GetDel,
    GetEx,
    Incr,
    NoSuchKeyError,
    NotANumberError,
    Peek,
    Persist,
    Rename,
    Set,
)
from tests.bitcask.conftest import Clock


def test_incr_rules(db: bitcask.Bitcask) -> None:
    assert db.incr(b"n") == 1
    assert db.incr(b"n", -11) == -10
    assert db.get(b"n") == b"-10"
    db.put(b"max", str(2**63 - 1))
    with pytest.raises(NotANumberError, match="overflow"):
        db.incr(b"max")
    for bad in (b"1.5", b" 1", b"+1", b"01", b"", b"abc", b"99999999999999999999", b"-0"):
        db.put(b"bad", bad)
        with pytest.raises(NotANumberError, match="not an integer"):
            db.incr(b"bad")
    assert db.get(b"max") == str(2**63 - 1).encode(), "a failed op writes nothing"


def test_incr_float_rules(db: bitcask.Bitcask) -> None:
    assert db.incr_float(b"f", 10.5) == b"10.5"
    assert db.incr_float(b"f", 0.1) == b"10.6"
    assert db.incr_float(b"f", -10.6) == b"0"
    db.put(b"big", b"1e15")
    assert db.incr_float(b"big", 1) == b"1000000000000001"
    for bad in (b"nan", b"inf", b"x", b" 1"):
        db.put(b"bad", bad)
        with pytest.raises(NotANumberError):
            db.incr_float(b"bad", 1)
    db.put(b"huge", b"1.7e308")
    with pytest.raises(NotANumberError, match="NaN or Infinity"):
        db.incr_float(b"huge", 1.7e308)


def test_set_conditions_and_ttl(db: bitcask.Bitcask, clock: Clock) -> None:
    assert db.set(b"k", b"1", nx=True, ttl=10) == (True, None)
    assert db.set(b"k", b"2", nx=True) == (False, b"1")
    assert db.set(b"absent", b"2", xx=True) == (False, None)
    assert db.set(b"k", b"3", xx=True, keep_ttl=True) == (True, b"1")
    assert db.ttl(b"k") == pytest.approx(10)
    assert db.set(b"k", b"4") == (True, b"3")
    assert db.ttl(b"k") is None, "a plain set clears the expiry"
    assert db.set(b"k", b"5", at_ms=int(clock.now * 1000) - 1) == (True, b"4")
    assert db.get(b"k") is None, "an expiry in the past deletes"
    with pytest.raises(ValueError):
        Set(b"k", b"v", nx=True, xx=True)
    with pytest.raises(ValueError):
        Set(b"k", b"v", 5, keep_ttl=True)


def test_expire_conditions(db: bitcask.Bitcask, clock: Clock) -> None:
    now = int(clock.now * 1000)
    db.put(b"k", b"v")
    assert db.expire(b"k", at_ms=now + 5000, cond="xx") is False  # no expiry yet
    assert db.expire(b"k", at_ms=now + 5000, cond="gt") is False  # none counts as never
    assert db.expire(b"k", at_ms=now + 5000, cond="nx") is True
    assert db.expire(b"k", at_ms=now + 9000, cond="lt") is False
    assert db.expire(b"k", at_ms=now + 9000, cond="gt") is True
    assert db.expire(b"k", at_ms=now + 1000, cond="lt") is True
    assert db.ttl(b"k") == pytest.approx(1.0)
    assert db.expire(b"absent", 10) is False
    assert db.persist(b"k") is True and db.persist(b"k") is False
    assert db.get(b"k") == b"v" and db.ttl(b"k") is None
    assert db.expire(b"k", at_ms=now - 1) is True and db.get(b"k") is None
    clock.now += 0  # nothing else moves
    db.put(b"t", b"v", ttl=1)
    clock.now += 2
    assert db.expire(b"t", 100) is False, "an expired key is absent"


def test_getex_append_getdel_rename(db: bitcask.Bitcask, clock: Clock) -> None:
    now = int(clock.now * 1000)
    db.put(b"k", b"v")
    assert db.commit([GetEx(b"k", at_ms=now + 3000)]) == [b"v"]
    assert db.ttl(b"k") == pytest.approx(3)
    assert db.commit([GetEx(b"k", persist=True)]) == [b"v"]
    assert db.ttl(b"k") is None
    assert db.append(b"k", b"w") == 2 and db.append(b"new", b"abc") == 3
    assert db.get_delete(b"k") == b"vw" and db.get_delete(b"k") is None
    db.put(b"src", b"s", ttl=50)
    db.put(b"dst", b"d")
    assert db.rename(b"src", b"dst", nx=True) is False
    assert db.rename(b"src", b"dst") is True
    assert db.get(b"src") is None and db.get(b"dst") == b"s"
    assert db.ttl(b"dst") == pytest.approx(50), "rename moves the expiry"
    with pytest.raises(NoSuchKeyError, match="no such key"):
        db.rename(b"src", b"x")
    assert db.rename(b"dst", b"dst") is True and db.get(b"dst") == b"s"
    assert db.clear() == 2 and list(db.keys()) == []


def test_reads_inside_a_commit_see_the_writes_before_them(
    db: bitcask.Bitcask, clock: Clock
) -> None:
    now = int(clock.now * 1000)
    db.put(b"a", b"1")
    db.put(b"gone", b"x", ttl=10)
    got = db.commit([
        CountKeys(), Peek(b"a"), Set(b"b", b"2", expire_at_ms=now + 5000), CountKeys(),
        Peek(b"b"), GetDel(b"a"), Peek(b"a"), CountKeys(), Set(b"b", b"3"), Peek(b"b"),
    ])  # fmt: skip
    assert got[0] == 2 and got[1] == (b"1", 0)
    assert got[3] == 3 and got[4] == (b"2", now + 5000)
    assert got[6] is None and got[7] == 2
    assert got[9] == (b"3", 0), "a later write replaces the expiry it saw"
    assert db.stored_keys() == 2 and db.commit([CountKeys()]) == [2]
    assert db.commit([Peek(b"missing")]) == [None]


def test_no_lost_updates_between_threads(db: bitcask.Bitcask) -> None:
    def work() -> None:
        for _ in range(300):
            db.incr(b"counter")
            db.append(b"log", b"x")

    threads = [threading.Thread(target=work) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert db.get(b"counter") == b"1200"
    assert db.get(b"log") == b"x" * 1200


def test_a_group_sees_its_earlier_writes_in_order(db: bitcask.Bitcask) -> None:
    got = db.write_group(
        [
            [("put", b"g", b"10")],
            [Incr(b"g")],
            [Set(b"lock", b"a", nx=True)],
            [Set(b"lock", b"b", nx=True)],
            [("delete", b"g"), Incr(b"g", 5)],
            [("put", b"k" * 70000, b"x")],
        ]
    )
    assert got[:5] == [[None], [11], [(True, None)], [(False, b"a")], [True, 5]]
    assert isinstance(got[5], bitcask.KeyTooLargeError)
    assert db.get(b"g") == b"5" and db.get(b"lock") == b"a"


def test_an_op_error_fails_alone_inside_a_batch(db: bitcask.Bitcask) -> None:
    db.put(b"text", b"abc")
    got = db.commit([Incr(b"text"), ("put", b"x", b"1"), Rename(b"nope", b"y"), Incr(b"n")])
    assert got is not None
    assert isinstance(got[0], NotANumberError) and isinstance(got[2], NoSuchKeyError)
    assert got[1] is None and got[3] == 1
    assert db.get(b"x") == b"1" and db.get(b"text") == b"abc"


def test_watch_sees_any_write_even_one_that_restores(db: bitcask.Bitcask) -> None:
    db.put(b"w", b"1")
    w = db.watch(b"w", b"other")
    db.put(b"w", b"2")
    db.delete(b"w")  # back to a state with no value: still a write
    assert db.commit([("put", b"w", b"mine")], watch=w) is None
    assert db.get(b"w") is None
    w.release()
    with db.watch(b"w") as w2:
        db.put(b"unrelated", b"x")
        assert db.commit([("put", b"w", b"mine"), Incr(b"c")], watch=w2) == [None, 1]
    assert db._watches.counts == {}, "memory grows with watches, not with the keyspace"
    with db.watch(b"w") as w3:
        db.write_group([[Incr(b"c")], [Append(b"w", b"!")]])
        assert db.commit([Persist(b"w")], watch=w3) is None


def test_key_limit_applies_to_planned_writes(tmp_path: Path) -> None:
    with bitcask.open(tmp_path, sync="never", max_keys=2) as db:
        db.put(b"a", b"1")
        got = db.write_group([[Set(b"b", b"1")], [Set(b"c", b"1")], [Incr(b"c")], [Incr(b"a")]])
        assert got[0] == [(True, None)] and got[3] == [2]
        assert isinstance(got[1], bitcask.StoreFullError)
        assert isinstance(got[2], bitcask.StoreFullError), "the refused set was undone"
        assert db.get(b"c") is None and db.rename(b"a", b"z") is True


def test_planned_writes_reach_disk_and_torn_ones_vanish(tmp_path: Path) -> None:
    with bitcask.open(tmp_path, sync="never") as db:
        db.put(b"src", b"v", ttl=500)
        db.put(b"n", b"41")
        assert db.commit([Rename(b"src", b"dst"), Incr(b"n")]) == [True, 42]
    for name in os.listdir(tmp_path):
        if name.endswith(".hint"):
            os.unlink(tmp_path / name)  # scan, so the batch framing is read
    with bitcask.open(tmp_path, sync="never") as db:
        assert db.get(b"src") is None and db.get(b"dst") == b"v" and db.get(b"n") == b"42"
        assert db.ttl(b"dst") is not None
        db.rename(b"dst", b"again")
    data = sorted(tmp_path.glob("*.data"))[-1]
    size = data.stat().st_size
    with open(data, "r+b") as f:
        f.truncate(size - 10)  # the rename's COMMIT is torn: the whole rename vanishes
    with bitcask.open(tmp_path, sync="never") as db:
        assert db.get(b"dst") == b"v" and db.get(b"again") is None


# ---------------------------------------------------------------- the property

KEYS = [b"a", b"b", b"c"]
_ops = st.one_of(
    st.builds(Incr, st.sampled_from(KEYS), st.integers(-5, 5)),
    st.builds(Append, st.sampled_from(KEYS), st.sampled_from([b"1", b"x", b""])),
    st.builds(GetDel, st.sampled_from(KEYS)),
    st.builds(Set, st.sampled_from(KEYS), st.sampled_from([b"7", b"z"]), st.just(0), st.booleans()),
    st.builds(Rename, st.sampled_from(KEYS), st.sampled_from(KEYS), st.booleans()),
    st.builds(lambda k: ("delete", k), st.sampled_from(KEYS)),
    st.just(Clear()),
)


def model_apply(m: dict[bytes, bytes], op: object) -> object:
    """The rules, written again from the docs, on a dict."""
    if isinstance(op, tuple):
        return m.pop(op[1], None) is not None
    if isinstance(op, Incr):
        raw = m.get(op.key, b"0")
        if not raw.lstrip(b"-").isdigit() or (raw.lstrip(b"-").startswith(b"0") and raw != b"0"):
            return NotANumberError
        m[op.key] = str(int(raw) + op.delta).encode()
        return int(m[op.key])
    if isinstance(op, Append):
        m[op.key] = m.get(op.key, b"") + op.suffix
        return len(m[op.key])
    if isinstance(op, GetDel):
        return m.pop(op.key, None)
    if isinstance(op, Set):
        old = m.get(op.key)
        if op.nx and old is not None:
            return (False, old)
        m[op.key] = op.value
        return (True, old)
    if isinstance(op, Rename):
        if op.key not in m:
            return NoSuchKeyError
        if op.nx and op.dst in m:
            return False
        m[op.dst] = m.pop(op.key)
        return True
    assert isinstance(op, Clear)
    n = len(m)
    m.clear()
    return n


@settings(
    max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(batches=st.lists(st.lists(_ops, min_size=1, max_size=3), min_size=1, max_size=12))
def test_ops_agree_with_a_model_across_groups_and_reopen(
    tmp_path_factory: pytest.TempPathFactory, batches: list[list[object]]
) -> None:
    path = tmp_path_factory.mktemp("rmw")
    model: dict[bytes, bytes] = {}
    want = []
    for ops in batches:
        want.append([model_apply(model, op) for op in ops])
    with bitcask.open(path, sync="never") as db:
        got = db.write_group(batches[: len(batches) // 2])
        for ops in batches[len(batches) // 2 :]:
            got.append(db.commit(ops) or [])
    norm = [
        [type(r) if isinstance(r, Exception) else r for r in batch]  # type: ignore[union-attr]
        for batch in got
    ]
    assert norm == want
    with bitcask.open(path, sync="never") as db:
        assert {k: v for k in KEYS if (v := db.get(k)) is not None} == model


def test_an_append_past_max_value_size_fails_alone(tmp_path: Path) -> None:
    with bitcask.open(tmp_path, sync="never", max_value_size=8) as db:
        db.put(b"log", b"12345")
        got = db.write_group([[Append(b"log", b"6789")], [Incr(b"n")], [Append(b"log", b"6")]])
        assert isinstance(got[0], list) and isinstance(got[0][0], bitcask.ValueTooLargeError)
        assert got[1] == [1] and got[2] == [6]
        assert db.get(b"log") == b"123456"


def test_combined_watch_and_expiring_count(db: bitcask.Bitcask) -> None:
    db.put(b"a", b"1", ttl=10)
    db.put(b"b", b"1")
    assert db.expiring_keys() == 1
    wa, wb = db.watch(b"a"), db.watch(b"b")
    both = bitcask.Watch.combine([wa, wb])
    assert both.keys == (b"a", b"b")
    db.put(b"b", b"2")
    assert db.commit([Incr(b"n")], watch=both) is None, "a write to any part's key aborts"
    wa.release()
    wb.release()
    assert db._watches.counts == {}
