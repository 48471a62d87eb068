"""Bitcask's dict methods for a user arriving from dict, dbm or shelve: values, pop,
setdefault, update, popitem; and the refusals of what a store cannot be (pickled,
copied, reversed) with one clear error instead of one from deep inside.

Strategy / invariants:
- ``MappingMethods`` is a stateless mixin: methods only, no attributes of its own.
  ``Bitcask`` (bitcask/db.py) inherits it; every method here is built on the public
  reads and the atomic writes (get_delete, set, write_batch), so each is as atomic
  as the one write it makes; nothing here changes the files. popitem walks the
  keydir to find a key and reclaims the expired keys it passes, under the writer's
  lock (``_expiry.drop_expired``), as ``expire_sample`` does.
- A store is not a ``collections.abc.MutableMapping`` and does not claim to be:
  ``keys()``, ``items()`` and ``values()`` are iterators in ascending key order
  taking a prefix (bitcask/_db_scan.py), not views, and ``==`` is identity, as for dbm's
  objects. docs/engine.md ("The store as a dict") says so to the user.
- The store is one process's open files, lock and threads: a copy or a pickle of
  the object would share them (closing a copy unlocked the store under the
  original), so both are refused with the way to do it (reopen by path).
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterable, Iterator, Mapping
from typing import Any, NoReturn, TypeVar, overload

from ._expiry import drop_expired
from ._keydir import Keydir
from ._record import as_bytes
from .batch import Batch
from .errors import StoreClosedError

__all__ = ["MappingMethods"]

_MISSING: Any = object()
_T = TypeVar("_T")


class MappingMethods:
    """The dict methods of ``Bitcask``; see bitcask/db.py for the class itself."""

    __slots__ = ()  # stateless: Bitcask holds every attribute

    # Supplied by Bitcask (this mixin declares them, it sets none).
    _closed: bool
    _kmap: dict[bytes, int]
    _kd: Keydir
    _lock: threading.RLock
    _clock: Callable[[], float]
    path: str

    def _mapping_store(self) -> Any:
        # Bitcask itself, typed loosely: the mixin calls only its public methods.
        return self

    def values(self, prefix: bytes | str = b"") -> Iterator[bytes]:
        """Yield the values of the visible keys with ``prefix``, in ascending key order.

        An iterator, as keys() and items() are (not a view). Any thread; writes made
        during the iteration may or may not appear.

        Example:
            >>> list(db.values(b"user:"))
            [b'alice']
        """
        for _, value in self._mapping_store().items(prefix):
            yield value

    # as dict.pop (a typed caller got Any from both shapes)
    @overload
    def pop(self, key: bytes | str) -> bytes: ...
    @overload
    def pop(self, key: bytes | str, default: _T) -> bytes | _T: ...

    def pop(self, key: bytes | str, default: Any = _MISSING) -> Any:
        """Delete ``key`` and return its value, atomically (get_delete()); if it is
        absent, return ``default``, or raise KeyError when none is given. Any thread.

        Example:
            >>> db.pop(b"token", None)
        """
        value = self._mapping_store().get_delete(key)
        if value is None:
            if default is _MISSING:
                raise KeyError(key)
            return default
        return value

    def setdefault(self, key: bytes | str, default: bytes | str | None = None) -> bytes:
        """Return the value of ``key``; if it is absent, store ``default`` first and
        return it (as bytes). One atomic write (set(nx=True)): of many threads racing,
        one stores its default and every one gets that value. Any thread.

        Raises:
            TypeError: no ``default`` (dict's None is no value a store holds).

        Example:
            >>> db.setdefault(b"lang", b"en")
            b'en'
        """
        if default is None:
            raise TypeError("setdefault() needs a default: a store holds no None value")
        value = as_bytes(default, "value")
        applied, before = self._mapping_store().set(key, value, nx=True)
        return value if applied else before

    def update(self, other: Any = (), /, **kwargs: bytes | str) -> None:
        """Store every pair of ``other`` (a mapping, an object with keys(), or an
        iterable of (key, value) pairs) and of ``kwargs``, as dict.update() does,
        in one atomic write_batch(): all of them or none (a bad pair refuses the
        whole update), so its size is bounded as a batch's is. Any thread.

        Raises:
            TypeError / ValueError: a pair that is not two items, or a key or value
                that is not bytes or str (nothing written).
            ValueTooLargeError: the whole update is larger than a batch may be.

        Example:
            >>> db.update({b"a": b"1"}, b=b"2")
        """
        batch = Batch(self._mapping_store())
        for i, pair in enumerate(_pairs(other)):
            if not isinstance(pair, tuple | list) or len(pair) != 2:
                raise ValueError(f"update() element #{i} is not a (key, value) pair: {pair!r}")
            batch.put(pair[0], pair[1])
        for key, value in kwargs.items():
            batch.put(key, value)
        with batch:
            pass

    def popitem(self) -> tuple[bytes, bytes]:
        """Delete a key and return ``(key, value)``, as MutableMapping.popitem: which
        key is not defined (the oldest first, mostly); KeyError once the store is
        empty. Each call finds a visible key, then get_delete(): of threads popping
        at once, each item goes to exactly one. Any thread.

        Example:
            >>> db.popitem()
            (b'a', b'1')
        """
        store = self._mapping_store()
        while True:  # another thread took the key between the look and the delete
            key = self._any_visible_key()
            if key is None:
                raise KeyError("popitem(): the store is empty")
            value = store.get_delete(key)
            if value is not None:
                return key, value

    def _any_visible_key(self) -> bytes | None:
        # The keydir dict's first visible key: the sorted index (scan) would skip
        # every key deleted ahead of the smallest on each call, up to half the store
        # (popping 20,000 keys took 20 s and more); the dict skips its deleted slots
        # in C. A write during the walk makes the dict iterator raise RuntimeError:
        # look again, and after a few tries (a steady stream of writes) ask scan.
        # The expired keys the walk passes are reclaimed, as an access would: left in
        # the keydir (the embedded engine runs no sampler by itself) every popitem
        # walked them again: 1,000 popitems past 50,000 expired keys took 40 s.
        if self._closed:
            raise StoreClosedError("store is closed")
        kmap, expiry = self._kmap, self._kd.expiry
        for _ in range(8):
            now_ms = self._clock() * 1000
            expired: list[bytes] = []
            try:
                for key in kmap:
                    exp = expiry.get(key) if expiry else None
                    if exp is None or exp > now_ms:
                        break
                    expired.append(key)
                else:
                    key = None
            except RuntimeError:
                continue
            if expired:
                with self._lock:
                    if not self._closed:
                        drop_expired(self._kd, expired, now_ms)
            return key
        page: list[bytes] = self._mapping_store().scan(limit=1)
        return page[0] if page else None

    def __reversed__(self) -> NoReturn:
        raise TypeError(
            "a store iterates its keys in ascending order only: use "
            "sorted(db.keys(prefix), reverse=True)"
        )

    def __reduce_ex__(self, protocol: object) -> NoReturn:
        raise TypeError(self._no_copy("pickled"))

    def __copy__(self) -> NoReturn:
        raise TypeError(self._no_copy("copied"))

    def __deepcopy__(self, memo: object) -> NoReturn:
        raise TypeError(self._no_copy("copied"))

    def _no_copy(self, what: str) -> str:
        if self._closed:
            raise StoreClosedError("store is closed")
        return (
            f"a store cannot be {what}: it is this process's open files and lock; "
            f"pass its path ({self.path!r}) and reopen it by its path with bitcask.open"
        )


def _pairs(other: Any) -> Iterable[Any]:
    # dict.update's rule: a Mapping's items, else keys() and [], else pairs.
    if isinstance(other, Mapping):
        return other.items()
    items = getattr(other, "items", None)
    if hasattr(other, "keys") and callable(items) and hasattr(other, "scan"):
        return items()  # type: ignore[no-any-return]  # another Bitcask: one read a pair
    if hasattr(other, "keys"):
        return ((k, other[k]) for k in other.keys())  # noqa: SIM118 - dict.update's rule
    return other  # type: ignore[no-any-return]
