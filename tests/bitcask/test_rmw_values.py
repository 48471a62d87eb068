"""The built-in ops are immutable values, as when each was a frozen dataclass: equal
and hashed by their fields, the dataclass's repr, FrozenInstanceError on assignment,
positional match patterns, copies and pickles that compare equal (bitcask/_rmw.py's
_Value; the decorator is gone for start-up cost only)."""

from __future__ import annotations

import copy
import pickle
from dataclasses import FrozenInstanceError

import pytest

from bitcask import (
    Append,
    Clear,
    CountKeys,
    Expire,
    GetDel,
    GetEx,
    Incr,
    IncrFloat,
    MSetNx,
    Op,
    Peek,
    Persist,
    Rename,
    Set,
)

# each op, built with every field given, and the repr the dataclass gave it
OPS = [
    (Set(b"k", b"v", 5, True, False, False),
     "Set(key=b'k', value=b'v', expire_at_ms=5, nx=True, xx=False, keep_ttl=False)"),
    (Incr(b"k", -3), "Incr(key=b'k', delta=-3)"),
    (IncrFloat(b"k", 0.5, b"0.5"), "IncrFloat(key=b'k', delta=0.5, text=b'0.5')"),
    (Append(b"k", b"x"), "Append(key=b'k', suffix=b'x')"),
    (GetDel(b"k"), "GetDel(key=b'k')"),
    (Expire(b"k", 9, "nx"), "Expire(key=b'k', at_ms=9, cond='nx')"),
    (Persist(b"k"), "Persist(key=b'k')"),
    (GetEx(b"k", 7, False), "GetEx(key=b'k', at_ms=7, persist=False)"),
    (Rename(b"k", b"d", True), "Rename(key=b'k', dst=b'd', nx=True)"),
    (MSetNx(((b"a", b"1"), (b"b", b"2"))), "MSetNx(pairs=((b'a', b'1'), (b'b', b'2')), key=b'a')"),
    (Clear(), "Clear(key=b'')"),
    (Peek(b"k"), "Peek(key=b'k')"),
    (CountKeys(), "CountKeys(key=b'')"),
]  # fmt: skip


@pytest.mark.parametrize(("op", "shown"), OPS, ids=[type(op).__name__ for op, _ in OPS])
def test_an_op_is_a_frozen_value(op: Op, shown: str) -> None:
    assert repr(op) == shown
    twin = eval(shown, globals())  # the repr builds an equal op
    assert twin == op and hash(twin) == hash(op) and twin is not op
    assert copy.copy(op) == op and pickle.loads(pickle.dumps(op)) == op
    assert op != (op.key,) and op != "x"  # another type is never equal
    fields = type(op).__match_args__
    assert fields[0] in ("key", "pairs")
    with pytest.raises(FrozenInstanceError, match="cannot assign to field"):
        op.key = b"other"  # type: ignore[misc]
    with pytest.raises(FrozenInstanceError, match="cannot delete field"):
        del op.key  # type: ignore[misc]
    assert repr(op) == shown  # unchanged


def test_ops_differ_by_any_field_and_by_type() -> None:
    assert Set(b"k", b"v") != Set(b"k", b"v", nx=True)
    assert Persist(b"k") != Peek(b"k")  # same fields, another op
    assert len({Set(b"k", b"v"), Set(b"k", b"v"), Incr(b"k")}) == 2


def test_positional_match_patterns() -> None:
    match Set(b"k", b"v", keep_ttl=True):
        case Set(key, value, 0, False, False, keep):
            assert (key, value, keep) == (b"k", b"v", True)
        case _:
            pytest.fail("no match")


def test_fields_are_checked_when_built() -> None:
    with pytest.raises(TypeError, match="delta must be an int"):
        Incr(b"k", True)
    with pytest.raises(ValueError, match="nx and xx exclude"):
        Set(b"k", b"v", nx=True, xx=True)
    with pytest.raises(ValueError, match="at least one pair"):
        MSetNx(())
    assert Set("k", "v") == Set(b"k", b"v")  # keys and values are taken as bytes
