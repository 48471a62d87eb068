"""client._ketama places keys exactly where the real nutcracker does.

10,000 keys (ASCII, bytes >= 0x80, hash-tagged, empty-tag) are written through a
real nutcracker to real redis-server backends; then each backend is asked which
keys it holds (SCAN, straight to the backend) and every key must be where
`Ring.name_for` says. Runs on loopback ports (no network namespaces).
"""

from __future__ import annotations

import collections
from collections.abc import Callable

import pytest

from client._ketama import Ring
from tests.sharding.conftest import Cluster, Resp, RespError

N_KEYS = 10_000


def _keys() -> list[bytes]:
    keys = [b"key:%d" % i for i in range(N_KEYS - 1_000)]
    keys += [b"user:{%d}:field:%d" % (i % 40, i) for i in range(600)]  # 40 tags
    keys += [b"\xff\x80raw-%d-\xe9\x01" % i for i in range(300)]  # sign-extended bytes
    keys += [b"{}empty-tag-%d" % i for i in range(50)]  # "{}" hashes the whole key
    keys += [b"only{open-%d" % i for i in range(50)]  # no closing brace
    assert len(keys) == N_KEYS
    return keys


def _write_through_proxy(cluster: Cluster, keys: list[bytes]) -> None:
    proxy = Resp(cluster.proxy.port)
    try:
        for start in range(0, len(keys), 500):
            chunk = keys[start : start + 500]
            replies = proxy.pipeline([("SET", k, b"v:" + k) for k in chunk])
            assert all(r == b"OK" for r in replies), [r for r in replies if r != b"OK"][:3]
        # and read back through the proxy: every key served from its shard
        for start in range(0, len(keys), 500):
            chunk = keys[start : start + 500]
            assert proxy.pipeline([("GET", k) for k in chunk]) == [b"v:" + k for k in chunk]
    finally:
        proxy.close()


def _held(cluster: Cluster) -> dict[str, set[bytes]]:
    held: dict[str, set[bytes]] = {}
    for name, backend in cluster.backends.items():
        conn = Resp(backend.port)
        try:
            held[name] = conn.keys()
        finally:
            conn.close()
    return held


def _check_placement(cluster: Cluster, ring: Ring, keys: list[bytes]) -> dict[str, set[bytes]]:
    held = _held(cluster)
    assert sum(len(v) for v in held.values()) == len(keys)
    misplaced = [
        (k, name, ring.name_for(k))
        for name, ks in held.items()
        for k in ks
        if ring.name_for(k) != name
    ]
    assert misplaced == [], f"{len(misplaced)} keys not where the ring says: {misplaced[:5]}"
    return held


@pytest.mark.parametrize(
    "weights",
    [
        pytest.param({"shard-a": 1, "shard-b": 1, "shard-c": 1}, id="equal"),
        pytest.param({"shard-a": 1, "shard-b": 2, "shard-c": 3}, id="weights-1-2-3"),
        # float32 arithmetic gives shard-b 228 points where exact arithmetic gives 232
        pytest.param({"shard-a": 1, "shard-b": 29, "shard-c": 30}, id="weights-1-29-30"),
    ],
)
def test_every_key_is_on_the_shard_the_ring_names(
    redis_cluster: Callable[[dict[str, int]], Cluster], weights: dict[str, int]
) -> None:
    cluster = redis_cluster(weights)
    ring = Ring(list(weights.items()))
    keys = _keys()
    _write_through_proxy(cluster, keys)
    held = _check_placement(cluster, ring, keys)
    counts = {name: len(ks) for name, ks in held.items()}
    if len(set(weights.values())) == 1:
        assert all(c >= N_KEYS // 10 for c in counts.values()), counts


def test_hash_tagged_keys_land_together(
    redis_cluster: Callable[[dict[str, int]], Cluster],
) -> None:
    cluster = redis_cluster({"shard-a": 1, "shard-b": 1, "shard-c": 1})
    # fnv1a_64 mixes the last bytes of a key weakly, so tags vary at the front
    tags = [b"%d:customer" % i for i in range(200)]
    keys = [b"order:{%s}:%s" % (t, part) for t in tags for part in (b"head", b"lines", b"x")]
    _write_through_proxy(cluster, keys)
    held = _held(cluster)
    where = {k: name for name, ks in held.items() for k in ks}
    by_tag: dict[bytes, set[str]] = collections.defaultdict(set)
    for k in keys:
        by_tag[k.split(b"}")[0]].add(where[k])
    assert all(len(shards) == 1 for shards in by_tag.values())
    # and the tags themselves spread over every shard
    assert {next(iter(s)) for s in by_tag.values()} == {"shard-a", "shard-b", "shard-c"}


def test_commands_the_proxy_refuses_and_splits(
    redis_cluster: Callable[[dict[str, int]], Cluster],
) -> None:
    """What docs/scaling.md says about commands through the proxy."""
    cluster = redis_cluster({"shard-a": 1, "shard-b": 1, "shard-c": 1})
    proxy = Resp(cluster.proxy.port)
    try:
        keys = [b"k%d" % i for i in range(30)]
        # MSET and MGET are split across shards and reassembled in order
        assert proxy.call("MSET", *[x for k in keys for x in (k, b"v" + k)]) == b"OK"
        assert proxy.call("MGET", *keys) == [b"v" + k for k in keys]
        assert proxy.call("DEL", *keys[:10]) == 10
        assert proxy.call("PING") == b"PONG"
        # no key, or a whole-keyspace command: nutcracker closes the connection
        for refused in (("MULTI",), ("KEYS", "*"), ("SCAN", "0")):
            conn = Resp(cluster.proxy.port)
            try:
                with pytest.raises((ConnectionError, OSError)):
                    reply = conn.call(*refused)
                    assert isinstance(reply, RespError)
                    raise ConnectionError(reply.message)
            finally:
                conn.close()
    finally:
        proxy.close()
