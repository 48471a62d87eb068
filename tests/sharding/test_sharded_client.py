"""connect_sharded against three real bitcask-servers (loopback ports, --sync always)."""

from __future__ import annotations

import asyncio
import random
from collections.abc import AsyncIterator, Callable
from typing import Any

import pytest

from client import (
    BatchTooLargeError,
    ConnectionLostError,
    CrossShardError,
    InterfaceError,
    KeyTooLargeError,
    Ring,
    ShardedClient,
    TooManyConnectionsError,
    ValueTooLargeError,
    connect,
    connect_sharded,
)
from client._ketama import fnv1a_64
from tests.serverproc import ServerProcess

NAMES = ("shard-a", "shard-b", "shard-c")
# small, bounded reconnection so a dead shard fails its calls quickly
FAST: dict[str, Any] = {
    "timeout": 5.0,
    "reconnect_attempts": 2,
    "backoff_base": 0.05,
    "backoff_max": 0.1,
}


@pytest.fixture
def shards(server_factory: Callable[..., ServerProcess]) -> dict[str, ServerProcess]:
    return {name: server_factory() for name in NAMES}


@pytest.fixture
async def sc(shards: dict[str, ServerProcess]) -> AsyncIterator[ShardedClient]:
    client = await connect_sharded({n: f"127.0.0.1:{s.port}" for n, s in shards.items()}, **FAST)
    yield client
    await client.close()


def _keys_by_shard(ring: Ring, n: int) -> dict[str, list[bytes]]:
    out: dict[str, list[bytes]] = {name: [] for name in ring.names}
    for i in range(n):
        key = b"%d:item" % i
        out[ring.name_for(key)].append(key)
    return out


async def test_keys_land_on_the_shard_the_ring_names(
    sc: ShardedClient, shards: dict[str, ServerProcess]
) -> None:
    keys = [b"%d:user" % i for i in range(3000)]
    await sc.mput({k: b"v" + k for k in keys[:1500]})
    for k in keys[1500:]:
        await sc.put(k, b"v" + k)
    ring = Ring([(n, 1) for n in NAMES])
    for name, srv in shards.items():
        async with connect("127.0.0.1", srv.port) as direct:
            held = {k async for k in direct.scan()}
        assert held == {k for k in keys if ring.name_for(k) == name}
        assert len(held) >= 300  # each shard holds at least 10%
    assert await sc.get(keys[7]) == b"v" + keys[7]
    assert await sc.exists(keys[8])
    assert await sc.delete(keys[8])
    assert not await sc.exists(keys[8])
    await sc.put(b"session", b"x", ttl=60)
    assert 0 < await sc.ttl(b"session") <= 60
    assert await sc.ttl(b"missing") == -2


async def test_mget_and_mput_keep_the_callers_order(sc: ShardedClient) -> None:
    pairs = [(b"%d:o" % i, b"value-%d" % i) for i in range(400)]
    await sc.mput(pairs)
    order = [k for k, _ in pairs] + [b"%d:absent" % i for i in range(50)]
    random.Random(7).shuffle(order)
    values = dict(pairs)
    assert await sc.mget(order) == [values.get(k) for k in order]
    assert len({sc.shard_for(k) for k in order}) == 3
    assert await sc.mget([]) == []
    with pytest.raises(InterfaceError):
        await sc.mget(b"single-key")  # type: ignore[arg-type]


async def test_scan_merges_every_shard_in_order(sc: ShardedClient) -> None:
    keys = sorted(b"%d:s" % i for i in range(250))
    await sc.mput({k: b"" for k in keys})
    await sc.put(b"other", b"")
    assert [k async for k in sc.scan(count=7)] == sorted([*keys, b"other"])
    assert [k async for k in sc.scan(b"1", count=10)] == [k for k in keys if k.startswith(b"1")]


