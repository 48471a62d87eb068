"""The public call methods, shared by `Client` and `Pool`.

Strategy: every method converts and checks its arguments locally (types ->
InterfaceError, sizes against the server's limits -> KeyTooLargeError /
ValueTooLargeError / BatchTooLargeError, all before anything is sent), then makes
one wire call through `self._call(method, params, timeout)`, which the concrete
class provides (Client: its connection; Pool: one of its clients). Result shapes
are converted here, so the wire layer hands raw msgpack results up unchanged.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Iterable, Mapping
from typing import TYPE_CHECKING, Any, Literal, overload

from client._args import (
    Key,
    Value,
    check_ttl,
    expire_params,
    float_params,
    incr_params,
    rename_params,
    set_params,
    to_bytes,
)
from client._batch import Batch
from client.errors import (
    BatchTooLargeError,
    InterfaceError,
    KeyTooLargeError,
    ValueTooLargeError,
)
from protocol import SCAN_DEFAULT_COUNT, SCAN_MAX_COUNT

if TYPE_CHECKING:
    from client._config import Limits

__all__ = ["Commands"]


class Commands:
    """The call methods. Subclasses provide `_call`, `limits` and `_check_open`."""

    limits: Limits

    def _call(self, method: str, params: list[Any], timeout: float | None) -> Awaitable[Any]:
        """Send one call; an awaitable of its raw result (a coroutine or a future)."""
        raise NotImplementedError

    def _check_open(self) -> None:
        raise NotImplementedError

    # ------------------------------------------------------------ argument checks

    def _key(self, key: Any) -> bytes:
        k = key if type(key) is bytes else to_bytes(key, "key")
        if len(k) > self.limits.max_key_size:
            raise KeyTooLargeError.local(
                f"key of {len(k)} bytes exceeds the server's max_key_size "
                f"{self.limits.max_key_size}"
            )
        return k

    def _value(self, value: Any) -> bytes:
        v = value if type(value) is bytes else to_bytes(value, "value")
        if len(v) > self.limits.max_value_size:
            raise ValueTooLargeError.local(
                f"value of {len(v)} bytes exceeds the server's max_value_size "
                f"{self.limits.max_value_size}"
            )
        return v

    def _batch_size(self, n: int) -> None:
        if n > self.limits.max_batch:
            raise BatchTooLargeError.local(
                f"{n} entries exceed the server's max_batch {self.limits.max_batch}"
            )

    # ------------------------------------------------------------ single keys

    async def get(self, key: Key, *, timeout: float | None = None) -> bytes | None:
        """The value stored under `key`, or None.

        Args:
            key: bytes or str.
            timeout: seconds for this call (default: the client's timeout).

        Raises:
            KeyTooLargeError: the key exceeds the server's limit (checked locally).
            CallTimeoutError, ConnectionLostError, ServerError subclasses.

        Example:
            >>> await c.get(b"user:1")  # doctest: +SKIP
            b'ann'
        """
        return await self._call("get", [self._key(key)], timeout)  # type: ignore[no-any-return]

    async def put(
        self, key: Key, value: Value, ttl: float | None = None, *, timeout: float | None = None
    ) -> None:
        """Store `value` under `key`, expiring after `ttl` seconds if given.

        Raises:
            KeyTooLargeError, ValueTooLargeError: checked locally before sending.
            ReadOnlyError: the store refuses writes.
            CallTimeoutError, ConnectionLostError: the put may or may not have
                been applied (puts are never retried automatically).

        Example:
            >>> await c.put(b"session:9", b"data", ttl=60)  # doctest: +SKIP
        """
        k = self._key(key)
        v = self._value(value)
        t = check_ttl(ttl)
        params: list[Any] = [k, v] if t is None else [k, v, {"ttl": t}]
        await self._call("put", params, timeout)

    async def delete(self, key: Key, *, timeout: float | None = None) -> bool:
        """Remove `key`; True if it existed.

        Example:
            >>> await c.delete(b"user:1")  # doctest: +SKIP
            True
        """
        return bool(await self._call("delete", [self._key(key)], timeout))

    async def exists(self, key: Key, *, timeout: float | None = None) -> bool:
        """Whether `key` holds a value.

        Example:
            >>> await c.exists(b"user:1")  # doctest: +SKIP
            False
        """
        return bool(await self._call("exists", [self._key(key)], timeout))

    async def ttl(self, key: Key, *, timeout: float | None = None) -> float:
        """Seconds left before `key` expires: -1 if it has no TTL, -2 if it is missing.

        (The Redis convention, as on the wire.)

        Example:
            >>> await c.ttl(b"session:9")  # doctest: +SKIP
            59.87
        """
        result = await self._call("ttl", [self._key(key)], timeout)
        return float(result) if isinstance(result, float) else int(result)

    # ------------------------------------------------------------ read-modify-write
    # Each is decided by the server's one writer when it applies: atomic against
    # every other write (docs/protocol.md, "Atomic read-modify-write").

    # the reply's type follows `get` (a typed caller got Any from both shapes)
    @overload
    async def set(
        self,
        key: Key,
        value: Value,
        *,
        nx: bool = ...,
        xx: bool = ...,
        get: Literal[False] = ...,
        keep_ttl: bool = ...,
        ttl: float | None = ...,
        at_ms: int | None = ...,
        timeout: float | None = ...,
    ) -> bool: ...
    @overload
    async def set(
        self,
        key: Key,
        value: Value,
        *,
        nx: bool = ...,
        xx: bool = ...,
        get: Literal[True],
        keep_ttl: bool = ...,
        ttl: float | None = ...,
        at_ms: int | None = ...,
        timeout: float | None = ...,
    ) -> bytes | None: ...
    @overload
    async def set(
        self,
        key: Key,
        value: Value,
        *,
        nx: bool = ...,
        xx: bool = ...,
        get: bool,
        keep_ttl: bool = ...,
        ttl: float | None = ...,
        at_ms: int | None = ...,
        timeout: float | None = ...,
    ) -> bool | bytes | None: ...
    async def set(
        self,
        key: Key,
        value: Value,
        *,
        nx: bool = False,
        xx: bool = False,
        get: bool = False,
        keep_ttl: bool = False,
        ttl: float | None = None,
        at_ms: int | None = None,
        timeout: float | None = None,
    ) -> bool | bytes | None:
        """Store `value` only if `key` is absent (`nx`) or present (`xx`), with an
        expiry (`ttl` seconds, `at_ms` ms since the epoch) or the one it has
        (`keep_ttl`).

        Returns:
            Whether it was stored; with `get=True` the value before (or None) instead.

        Example:
            >>> await c.set(b"lock", b"me", nx=True, ttl=30)  # doctest: +SKIP
            True
        """
        params = set_params(self, key, value, nx, xx, get, keep_ttl, ttl, at_ms)
        return await self._call("set", params, timeout)  # type: ignore[no-any-return]

    async def incr(self, key: Key, delta: int = 1, *, timeout: float | None = None) -> int:
        """Add `delta` to the integer at `key` (missing: 0), keeping its TTL.

        Raises:
            NotANumberError: the value is not a 64-bit integer, or the sum overflows.

        Example:
            >>> await c.incr(b"visits")  # doctest: +SKIP
            1
        """
        return await self._call("incr", incr_params(self, key, delta), timeout)  # type: ignore[no-any-return]

    async def incr_float(self, key: Key, delta: float, *, timeout: float | None = None) -> float:
        """Add `delta` to the number at `key` (missing: 0); returns the new value.

        Example:
            >>> await c.incr_float(b"temp", 0.5)  # doctest: +SKIP
            0.5
        """
        return float(await self._call("incr_float", float_params(self, key, delta), timeout))

    async def append(self, key: Key, suffix: Value, *, timeout: float | None = None) -> int:
        """Append `suffix` to the value at `key` (missing: create it); the new length.

        Example:
            >>> await c.append(b"log", b"line\\n")  # doctest: +SKIP
            5
        """
        params = [self._key(key), self._value(suffix)]
        return await self._call("append", params, timeout)  # type: ignore[no-any-return]

    async def get_delete(self, key: Key, *, timeout: float | None = None) -> bytes | None:
        """Delete `key` and return the value it had (None if missing), atomically.

        Example:
            >>> await c.get_delete(b"token:1")  # doctest: +SKIP
            b'abc'
        """
        return await self._call("get_delete", [self._key(key)], timeout)  # type: ignore[no-any-return]

    async def expire(
        self,
        key: Key,
        ttl: float | None = None,
        *,
        at_ms: int | None = None,
        cond: str = "",
        timeout: float | None = None,
    ) -> bool:
        """Give an existing key an expiry: `ttl` seconds, or `at_ms` since the epoch;
        `cond` "nx", "xx", "gt", "lt" as Redis's EXPIRE. Returns whether it applied.

        Example:
            >>> await c.expire(b"session:9", 60, cond="gt")  # doctest: +SKIP
            True
        """
        params = expire_params(self, key, ttl, at_ms, cond)
        return bool(await self._call("expire", params, timeout))

    async def persist(self, key: Key, *, timeout: float | None = None) -> bool:
        """Remove the expiry of `key`; True if it had one.

        Example:
            >>> await c.persist(b"session:9")  # doctest: +SKIP
            True
        """
        return bool(await self._call("persist", [self._key(key)], timeout))

    async def rename(
        self, key: Key, new_key: Key, *, nx: bool = False, timeout: float | None = None
    ) -> bool:
        """Move the value and expiry of `key` to `new_key` (with `nx` only if `new_key`
        is missing). Returns whether it moved.

        Raises:
            NoSuchKeyError: `key` does not exist.

        Example:
            >>> await c.rename(b"upload:tmp", b"upload:1")  # doctest: +SKIP
            True
        """
        return bool(await self._call("rename", rename_params(self, key, new_key, nx), timeout))

    async def clear(self, *, timeout: float | None = None) -> int:
        """Delete every key, atomically; returns how many there were.

        Example:
            >>> await c.clear()  # doctest: +SKIP
            3
        """
        return int(await self._call("clear", [], timeout))

    # ------------------------------------------------------------ many keys

    async def mget(
        self, keys: Iterable[Key], *, timeout: float | None = None
    ) -> list[bytes | None]:
        """The values of many keys, in order (None for each missing key).

        Raises:
            BatchTooLargeError: more keys than the server's max_batch (local).

        Example:
            >>> await c.mget([b"a", b"b"])  # doctest: +SKIP
            [b'1', None]
        """
        if isinstance(keys, bytes | str):
            raise InterfaceError("mget takes an iterable of keys, not a single key")
        ks = [self._key(k) for k in keys]
        self._batch_size(len(ks))
        return await self._call("mget", [ks], timeout)  # type: ignore[no-any-return]

    async def mput(
        self,
        items: Mapping[bytes, Value] | Mapping[str, Value] | Iterable[tuple[Key, Value]],
        *,
        timeout: float | None = None,
    ) -> None:
        """Store many pairs atomically (all or none).

        Args:
            items: a mapping, or an iterable of (key, value) pairs.

        Example:
            >>> await c.mput({b"a": b"1", b"b": b"2"})  # doctest: +SKIP
        """
        pairs_in: Iterable[Any] = items.items() if isinstance(items, Mapping) else items
        pairs: list[list[bytes]] = []
        for pair in pairs_in:
            try:
                key, value = pair
            except (TypeError, ValueError):
                raise InterfaceError("mput takes a mapping or (key, value) pairs") from None
            pairs.append([self._key(key), self._value(value)])
        self._batch_size(len(pairs))
        await self._call("mput", [pairs], timeout)

    def batch(self, *, timeout: float | None = None) -> Batch:
        """An atomic batch of puts and deletes, sent as one call.

        Use as `async with c.batch() as b: b.put(k, v); b.delete(k2)`: the batch
        is sent when the block exits without an exception (nothing is sent
        otherwise); its per-op results are then in `b.results`. Or build it and
        `await b.execute()`.

        Example:
            >>> async with c.batch() as b:  # doctest: +SKIP
            ...     b.put(b"a", b"1")
            ...     b.delete(b"old")
        """
        self._check_open()
        return Batch(self, timeout)

    # ------------------------------------------------------------ scanning

    async def scan_page(
        self,
        prefix: Key = b"",
        cursor: Key | None = None,
        count: int = SCAN_DEFAULT_COUNT,
        *,
        timeout: float | None = None,
    ) -> tuple[bytes | None, list[bytes]]:
        """One page of keys in ascending byte order, strictly after `cursor`.

        Returns:
            (next_cursor, keys); next_cursor is None when the scan is complete.

        Example:
            >>> await c.scan_page(b"user:", count=2)  # doctest: +SKIP
            (b'user:2', [b'user:1', b'user:2'])
        """
        if type(count) is not int or not 1 <= count <= SCAN_MAX_COUNT:
            raise InterfaceError(f"count must be an int in 1..{SCAN_MAX_COUNT}")
        opts: dict[str, Any] = {"prefix": to_bytes(prefix, "prefix"), "count": count}
        if cursor is not None:
            opts["cursor"] = to_bytes(cursor, "cursor")
        reply = await self._call("scan", [opts], timeout)
        if type(reply) is not list or len(reply) != 2:
            raise InterfaceError(f"unexpected scan reply {reply!r}")
        return reply[0], reply[1]

    async def scan(
        self, prefix: Key = b"", *, count: int = SCAN_DEFAULT_COUNT, timeout: float | None = None
    ) -> AsyncIterator[bytes]:
        """Iterate over every key with `prefix`, in ascending byte order.

        Fetches pages of `count` keys as it goes; keys written or deleted during
        the scan may or may not appear.

        Example:
            >>> async for key in c.scan(b"user:"):  # doctest: +SKIP
            ...     print(key)
        """
        cursor: bytes | None = None
        while True:
            cursor, keys = await self.scan_page(prefix, cursor, count, timeout=timeout)
            for key in keys:
                yield key
            if cursor is None:
                return

    # ------------------------------------------------------------ server

    @overload
    async def ping(self, payload: None = None, *, timeout: float | None = None) -> str: ...
    @overload
    async def ping(self, payload: Value, *, timeout: float | None = None) -> bytes: ...
    async def ping(
        self, payload: Value | None = None, *, timeout: float | None = None
    ) -> str | bytes:
        """Round-trip to the server: "PONG", or `payload` echoed back.

        Example:
            >>> await c.ping()  # doctest: +SKIP
            'PONG'
        """
        params = [] if payload is None else [to_bytes(payload, "payload")]
        return await self._call("ping", params, timeout)  # type: ignore[no-any-return]

    async def stats(self, *, timeout: float | None = None) -> dict[str, Any]:
        """The store's statistics plus the server's counters.

        Example:
            >>> (await c.stats())["keys"]  # doctest: +SKIP
            1042
        """
        return await self._call("stats", [], timeout)  # type: ignore[no-any-return]

    async def merge(self, *, timeout: float | None = None) -> dict[str, Any]:
        """Compact the data files now; returns the merge report.

        Example:
            >>> await c.merge(timeout=60)  # doctest: +SKIP
        """
        return await self._call("merge", [], timeout)  # type: ignore[no-any-return]

    async def sync(self, *, timeout: float | None = None) -> None:
        """Ask the server to fsync its active data file.

        Example:
            >>> await c.sync()  # doctest: +SKIP
        """
        await self._call("sync", [], timeout)
