"""`ShardedClient`: one `Client` per shard, keys placed on nutcracker's ketama ring.

Strategy / invariants:
- Placement is `client._ketama.Ring`, built from the shard names and weights in
  the order given, exactly as nutcracker builds it from its `servers:` list; so a
  key written through the proxy is read here from the same shard, and back.
- Each shard is one ordinary `Client` (its own connection, reconnection, limits
  and typed errors). A shard that is down fails only the calls that need it,
  with that client's usual ConnectionLostError / ConnectError / CallTimeoutError;
  every other shard keeps serving. A shard unreachable (or full: TOO_MANY_CONNECTIONS)
  at connect time is left to connect lazily on its first call (`connect_sharded`,
  client/_sharded_connect.py, says which failures are fatal instead).
- Single-key calls go to the key's shard. mget/mput split by shard, run the
  parts concurrently and reassemble in the caller's order; mput is atomic per
  shard only, and checks every pair against its shard's own limits (from hello)
  before sending any part, connecting first a shard it has not reached yet. A
  batch must stay on one shard: the first op picks the shard, an op for another
  shard raises CrossShardError at once, so nothing is ever sent for a batch that
  spans shards. scan merges every shard's ascending stream into one.
"""

from __future__ import annotations

import asyncio
import heapq
from collections.abc import AsyncIterator, Iterable, Mapping
from types import TracebackType
from typing import Any, Literal, overload

from client._args import Key, Value, to_bytes
from client._batch import Batch
from client._client import Client
from client._ketama import Ring
from client.errors import CrossShardError, InterfaceError
from protocol import SCAN_DEFAULT_COUNT

__all__ = ["ShardedBatch", "ShardedClient"]