async def test_a_batch_across_shards_fails_locally_and_sends_nothing(sc: ShardedClient) -> None:
    by_shard = _keys_by_shard(sc.ring, 100)
    k1, k2 = by_shard["shard-a"][0], by_shard["shard-b"][0]
    with pytest.raises(CrossShardError) as info:
        async with sc.batch() as b:
            b.put(k1, b"1")
            b.put(k2, b"2")
    assert set(info.value.shards) == {"shard-a", "shard-b"}
    assert await sc.mget([k1, k2]) == [None, None]
    # keys under one hash tag share a shard, so their batch is atomic there
    async with sc.batch() as b:
        b.put(b"order:{42}:head", b"h")
        b.put(b"order:{42}:lines", b"l")
        b.delete(b"order:{42}:old")
    assert b.results == [True, True, False]
    empty = sc.batch()
    assert await empty.execute() == [] and empty.shard is None and len(empty) == 0
    assert b.shard == sc.shard_for(b"42")
    assert await sc.mget([b"order:{42}:head", b"order:{42}:lines"]) == [b"h", b"l"]


async def test_a_killed_shard_fails_only_its_keys_and_comes_back(
    sc: ShardedClient, shards: dict[str, ServerProcess]
) -> None:
    by_shard = _keys_by_shard(sc.ring, 900)
    everything = {k: b"v" + k for ks in by_shard.values() for k in ks}
    await sc.mput(everything)
    victim = shards["shard-b"]
    victim.kill()  # SIGKILL
    for k in by_shard["shard-b"][:5]:
        with pytest.raises(ConnectionLostError):
            await sc.get(k)
        with pytest.raises(ConnectionLostError):
            await sc.put(k, b"new")
    for name in ("shard-a", "shard-c"):
        live = by_shard[name][:50]
        assert await sc.mget(live) == [everything[k] for k in live]
        await sc.put(live[0], b"still-writable")
        await sc.put(live[0], everything[live[0]])
    with pytest.raises(ConnectionLostError):
        await sc.mget([by_shard["shard-a"][0], by_shard["shard-b"][0]])
    with pytest.raises(ConnectionLostError):
        await sc.ping()
    mixed = {by_shard["shard-a"][1]: b"m1", by_shard["shard-b"][1]: b"m2"}
    with pytest.raises(ConnectionLostError) as info:
        await sc.mput(mixed)
    assert "mput applied on shards ['shard-a']" in "".join(info.value.__notes__)
    assert await sc.get(by_shard["shard-a"][1]) == b"m1"  # atomic per shard only
    everything[by_shard["shard-a"][1]] = b"m1"
    victim.start()  # same port, same data directory, --sync always
    assert await sc.mget(list(everything)) == list(everything.values())
    assert (await sc.ping()) == dict.fromkeys(NAMES, "PONG")


async def test_a_shard_down_at_connect_time_is_connected_on_first_use(
    shards: dict[str, ServerProcess],
) -> None:
    shards["shard-c"].kill()
    addresses = {n: f"127.0.0.1:{s.port}" for n, s in shards.items()}
    async with connect_sharded(addresses, **FAST) as sc:
        by_shard = _keys_by_shard(sc.ring, 300)
        await sc.put(by_shard["shard-a"][0], b"a")
        with pytest.raises(ConnectionLostError):
            await sc.put(by_shard["shard-c"][0], b"c")
        shards["shard-c"].start()
        await sc.put(by_shard["shard-c"][0], b"c")
        assert await sc.get(by_shard["shard-c"][0]) == b"c"


async def test_no_shard_reachable_fails_to_connect(shards: dict[str, ServerProcess]) -> None:
    for srv in shards.values():
        srv.kill()
    with pytest.raises(ConnectionLostError):
        await connect_sharded({n: f"127.0.0.1:{s.port}" for n, s in shards.items()}, **FAST)


@pytest.mark.parametrize(
    ("shards_arg", "kwargs"),
    [
        pytest.param({}, {}, id="no-shards"),
        pytest.param({"a": "nohost"}, {}, id="no-port"),
        pytest.param({"a": "h:1"}, {"weights": {"b": 2}}, id="weight-of-unknown"),
        pytest.param({"a": "h:1"}, {"weights": {"a": 0}}, id="zero-weight"),
        pytest.param({"a": "h:1", "b": "h:2"}, {"hash_tag": "{"}, id="one-char-tag"),
    ],
)
def test_bad_arguments_fail_before_connecting(
    shards_arg: dict[str, str], kwargs: dict[str, object]
) -> None:
    with pytest.raises(InterfaceError):
        connect_sharded(shards_arg, **kwargs)  # type: ignore[arg-type]


