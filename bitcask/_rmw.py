"""Atomic read-modify-write: the operations the writer evaluates at apply time.

Strategy / invariants:
- An ``Op`` is an immutable value that checks its own arguments when built. It is
  evaluated by the one writer, under its lock, against a ``View``: the store as of
  the start of the group commit plus every write made by earlier operations of the
  same group (plain puts and deletes included). So a condition (only if absent, an
  increment, a rename) is decided against exactly the state its write lands on:
  atomic against every other write, in every front end.
- ``apply`` returns the op's result and the writes it makes (absolute expiries);
  they join their batch's records in the group's one write. An op that fails (not
  an integer, an overflow, no such key) writes nothing and its result is the
  error; in a batch the other operations still apply, as inside Redis's EXEC.
- How a stored value reads as a number and a float is written back (Redis's
  string2ll, string2ld, ``%.17Lf``) is ``bitcask/_numbers.py``; INCRBYFLOAT's long
  double arithmetic is ``bitcask/_ldouble.py``.
- This module holds the ops and the ``View`` they read; deciding a whole group
  (watches, the max_keys budget, ``plan_group``) is ``bitcask/_group.py``, which
  imports this one and never the other way round.
"""

from __future__ import annotations

import math
from abc import ABC, abstractmethod
from collections.abc import Callable, Collection, Iterable, Mapping
from dataclasses import FrozenInstanceError
from typing import Any

from ._ldouble import incr_by_float
from ._numbers import I64_MAX, I64_MIN, _as_float, _as_int, format_float
from ._record import as_bytes
from .errors import NoSuchKeyError, NotANumberError

__all__ = [
    "Append",
    "Clear",
    "CountKeys",
    "Expire",
    "GetDel",
    "GetEx",
    "Incr",
    "IncrFloat",
    "MSetNx",
    "Op",
    "Peek",
    "Persist",
    "Rename",
    "Set",
    "View",
    "Write",
]

# A write an op makes: (key, value, expiry_ms) for a put (0: no expiry), (key, None, 0)
# for a delete.
Write = tuple[bytes, bytes | None, int]


class View:
    """The store as an op of the current group sees it (caller holds the writer lock)."""

    def __init__(
        self,
        read: Callable[[bytes], bytes | None],
        expiry: dict[bytes, int],
        keys: Callable[[], Collection[bytes]],
        now_ms: int,
    ) -> None:
        self._read = read
        self._expiry = expiry
        self._keys = keys
        self.now_ms = now_ms
        self._over: dict[bytes, tuple[bytes | None, int]] = {}
        self._undo: list[tuple[bytes, tuple[bytes | None, int] | None]] = []

    def get(self, key: bytes) -> tuple[bytes | None, int]:
        """(value, expiry_ms) of ``key``; (None, 0) when absent or expired.

        Raises:
            CorruptRecordError: the key's latest record is unreadable.
        """
        hit = self._over.get(key)
        if hit is not None:
            value, exp = hit
            if value is None or (exp and exp <= self.now_ms):
                return None, 0
            return value, exp
        value = self._read(key)
        if value is None:
            return None, 0
        return value, self._expiry.get(key, 0)

    def count(self) -> int:
        """How many keys are present now (expired ones included until they are
        dropped), in time proportional to the group's writes, not to the store."""
        base = self._keys()
        n = len(base)
        for key, (value, _) in self._over.items():
            if value is None:
                n -= key in base
            else:
                n += key not in base
        return n

    def keys(self) -> set[bytes]:
        """Every key present now (expired ones included until they are dropped)."""
        out = set(self._keys())
        for key, (value, _) in self._over.items():
            if value is None:
                out.discard(key)
            else:
                out.add(key)
        return out

    def record(self, writes: Iterable[Write]) -> None:
        """Later ops of the group see these writes."""
        for key, value, exp in writes:
            self._undo.append((key, self._over.get(key)))
            self._over[key] = (value, exp)

    def mark(self) -> int:
        return len(self._undo)

    def rollback(self, mark: int) -> None:
        """Forget every write recorded since ``mark`` (a batch refused as a whole)."""
        while len(self._undo) > mark:
            key, prev = self._undo.pop()
            if prev is None:
                del self._over[key]
            else:
                self._over[key] = prev