class ShardedClient:
    """Many bitcask servers as one keyspace, placed as nutcracker places them.

    Make one with `await connect_sharded({...})`. Calls take `timeout=` like
    `Client`'s.

    Attributes:
        ring: the ketama continuum (shard names, weights, hash tag).
        clients: shard name -> its `Client`, for anything per shard
            (`await sc.clients["shard-a"].merge()`).

    Example:
        >>> async with connect_sharded({"shard-a": "10.0.0.1:7379",
        ...                             "shard-b": "10.0.0.2:7379"}) as sc:  # doctest: +SKIP
        ...     await sc.put(b"user:1", b"ann")
        ...     sc.shard_for(b"user:1")
        'shard-b'
    """

    def __init__(self, ring: Ring, clients: Mapping[str, Client]) -> None:
        if list(clients) != list(ring.names):
            raise InterfaceError("clients must be given for every ring name, in ring order")
        self.ring = ring
        self.clients: dict[str, Client] = dict(clients)
        self._by_index: tuple[Client, ...] = tuple(self.clients.values())
        self._closed = False

    def __repr__(self) -> str:
        return f"<ShardedClient {', '.join(self.ring.names)}>"

    @property
    def closed(self) -> bool:
        """True once close() or terminate() was called (as `Client.closed`)."""
        return self._closed

    # ------------------------------------------------------------ placement

    def shard_for(self, key: Key) -> str:
        """The name of the shard that holds `key` (the proxy's choice too)."""
        return self.ring.name_for(to_bytes(key, "key"))

    def client_for(self, key: Key) -> Client:
        """The `Client` of the shard that holds `key`, for any other single-key call."""
        self._check_open()
        return self._by_index[self.ring.index_for(to_bytes(key, "key"))]

    def _check_open(self) -> None:
        if self._closed:
            raise InterfaceError("the sharded client is closed")

    def _group(self, keys: list[bytes]) -> dict[int, list[int]]:
        """Shard index -> positions in `keys`, in first-seen order."""
        groups: dict[int, list[int]] = {}
        index_for = self.ring.index_for
        for pos, key in enumerate(keys):
            groups.setdefault(index_for(key), []).append(pos)
        return groups

    # ------------------------------------------------------------ single keys

    async def get(self, key: Key, *, timeout: float | None = None) -> bytes | None:
        """`Client.get` on the key's shard."""
        return await self.client_for(key).get(key, timeout=timeout)

    async def put(
        self, key: Key, value: Value, ttl: float | None = None, *, timeout: float | None = None
    ) -> None:
        """`Client.put` on the key's shard."""
        await self.client_for(key).put(key, value, ttl, timeout=timeout)

    async def delete(self, key: Key, *, timeout: float | None = None) -> bool:
        """`Client.delete` on the key's shard."""
        return await self.client_for(key).delete(key, timeout=timeout)

    async def exists(self, key: Key, *, timeout: float | None = None) -> bool:
        """`Client.exists` on the key's shard."""
        return await self.client_for(key).exists(key, timeout=timeout)

    async def ttl(self, key: Key, *, timeout: float | None = None) -> float:
        """`Client.ttl` on the key's shard."""
        return await self.client_for(key).ttl(key, timeout=timeout)

    # ------------------------------------------------------------ many keys

    async def mget(
        self, keys: Iterable[Key], *, timeout: float | None = None
    ) -> list[bytes | None]:
        """The values of many keys, in order, read from their shards concurrently.

        Raises:
            The first failing shard's error (its keys cannot be read); the other
            shards' answers are discarded.

        Example:
            >>> await sc.mget([b"a", b"b", b"c"])  # doctest: +SKIP
            [b'1', None, b'3']
        """
        self._check_open()
        if isinstance(keys, bytes | str):
            raise InterfaceError("mget takes an iterable of keys, not a single key")
        ks = [to_bytes(k, "key") for k in keys]
        groups = self._group(ks)
        parts = await _gather(
            self._by_index[s].mget([ks[p] for p in pos], timeout=timeout)
            for s, pos in groups.items()
        )
        out: list[bytes | None] = [None] * len(ks)
        for pos, values in zip(groups.values(), _results(parts), strict=True):
            for p, v in zip(pos, values, strict=True):
                out[p] = v
        return out

    async def mput(
        self,
        items: Mapping[bytes, Value] | Mapping[str, Value] | Iterable[tuple[Key, Value]],
        *,
        timeout: float | None = None,
    ) -> None:
        """Store many pairs: atomic on each shard, NOT across shards.

        The pairs are split by shard and each shard's part is one atomic mput,
        sent concurrently. If a shard fails, its part is not applied (or is in
        doubt, after a lost connection) while other shards' parts may be: the
        error raised is the first failing shard's, with a note naming the shards
        that applied theirs. Keep pairs that must be written together on one
        shard with a hash tag, or use `batch()`.

        Example:
            >>> await sc.mput({b"a": b"1", b"b": b"2"})  # doctest: +SKIP
        """
        self._check_open()
        pairs_in: Iterable[Any] = items.items() if isinstance(items, Mapping) else items
        clients, index_for = self._by_index, self.ring.index_for
        raw: dict[int, list[tuple[bytes, Any]]] = {}
        for pair in pairs_in:
            try:
                key, value = pair
            except (TypeError, ValueError):
                raise InterfaceError("mput takes a mapping or (key, value) pairs") from None
            k = to_bytes(key, "key")
            raw.setdefault(index_for(k), []).append((k, value))
        # every pair is checked (types, sizes, batch limit) by its shard's client before
        # any part is sent: a bad pair must not leave the other shards' parts applied.
        # The limits are the shard's own, from its hello: a shard not reached since
        # connect_sharded (it was down) is connected first, or nothing is sent
        await self._learn_limits(raw, timeout)
        groups: dict[int, list[tuple[bytes, bytes]]] = {}
        for s, pairs in raw.items():
            c = clients[s]
            groups[s] = [(c._key(k), c._value(v)) for k, v in pairs]
            c._batch_size(len(pairs))
        parts = await _gather(clients[s].mput(part, timeout=timeout) for s, part in groups.items())
        failed = [p for p in parts if isinstance(p, BaseException)]
        if failed:
            applied = [
                self.ring.names[s]
                for s, p in zip(groups, parts, strict=True)
                if not isinstance(p, BaseException)
            ]
            err = failed[0]
            err.add_note(f"mput applied on shards {applied}; not on the failing shard(s)")
            raise err

    async def _learn_limits(self, shards: Iterable[int], timeout: float | None) -> None:
        """Connect the shards among `shards` that never answered hello (down when
        connect_sharded ran), so their limits are known; raises the first failure."""
        fresh = [self._by_index[s] for s in shards if not self._by_index[s].server_info]
        if fresh:
            _results(await _gather(c.bound_connection(timeout) for c in fresh))

    def batch(self, *, timeout: float | None = None) -> ShardedBatch:
        """An atomic batch of puts and deletes whose keys must all be on one shard.

        Raises:
            CrossShardError: (from put/delete) a key on another shard than the
                batch's first key; nothing of the batch is sent.

        Example:
            >>> async with sc.batch() as b:  # doctest: +SKIP
            ...     b.put(b"order:{42}:head", b"...")
            ...     b.put(b"order:{42}:lines", b"...")
        """
        self._check_open()
        return ShardedBatch(self, timeout)

    # ------------------------------------------------------------ scanning

    async def scan(
        self, prefix: Key = b"", *, count: int = SCAN_DEFAULT_COUNT, timeout: float | None = None
    ) -> AsyncIterator[bytes]:
        """Every key with `prefix` on every shard, in ascending byte order.

        Each shard is paged as `Client.scan` does (`count` keys a page) and the
        streams are merged; a shard that is down fails the scan with its error.

        Example:
            >>> [k async for k in sc.scan(b"user:")]  # doctest: +SKIP
            [b'user:1', b'user:2']
        """
        self._check_open()
        streams = [c.scan(prefix, count=count, timeout=timeout) for c in self._by_index]
        try:
            firsts = _results(await _gather(anext(s, None) for s in streams))
            heap = [(k, i) for i, k in enumerate(firsts) if k is not None]
            heapq.heapify(heap)
            while heap:
                key, i = heap[0]
                yield key
                nxt = await anext(streams[i], None)
                if nxt is None:
                    heapq.heappop(heap)
                else:
                    heapq.heapreplace(heap, (nxt, i))
        finally:
            for s in streams:
                aclose = getattr(s, "aclose", None)  # Commands.scan is an async generator
                if aclose is not None:
                    await aclose()

    # ------------------------------------------------------------ every shard

    async def ping(
        self, *, timeout: float | None = None, return_exceptions: bool = False
    ) -> dict[str, Any]:
        """Ping every shard, concurrently: name -> reply ("PONG").

        Args:
            timeout: per shard, as `Client.ping`'s.
            return_exceptions: as asyncio.gather's: True puts a failing shard's
                exception in its place in the map instead of raising, so a health
                check sees every shard: `{"a": "PONG", "b": ConnectError(...),
                "c": "PONG"}`.

        Raises:
            the first failing shard's error (by ring order) unless return_exceptions,
            after every shard has answered or failed, with a note naming each
            failing shard and its error and the shards that answered.

        Example:
            >>> down = {n: r for n, r in (await sc.ping(return_exceptions=True)).items()
            ...         if isinstance(r, Exception)}  # doctest: +SKIP
        """
        self._check_open()
        parts = await _gather(c.ping(timeout=timeout) for c in self._by_index)
        return self._every_shard("ping", parts, return_exceptions)

    @overload
    async def stats(
        self, *, timeout: float | None = None, return_exceptions: Literal[False] = False
    ) -> dict[str, dict[str, Any]]: ...
    @overload
    async def stats(
        self, *, timeout: float | None = None, return_exceptions: bool
    ) -> dict[str, dict[str, Any] | Exception]: ...
    async def stats(
        self, *, timeout: float | None = None, return_exceptions: bool = False
    ) -> dict[str, Any]:
        """Every shard's stats, concurrently: name -> stats dict.

        Args and raises as `ping`: with return_exceptions=True a failing shard's
        entry is its exception, and the other shards' stats are all there.

        Example:
            >>> stats = await sc.stats(return_exceptions=True)  # doctest: +SKIP
            >>> sum(s["keys"] for s in stats.values() if isinstance(s, dict))  # doctest: +SKIP
        """
        self._check_open()
        parts = await _gather(c.stats(timeout=timeout) for c in self._by_index)
        return self._every_shard("stats", parts, return_exceptions)

    def _every_shard(self, call: str, parts: list[Any], return_exceptions: bool) -> dict[str, Any]:
        """name -> reply (or exception, when return_exceptions) of a call on every
        shard; else the first failure, with a note on every shard's outcome."""
        for p in parts:  # a cancellation or an interrupt is not a shard's answer
            if isinstance(p, BaseException) and not isinstance(p, Exception):
                raise p
        by_name = dict(zip(self.ring.names, parts, strict=True))
        failed = {n: p for n, p in by_name.items() if isinstance(p, Exception)}
        if not failed or return_exceptions:
            return by_name
        answered = [n for n in by_name if n not in failed]
        err = next(iter(failed.values()))
        errors = "; ".join(f"{n}: {type(e).__name__}: {e}" for n, e in failed.items())
        err.add_note(f"{call} failed on {len(failed)} of {len(parts)} shards ({errors}); "
                     f"answered: {answered} (return_exceptions=True gives every shard's)")  # fmt: skip
        raise err

    # ------------------------------------------------------------ lifetime

    async def close(self, *, timeout: float | None = None) -> None:
        """Close every shard's client (gracefully, as Client.close)."""
        self._closed = True
        await asyncio.gather(*(c.close(timeout=timeout) for c in self._by_index))

    def terminate(self) -> None:
        """Close every shard's connection at once."""
        self._closed = True
        for c in self._by_index:
            c.terminate()

    async def __aenter__(self) -> ShardedClient:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close()