async def test_urls_and_weights(shards: dict[str, ServerProcess]) -> None:
    addresses = {n: s.url for n, s in shards.items()}
    async with connect_sharded(addresses, weights={"shard-a": 3}, **FAST) as sc:
        assert sc.ring.servers == (("shard-a", 3), ("shard-b", 1), ("shard-c", 1))
        counts = dict.fromkeys(NAMES, 0)
        for i in range(2000):
            counts[sc.shard_for(b"%d:w" % i)] += 1
        assert counts["shard-a"] > counts["shard-b"] and counts["shard-a"] > counts["shard-c"]
        await sc.put(b"k", b"v")
        stats = await sc.stats()
        assert sum(s["keys"] for s in stats.values()) == 1
        assert sc.ring.signed_char
    async with connect_sharded(addresses, signed_char=False, **FAST) as sc:
        key = b"\xff\x80raw"
        assert sc.ring.hash(key) == fnv1a_64(key, signed_char=False) != fnv1a_64(key)
        await sc.put(key, b"v")
        assert await sc.client_for(key).get(key) == b"v"


@pytest.mark.parametrize(
    ("bad_value", "error"),
    [
        pytest.param(123, InterfaceError, id="not-bytes"),
        pytest.param(None, ValueTooLargeError, id="too-large"),
    ],
)
async def test_an_mput_with_a_bad_pair_writes_nothing_on_any_shard(
    sc: ShardedClient, bad_value: Any, error: type[Exception]
) -> None:
    # the pairs' checks fail before anything is sent, as Client.mput's do; they used to
    # run per shard, so the shards whose part was fine had already stored it
    keys = _keys_by_shard(sc.ring, 60)
    good = [(keys[name][0], b"ok") for name in NAMES]
    bad = keys["shard-c"][1]
    if bad_value is None:
        bad_value = b"x" * (sc.clients["shard-c"].limits.max_value_size + 1)
    with pytest.raises(error):
        await sc.mput([*good, (bad, bad_value)])
    assert await sc.mget([k for k, _ in good]) == [None, None, None]
    too_long = b"k" * (sc.clients["shard-a"].limits.max_key_size + 1)
    with pytest.raises(KeyTooLargeError):
        await sc.mput([*good, (too_long, b"v")])
    assert await sc.mget([k for k, _ in good]) == [None, None, None]


async def test_a_full_shard_at_connect_time_is_connected_on_first_use(
    server_factory: Callable[..., ServerProcess],
) -> None:
    # a shard at its --max-connections answers TOO_MANY_CONNECTIONS: like a shard that
    # is down, it fails only its own keys (it used to fail connect_sharded as a whole)
    full = ["--max-connections", "1"]
    servers = {n: server_factory(extra=full if n == "shard-c" else []) for n in NAMES}
    occupant = None
    for _ in range(50):  # the fixture's readiness probe may hold the slot a moment
        try:
            occupant = await connect("127.0.0.1", servers["shard-c"].port)
            break
        except TooManyConnectionsError:
            await asyncio.sleep(0.1)
    assert occupant is not None, "the only slot of shard-c never freed up"
    addresses = {n: f"127.0.0.1:{s.port}" for n, s in servers.items()}
    try:
        async with connect_sharded(addresses, **FAST) as sc:
            by_shard = _keys_by_shard(sc.ring, 300)
            await sc.put(by_shard["shard-a"][0], b"a")
            with pytest.raises(ConnectionLostError):
                await sc.put(by_shard["shard-c"][0], b"c")
            await occupant.close()
            occupant = None
            await sc.put(by_shard["shard-c"][0], b"c")
            assert await sc.get(by_shard["shard-c"][0]) == b"c"
    finally:
        if occupant is not None:
            await occupant.close()


