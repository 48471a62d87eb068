"""`connect_sharded()`: the ring and one `Client` per shard, connected together.

Strategy / invariants:
- The ring is built from the shard names and weights in the order given, as
  nutcracker builds it from its `servers:` list (client/_ketama.py); each shard
  gets an ordinary `Client` from the same options (a token in a shard's URL wins
  for that shard). The `ShardedClient` (client/_sharded.py) only gets them once
  every shard's first connection attempt has ended.
- At connect time a shard that is down (ConnectError) or full
  (TOO_MANY_CONNECTIONS) is left to connect on its first call, as after a lost
  connection; only when no shard at all answers does `connect_sharded` fail. Any
  other failure fails it at once, and every shard already connected is dropped:
  a wrong token, another protocol version, and a shard whose address is a Redis
  port (RedisPortError: a wrong address, not a shard that is down), which is
  raised with the shard's name in front of the client's message.
"""

from __future__ import annotations

import asyncio
from collections.abc import Generator, Mapping
from types import TracebackType
from typing import Any

from client._client import Client
from client._config import make_config
from client._ketama import Ring
from client._sharded import ShardedClient
from client.errors import ConnectError, InterfaceError, RedisPortError, TooManyConnectionsError

__all__ = ["connect_sharded"]


def _named(name: str, outcome: Any) -> Any:
    """A shard's connect outcome; a RedisPortError says which shard's address it is."""
    if not isinstance(outcome, RedisPortError):
        return outcome
    err = RedisPortError(f"shard {name!r}: {outcome}", outcome.address, outcome.redis_server)
    err.__cause__ = outcome
    return err


def _address(name: str, address: str) -> tuple[str, int | None]:
    """("host", port) from "host:port" / "[v6]:port", or (URL, None) for bitcask://."""
    if not isinstance(address, str) or not address:
        raise InterfaceError(f"shard {name!r}: address must be 'host:port' or a bitcask:// URL")
    if address.startswith("bitcask://"):
        return address, None
    host, sep, port = address.rpartition(":")
    if not sep or not port.isdigit():
        raise InterfaceError(f"shard {name!r}: address {address!r} is not host:port")
    return host.strip("[]"), int(port)


class _ConnectingSharded:
    """What connect_sharded() returns: await it, or use it with `async with`."""

    __slots__ = ("_client", "_clients", "_ring")

    def __init__(self, ring: Ring, clients: dict[str, Client]) -> None:
        self._ring = ring
        self._clients = clients
        self._client: ShardedClient | None = None

    async def _start(self) -> ShardedClient:
        clients = list(self._clients.values())
        try:
            outcomes = await asyncio.gather(*(c._start() for c in clients), return_exceptions=True)
        except BaseException:  # cancelled: the shards already connected are dropped too
            for c in clients:
                c.terminate()
            raise
        # a full shard (TOO_MANY_CONNECTIONS) is down for now, as one that is unreachable:
        # its Client reconnects on first use, as it would after losing the connection.
        # A Redis port is a wrong address, not a shard that is down: named, and fatal
        outcomes = [_named(name, o) for name, o in zip(self._clients, outcomes, strict=True)]
        unavailable = (ConnectError, TooManyConnectionsError)
        fatal = [
            o
            for o in outcomes
            if isinstance(o, BaseException)
            and (not isinstance(o, unavailable) or isinstance(o, RedisPortError))
        ]
        down = [o for o in outcomes if isinstance(o, unavailable)]
        if fatal or len(down) == len(clients):
            for c in clients:
                c.terminate()
            raise (fatal or down)[0]
        return ShardedClient(self._ring, self._clients)

    def __await__(self) -> Generator[Any, None, ShardedClient]:
        return self._start().__await__()

    async def __aenter__(self) -> ShardedClient:
        self._client = await self._start()
        return self._client

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if self._client is not None:
            await self._client.close()


def connect_sharded(
    shards: Mapping[str, str],
    *,
    weights: Mapping[str, int] | None = None,
    hash_tag: str = "{}",
    signed_char: bool = True,
    auth: str | bytes | None = None,
    timeout: float | None = 5.0,
    **options: Any,
) -> _ConnectingSharded:
    """Connect to every shard; keys are placed as nutcracker places them.

    Args:
        shards: shard name -> "host:port" or "bitcask://[:token@]host:port" URL.
            The names must be those after the addresses in nutcracker's
            `servers:` list (`- 10.0.0.1:7379:1 shard-a`), in any order: ketama
            hashes the names, not the addresses, so a shard can move to a new
            address without moving keys.
        weights: shard name -> weight (default 1), as in `host:port:weight`.
        hash_tag: the pool's `hash_tag`. "{}" by default, as docs/scaling.md's
            config; "" for a pool without a `hash_tag:` line (nutcracker's default
            is no tag: `user:{42}` would otherwise place apart from the proxy).
        signed_char: hash bytes >= 0x80 as nutcracker built for x86-64 does (True)
            or as an arm64 build does (False); ASCII keys place the same either way.
        auth, timeout, **options: for every shard's `Client`, as in `connect()`
            (a token in a shard's URL wins for that shard).

    Returns:
        An awaitable giving a `ShardedClient`; also an async context manager.

    Raises:
        ConnectError, TooManyConnectionsError: no shard could be connected (a shard
            that is down or full while others answer is connected lazily, on its
            first call).
        AuthRequiredError, AuthFailedError, UnsupportedVersionError: from any shard.
        RedisPortError: a shard's address answers the Redis protocol (its message
            names the shard).
        InterfaceError: bad arguments (names, weights, addresses).

    Example:
        >>> sc = await connect_sharded(
        ...     {"shard-a": "10.0.0.1:7379", "shard-b": "10.0.0.2:7379"},
        ...     weights={"shard-b": 2}, timeout=2.0)  # doctest: +SKIP
        >>> await sc.get(b"user:1")  # doctest: +SKIP
    """
    if not isinstance(shards, Mapping) or not shards:
        raise InterfaceError("shards must be a non-empty mapping of name -> address")
    w = dict(weights or {})
    unknown = set(w) - set(shards)
    if unknown:
        raise InterfaceError(f"weights for unknown shards: {sorted(unknown)}")
    if not isinstance(hash_tag, str):
        raise InterfaceError("hash_tag must be a str such as '{}'")
    ring = Ring(
        [(name, w.get(name, 1)) for name in shards],
        hash_tag=hash_tag.encode(),
        signed_char=signed_char,
    )
    options.setdefault("timeout", timeout)
    clients: dict[str, Client] = {}
    for name, address in shards.items():
        host, port = _address(name, address)
        clients[name] = Client(make_config(host, port, auth=auth, **options))
    return _ConnectingSharded(ring, clients)