class ShardedBatch:
    """A `Batch` bound to the shard of its first key (see `ShardedClient.batch`).

    Attributes:
        shard: the name of the batch's shard, once an op was added.
        results: as `Batch.results`.
    """

    __slots__ = ("_batch", "_owner", "_timeout", "shard")

    def __init__(self, owner: ShardedClient, timeout: float | None) -> None:
        self._owner = owner
        self._timeout = timeout
        self._batch: Batch | None = None
        self.shard: str | None = None

    def __len__(self) -> int:
        return 0 if self._batch is None else len(self._batch)

    @property
    def results(self) -> list[bool] | None:
        return None if self._batch is None else self._batch.results

    def _for(self, key: Key) -> Batch:
        name = self._owner.shard_for(key)
        if self._batch is None:
            self._batch = self._owner.clients[name].batch(timeout=self._timeout)
            self.shard = name
        elif name != self.shard:
            raise CrossShardError(
                f"key {key!r} is on shard {name!r}, this batch's keys on {self.shard!r}: "
                "a batch is atomic on one shard only (use a hash tag to keep keys together)",
                (str(self.shard), name),
            )
        return self._batch

    def put(self, key: Key, value: Value, ttl: float | None = None) -> ShardedBatch:
        """Add a put (raises CrossShardError for a key on another shard)."""
        self._for(key).put(key, value, ttl)
        return self

    def delete(self, key: Key) -> ShardedBatch:
        """Add a delete (raises CrossShardError for a key on another shard)."""
        self._for(key).delete(key)
        return self

    async def execute(self) -> list[bool]:
        """Send the batch to its shard; an empty batch sends nothing."""
        if self._batch is None:
            return []
        return await self._batch.execute()

    async def __aenter__(self) -> ShardedBatch:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if exc_type is None:
            await self.execute()


async def _gather(aws: Iterable[Any]) -> list[Any]:
    """Run every awaitable to its end; results and exceptions in order."""
    return list(await asyncio.gather(*aws, return_exceptions=True))


def _results(parts: list[Any]) -> list[Any]:
    """`parts` unchanged, or the first exception in it raised."""
    for p in parts:
        if isinstance(p, BaseException):
            raise p
    return parts