@pytest.mark.parametrize(
    ("limit", "pairs_on_c", "error"),
    [
        pytest.param(["--max-batch", "5"], 6, BatchTooLargeError, id="max-batch"),
        pytest.param(["--max-value-size", "8"], 1, ValueTooLargeError, id="max-value-size"),
    ],
)
async def test_an_mput_checks_a_late_shard_against_its_own_limits(
    server_factory: Callable[..., ServerProcess],
    limit: list[str],
    pairs_on_c: int,
    error: type[Exception],
) -> None:
    # shard-c was down when connect_sharded ran, so its client still had the default
    # limits: the mput's pre-check passed, shard-a stored its pair, and only then did
    # shard-c refuse its part (BATCH_TOO_LARGE / VALUE_TOO_LARGE from the server)
    servers = {n: server_factory(extra=limit if n == "shard-c" else []) for n in NAMES}
    servers["shard-c"].kill()
    addresses = {n: f"127.0.0.1:{s.port}" for n, s in servers.items()}
    async with connect_sharded(addresses, **FAST) as sc:
        servers["shard-c"].start()
        by_shard = _keys_by_shard(sc.ring, 300)
        tag = b"{" + by_shard["shard-c"][0] + b"}"  # keys placed as that one
        on_c = [(tag + b":%d" % i, b"twelve bytes") for i in range(pairs_on_c)]
        on_a = by_shard["shard-a"][0]
        with pytest.raises(error):
            await sc.mput([(on_a, b"a"), *on_c])
        assert await sc.get(on_a) is None
        assert [await sc.get(k) for k, _ in on_c] == [None] * pairs_on_c
        await sc.mput([(on_a, b"a"), *on_c[:1]] if pairs_on_c > 1 else [(on_a, b"a")])
        assert await sc.get(on_a) == b"a"


# ---- ping()/stats() with one shard of three down: every shard's outcome ----
# Three real bitcask-servers on loopback ports; one is killed (SIGKILL). A health check
# must learn that the other two answer, and what the down one said: by the per-shard
# map (return_exceptions=True) or by the note on the raised error.


async def test_one_shard_down_every_shard_is_reported(
    sc: ShardedClient, shards: dict[str, ServerProcess]
) -> None:
    keys = [b"%d:k" % i for i in range(60)]
    await sc.mput({k: b"v" + k for k in keys})
    held = {n: sum(1 for k in keys if sc.shard_for(k) == n) for n in NAMES}
    assert all(held.values())  # each shard holds some
    assert await sc.ping(return_exceptions=True) == dict.fromkeys(NAMES, "PONG")

    shards["shard-b"].kill()

    pings = await sc.ping(return_exceptions=True)
    assert list(pings) == list(NAMES)
    assert (pings["shard-a"], pings["shard-c"]) == ("PONG", "PONG")
    assert isinstance(pings["shard-b"], ConnectionLostError)

    stats = await sc.stats(return_exceptions=True)
    assert isinstance(stats["shard-b"], ConnectionLostError)
    up = {n: stats[n] for n in ("shard-a", "shard-c")}
    assert {n: s["keys"] for n, s in up.items() if isinstance(s, dict)} == {
        n: held[n] for n in ("shard-a", "shard-c")
    }

    # the default still raises (the first failing shard's error), now saying what
    # every shard did
    for call in (sc.ping, sc.stats):
        with pytest.raises(ConnectionLostError) as info:
            await call()
        note = "".join(info.value.__notes__)
        assert f"{call.__name__} failed on 1 of 3 shards (shard-b: " in note
        assert "answered: ['shard-a', 'shard-c']" in note

    # the live shards' keys are all still served, the down one's fail alone
    for k in keys:
        if sc.shard_for(k) == "shard-b":
            with pytest.raises(ConnectionLostError):
                await sc.get(k)
        else:
            assert await sc.get(k) == b"v" + k

    shards["shard-b"].start()  # same port and data: every shard answers again
    assert await sc.ping() == dict.fromkeys(NAMES, "PONG")
    assert sum(s["keys"] for s in (await sc.stats()).values()) == len(keys)


async def test_every_shard_down_is_every_shard_an_error(
    sc: ShardedClient, shards: dict[str, ServerProcess]
) -> None:
    for srv in shards.values():
        srv.kill()
    pings = await sc.ping(return_exceptions=True)
    assert list(pings) == list(NAMES)
    assert all(isinstance(p, ConnectionLostError) for p in pings.values())
    with pytest.raises(ConnectionLostError) as info:
        await sc.ping()
    assert "ping failed on 3 of 3 shards" in "".join(info.value.__notes__)
    assert "answered: []" in "".join(info.value.__notes__)