def _key(value: object, what: str = "key") -> bytes:
    return as_bytes(value, what)


def _expiry(at_ms: object) -> int:
    if isinstance(at_ms, bool) or not isinstance(at_ms, int):
        raise TypeError(f"expiry must be an int of ms since the epoch, not {at_ms!r}")
    if not 0 <= at_ms <= I64_MAX:
        raise ValueError(f"expiry {at_ms} ms is out of range (0 .. 2**63-1)")
    return at_ms


class Op(ABC):
    """An operation decided at apply time; subclasses define ``apply``."""

    key: bytes

    def keys(self) -> tuple[bytes, ...]:
        """The keys this op may write (limits are checked against them)."""
        return (self.key,)

    @abstractmethod
    def apply(self, view: View) -> tuple[object, list[Write]]:
        """The op's result and the writes it makes, against ``view``."""


_set = object.__setattr__  # how a built-in op's __init__ sets its fields


class _Value(Op):
    """What ``dataclass(frozen=True)`` gave the built-in ops, written once: the fields
    are ``__match_args__`` (in order) and ``__slots__``, set only by ``__init__``;
    equality, hash, repr and FrozenInstanceError as the dataclass had them. The
    decorator exec()ed six methods per class: the 13 ops cost ~40M instructions at
    import, 7% of a bitcask-server start (callgrind).
    """

    __slots__ = ()
    __match_args__: tuple[str, ...] = ()  # the fields, in order; each op's __slots__ too

    def _fields(self) -> tuple[Any, ...]:
        return tuple([getattr(self, name) for name in self.__match_args__])

    def __eq__(self, other: object) -> bool:
        if other.__class__ is self.__class__:
            assert isinstance(other, _Value)
            return self._fields() == other._fields()
        return NotImplemented

    def __hash__(self) -> int:
        return hash(self._fields())

    def __repr__(self) -> str:
        shown = ", ".join(f"{name}={getattr(self, name)!r}" for name in self.__match_args__)
        return f"{type(self).__qualname__}({shown})"

    def __reduce__(self) -> tuple[Any, ...]:
        return type(self), self._fields()

    def __setattr__(self, name: str, value: object) -> None:
        raise FrozenInstanceError(f"cannot assign to field {name!r}")

    def __delattr__(self, name: str) -> None:
        raise FrozenInstanceError(f"cannot delete field {name!r}")


class Set(_Value):
    """Store ``value`` under conditions: ``nx`` only if absent, ``xx`` only if present;
    ``expire_at_ms`` (0: none) or ``keep_ttl``. Result: (applied, previous value)."""

    __match_args__ = ("key", "value", "expire_at_ms", "nx", "xx", "keep_ttl")
    __slots__ = __match_args__
    key: bytes
    value: bytes
    expire_at_ms: int
    nx: bool
    xx: bool
    keep_ttl: bool

    def __init__(
        self,
        key: bytes,
        value: bytes,
        expire_at_ms: int = 0,
        nx: bool = False,
        xx: bool = False,
        keep_ttl: bool = False,
    ) -> None:
        _set(self, "key", _key(key))
        _set(self, "value", _key(value, "value"))
        _set(self, "expire_at_ms", expire_at_ms)
        _set(self, "nx", nx)
        _set(self, "xx", xx)
        _set(self, "keep_ttl", keep_ttl)
        _expiry(expire_at_ms)
        if nx and xx:
            raise ValueError("nx and xx exclude each other")
        if keep_ttl and expire_at_ms:
            raise ValueError("keep_ttl and an expiry exclude each other")

    def apply(self, view: View) -> tuple[object, list[Write]]:
        old, exp = view.get(self.key)
        if (self.nx and old is not None) or (self.xx and old is None):
            return (False, old), []
        new_exp = exp if self.keep_ttl else self.expire_at_ms
        if new_exp and new_exp <= view.now_ms:
            return (True, old), [(self.key, None, 0)]  # already expired: Redis deletes
        return (True, old), [(self.key, self.value, new_exp)]


class Incr(_Value):
    """Add ``delta`` to the integer stored at ``key`` (absent: 0); keeps the TTL.
    Result: the new value (int). Errors: NotANumberError (not an integer, overflow)."""

    __match_args__ = ("key", "delta")
    __slots__ = __match_args__
    key: bytes
    delta: int

    def __init__(self, key: bytes, delta: int = 1) -> None:
        _set(self, "key", _key(key))
        _set(self, "delta", delta)
        if isinstance(delta, bool) or not isinstance(delta, int):
            raise TypeError(f"delta must be an int, not {delta!r}")
        if not I64_MIN <= delta <= I64_MAX:
            raise ValueError("delta is out of the signed 64-bit range")

    def apply(self, view: View) -> tuple[object, list[Write]]:
        old, exp = view.get(self.key)
        n = 0 if old is None else _as_int(old)
        new = n + self.delta
        if not I64_MIN <= new <= I64_MAX:
            raise NotANumberError("increment or decrement would overflow")
        return new, [(self.key, str(new).encode(), exp)]


class IncrFloat(_Value):
    """Add ``delta`` to the number stored at ``key`` (absent: 0); keeps the TTL.
    Result: the new value as stored (bytes). With ``text`` (the increment as a Redis
    client wrote it) ``delta`` is ignored and the sum is Redis's INCRBYFLOAT, in a C
    long double (bitcask._ldouble): 0.1 + 0.2 stores ``0.3``, as in Redis."""

    __match_args__ = ("key", "delta", "text")
    __slots__ = __match_args__
    key: bytes
    delta: float
    text: bytes

    def __init__(self, key: bytes, delta: float, text: bytes = b"") -> None:
        _set(self, "key", _key(key))
        _set(self, "delta", delta)
        _set(self, "text", text)
        if isinstance(delta, bool) or not isinstance(delta, int | float):
            raise TypeError(f"delta must be a number, not {delta!r}")
        if not isinstance(text, bytes):
            raise TypeError(f"text must be bytes, not {text!r}")
        if not text and not math.isfinite(delta):
            raise ValueError("delta must be finite")

    def apply(self, view: View) -> tuple[object, list[Write]]:
        old, exp = view.get(self.key)
        if self.text:
            stored = incr_by_float(old, self.text)
            return stored, [(self.key, stored, exp)]
        new = (0.0 if old is None else _as_float(old)) + float(self.delta)
        if not math.isfinite(new):
            raise NotANumberError("increment would produce NaN or Infinity")
        stored = format_float(new)
        return stored, [(self.key, stored, exp)]


class Append(_Value):
    """Append ``suffix`` to the value at ``key`` (absent: create it); keeps the TTL.
    Result: the new length."""

    __match_args__ = ("key", "suffix")
    __slots__ = __match_args__
    key: bytes
    suffix: bytes

    def __init__(self, key: bytes, suffix: bytes) -> None:
        _set(self, "key", _key(key))
        _set(self, "suffix", _key(suffix, "suffix"))

    def apply(self, view: View) -> tuple[object, list[Write]]:
        old, exp = view.get(self.key)
        new = (old or b"") + self.suffix
        return len(new), [(self.key, new, exp)]


class GetDel(_Value):
    """Delete ``key``. Result: its value before, or None."""

    __match_args__ = ("key",)
    __slots__ = __match_args__
    key: bytes

    def __init__(self, key: bytes) -> None:
        _set(self, "key", _key(key))

    def apply(self, view: View) -> tuple[object, list[Write]]:
        old, _ = view.get(self.key)
        return old, [] if old is None else [(self.key, None, 0)]


_CONDITIONS = ("", "nx", "xx", "gt", "lt", "xx+gt", "xx+lt")


class Expire(_Value):
    """Set the expiry of an existing key to ``at_ms`` (ms since the epoch; in the past:
    the key is deleted). ``cond``: "" always, "nx" only without an expiry, "xx" only
    with one, "gt"/"lt" only if later/earlier than the current one (none counts as
    never), "xx+gt"/"xx+lt" both (Redis's EXPIRE XX GT, XX LT). Result: whether it
    was applied (False for an absent key)."""

    __match_args__ = ("key", "at_ms", "cond")
    __slots__ = __match_args__
    key: bytes
    at_ms: int
    cond: str

    def __init__(self, key: bytes, at_ms: int, cond: str = "") -> None:
        _set(self, "key", _key(key))
        _set(self, "at_ms", at_ms)
        _set(self, "cond", cond)
        _expiry(at_ms)
        if at_ms == 0:
            raise ValueError("an expiry of 0 means none: use Persist")
        if cond not in _CONDITIONS:
            raise ValueError(f"cond must be one of {_CONDITIONS}, not {cond!r}")

    def apply(self, view: View) -> tuple[object, list[Write]]:
        value, exp = view.get(self.key)
        if value is None:
            return False, []
        c, at = self.cond, self.at_ms
        if (
            (c == "nx" and exp)
            or (c[:2] == "xx" and not exp)
            or (c[-2:] == "gt" and (not exp or at <= exp))
            or (c[-2:] == "lt" and exp and at >= exp)
        ):
            return False, []
        if at <= view.now_ms:
            return True, [(self.key, None, 0)]
        return True, [(self.key, value, at)]


class Persist(_Value):
    """Remove the expiry of ``key``. Result: whether it had one."""

    __match_args__ = ("key",)
    __slots__ = __match_args__
    key: bytes

    def __init__(self, key: bytes) -> None:
        _set(self, "key", _key(key))

    def apply(self, view: View) -> tuple[object, list[Write]]:
        value, exp = view.get(self.key)
        if value is None or not exp:
            return False, []
        return True, [(self.key, value, 0)]


class GetEx(_Value):
    """Read ``key`` and change its expiry: ``at_ms`` (ms since the epoch), or
    ``persist``, or neither (a plain read). Result: the value, or None."""

    __match_args__ = ("key", "at_ms", "persist")
    __slots__ = __match_args__
    key: bytes
    at_ms: int
    persist: bool

    def __init__(self, key: bytes, at_ms: int = 0, persist: bool = False) -> None:
        _set(self, "key", _key(key))
        _set(self, "at_ms", at_ms)
        _set(self, "persist", persist)
        _expiry(at_ms)
        if persist and at_ms:
            raise ValueError("persist and an expiry exclude each other")

    def apply(self, view: View) -> tuple[object, list[Write]]:
        value, exp = view.get(self.key)
        if value is None:
            return None, []
        if self.at_ms:
            if self.at_ms <= view.now_ms:
                return value, [(self.key, None, 0)]
            return value, [(self.key, value, self.at_ms)]
        if self.persist and exp:
            return value, [(self.key, value, 0)]
        return value, []


class Rename(_Value):
    """Move the value (and expiry) of ``key`` to ``dst``; with ``nx`` only if ``dst``
    is absent. Result: whether it moved. Errors: NoSuchKeyError (``key`` absent)."""

    __match_args__ = ("key", "dst", "nx")
    __slots__ = __match_args__
    key: bytes
    dst: bytes
    nx: bool

    def __init__(self, key: bytes, dst: bytes, nx: bool = False) -> None:
        _set(self, "key", _key(key))
        _set(self, "dst", _key(dst))
        _set(self, "nx", nx)

    def keys(self) -> tuple[bytes, ...]:
        return (self.key, self.dst)

    def apply(self, view: View) -> tuple[object, list[Write]]:
        value, exp = view.get(self.key)
        if value is None:
            raise NoSuchKeyError("no such key")
        if self.nx and view.get(self.dst)[0] is not None:
            return False, []
        if self.dst == self.key:
            return True, []
        return True, [(self.key, None, 0), (self.dst, value, exp)]


class MSetNx(_Value):
    """Store every (key, value) of ``pairs`` only if none of the keys is present (all
    or nothing, as Redis's MSETNX). Result: whether they were stored."""

    __match_args__ = ("pairs", "key")
    __slots__ = __match_args__
    pairs: tuple[tuple[bytes, bytes], ...]
    key: bytes

    def __init__(
        self, pairs: Mapping[Any, Any] | Iterable[tuple[bytes, bytes]], key: bytes = b""
    ) -> None:
        """``pairs``: a mapping (what redis-py's msetnx takes) or (key, value) pairs.
        ``key`` is set to the first pair's key, whatever is passed."""
        pairs = tuple(_pair(p, i) for i, p in enumerate(_items(pairs)))
        if not pairs:
            raise ValueError("MSetNx needs at least one pair")
        _set(self, "pairs", pairs)
        _set(self, "key", pairs[0][0])

    def keys(self) -> tuple[bytes, ...]:
        return tuple(k for k, _ in self.pairs)

    def apply(self, view: View) -> tuple[object, list[Write]]:
        if any(view.get(k)[0] is not None for k, _ in self.pairs):
            return False, []
        return True, [(k, v, 0) for k, v in self.pairs]


def _items(pairs: object) -> Iterable[object]:
    # A mapping's items, as dict.update and update() read one: iterating a dict
    # yields its keys, and a 2-byte or 2-character key unpacked as a (key, value)
    # pair: MSetNx({"ab": "1"}) stored b"a" = b"b" and answered True.
    if isinstance(pairs, Mapping):
        return pairs.items()
    if isinstance(pairs, str | bytes | bytearray | memoryview):
        raise TypeError(f"MSetNx takes a mapping or (key, value) pairs, not {type(pairs).__name__}")
    return pairs  # type: ignore[return-value]


def _pair(pair: object, i: int) -> tuple[bytes, bytes]:
    if not isinstance(pair, tuple | list) or len(pair) != 2:
        raise ValueError(f"MSetNx pair #{i} is not a (key, value) pair: {pair!r}")
    return _key(pair[0]), _key(pair[1], "value")


class Clear(_Value):
    """Delete every key (one atomic batch). Result: how many keys were deleted."""

    __match_args__ = ("key",)
    __slots__ = __match_args__
    key: bytes

    def __init__(self, key: bytes = b"") -> None:
        _set(self, "key", key)

    def keys(self) -> tuple[bytes, ...]:
        return ()

    def apply(self, view: View) -> tuple[object, list[Write]]:
        doomed = sorted(view.keys())
        return len(doomed), [(k, None, 0) for k in doomed]


class Peek(_Value):
    """Read ``key`` as the group sees it at this point. Result: ``(value, expiry_ms)``
    (0: no expiry), or None when absent or expired. Writes nothing."""

    __match_args__ = ("key",)
    __slots__ = __match_args__
    key: bytes

    def __init__(self, key: bytes) -> None:
        _set(self, "key", _key(key))

    def keys(self) -> tuple[bytes, ...]:
        return ()

    def apply(self, view: View) -> tuple[object, list[Write]]:
        value, exp = view.get(self.key)
        return (None if value is None else (value, exp)), []


class CountKeys(_Value):
    """How many keys are held at this point of the group (``Bitcask.stored_keys``
    as the group sees it: the writes of earlier ops count). Writes nothing."""

    __match_args__ = ("key",)
    __slots__ = __match_args__
    key: bytes

    def __init__(self, key: bytes = b"") -> None:
        _set(self, "key", key)

    def keys(self) -> tuple[bytes, ...]:
        return ()

    def apply(self, view: View) -> tuple[object, list[Write]]:
        return view.count(), []
