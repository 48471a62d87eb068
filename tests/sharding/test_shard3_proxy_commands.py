"""docs/scaling.md's command table, against a real nutcracker in front of three real
bitcask-servers (not redis-server): what works is split and reassembled, what the
proxy refuses closes only that connection, `redis_auth` with `--auth` shards,
pipelines of 1,000 commands, values of 1 MiB and of the shards' maximum, the empty
key and keys that are not UTF-8 placed alike by the proxy and the sharded client.

Loopback ports only; every process is killed when its test ends.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import Any

import pytest

from client import Ring, connect, connect_sharded
from tests.serverproc import ServerProcess, free_port
from tests.sharding.conftest import Proc, Resp, RespError, nutcracker_yaml

NAMES = ("shard-a", "shard-b", "shard-c")
RING = Ring([(n, 1) for n in NAMES])
MAX_VALUE = 2 * 1024 * 1024  # the shards' --max-value-size here (64 MiB by default)
# docs/scaling.md's proxy config, lines beyond nutcracker_yaml's
DOC_EXTRA = ("backlog: 1024", "preconnect: true", "server_connections: 1")
FAST: dict[str, Any] = {"timeout": 5.0, "reconnect_attempts": 2, "backoff_base": 0.05,
                        "backoff_max": 0.1}  # fmt: skip

Layout = tuple[dict[str, ServerProcess], Proc]


def _start(
    server_factory: Callable[..., ServerProcess],
    nutcracker: Callable[..., Proc],
    server_extra: tuple[str, ...] = (),
    proxy_extra: tuple[str, ...] = (),
) -> Layout:
    extra = ["--max-value-size", str(MAX_VALUE), *server_extra]
    shards = {name: server_factory(extra=extra) for name in NAMES}
    listen = free_port()
    servers = [(shards[n].port, 1, n) for n in NAMES]
    proxy = nutcracker(nutcracker_yaml("bitcask", listen, servers, (*DOC_EXTRA, *proxy_extra)),
                       listen)  # fmt: skip
    return shards, proxy


@pytest.fixture
def layout(server_factory: Callable[..., ServerProcess], nutcracker: Callable[..., Proc]) -> Layout:
    return _start(server_factory, nutcracker)


def _addresses(shards: dict[str, ServerProcess]) -> dict[str, str]:
    return {n: f"127.0.0.1:{s.port}" for n, s in shards.items()}


async def _where(shards: dict[str, ServerProcess], keys: list[bytes]) -> dict[bytes, list[str]]:
    """Which shards hold each key, asked of every shard directly (binary protocol)."""
    found: dict[bytes, list[str]] = {k: [] for k in keys}
    for name, srv in shards.items():
        async with connect("127.0.0.1", srv.port, timeout=10.0) as direct:
            for key, value in zip(keys, await direct.mget(keys), strict=True):
                if value is not None:
                    found[key].append(name)
    return found


def _one_per_shard(prefix: bytes, n: int = 2) -> list[bytes]:
    """`n` keys on each shard."""
    picked: dict[str, list[bytes]] = {name: [] for name in NAMES}
    for i in range(10_000):
        key = b"%d:%s" % (i, prefix)
        bucket = picked[RING.name_for(key)]
        if len(bucket) < n:
            bucket.append(key)
        if all(len(b) == n for b in picked.values()):
            return [k for name in NAMES for k in picked[name]]
    raise AssertionError("no keys for some shard")


async def test_multi_key_commands_split_across_shards_and_reassemble(layout: Layout) -> None:
    shards, proxy = layout
    keys = _one_per_shard(b"m", 3)
    conn = Resp(proxy.port)
    try:
        assert conn.call("MSET", *[x for k in keys for x in (k, b"v" + k)]) == b"OK"
        assert await _where(shards, keys) == {k: [RING.name_for(k)] for k in keys}
        missing = b"no-such-key"
        asked = [keys[4], missing, *keys[::-1]]
        assert conn.call("MGET", *asked) == [b"v" + keys[4], None, *[b"v" + k for k in keys[::-1]]]
        # EXISTS of several keys is NOT split: nutcracker sends it whole to the first
        # key's shard, which counts only the keys it holds (docs/scaling.md says so)
        first = RING.name_for(keys[0])
        on_first = sum(1 for k in keys if RING.name_for(k) == first)
        assert on_first < len(keys)
        assert conn.call("EXISTS", *keys, missing, keys[0]) == on_first + 1
        assert [conn.call("EXISTS", k) for k in keys] == [1] * len(keys)
        tagged = [b"{m:1}:%d" % i for i in range(5)]
        assert conn.call("MSET", *[x for k in tagged for x in (k, b"t")]) == b"OK"
        assert conn.call("EXISTS", *tagged) == 5  # one hash tag: one shard, right count
        assert conn.call("DEL", keys[0], keys[3], keys[6], missing) == 3
        assert conn.call("EXISTS", keys[0], keys[3], keys[6]) == 0
        # single-key commands, one per shard
        counter, timed, other = keys[1], keys[4], keys[7]
        assert [conn.call("INCR", b"n:" + counter) for _ in range(3)] == [1, 2, 3]
        assert conn.call("TTL", timed) == -1
        assert conn.call("EXPIRE", timed, 100) == 1
        assert 0 < int(conn.call("TTL", timed)) <= 100  # type: ignore[call-overload]
        assert conn.call("SET", other, b"x", "NX") is None
        assert conn.call("SET", other, b"x", "XX", "EX", 50) == b"OK"
        assert conn.call("GETDEL", other) == b"x"
        assert conn.call("TTL", b"no-such-key") == -2
        assert conn.call("APPEND", counter, b"+") == len(b"v" + counter) + 1
        assert conn.call("PING") == b"PONG"
    finally:
        conn.close()
    # the whole state, shard by shard
    left = [k for k in keys if k not in (keys[0], keys[3], keys[6], other)]
    where = await _where(shards, [*keys, b"n:" + counter, *tagged])
    assert where == {
        **{k: [RING.name_for(b"m:1")] for k in tagged},
        **{k: [RING.name_for(k)] for k in left},
        **{k: [] for k in (keys[0], keys[3], keys[6], other)},
        b"n:" + counter: [RING.name_for(b"n:" + counter)],
    }


REFUSED = [
    ("KEYS", "*"), ("SCAN", "0"), ("MULTI",), ("DBSIZE",), ("INFO",), ("FLUSHALL",),
    ("RANDOMKEY",), ("SELECT", "0"), ("HELLO", "3"), ("RENAME", "a", "b"),
    ("MSETNX", "a", "1", "b", "2"),
]  # fmt: skip


async def test_a_refused_command_closes_only_its_connection(layout: Layout) -> None:
    shards, proxy = layout
    keys = _one_per_shard(b"r")
    other = Resp(proxy.port)
    try:
        assert other.call("MSET", *[x for k in keys for x in (k, b"1")]) == b"OK"
        for command in REFUSED:
            refused = Resp(proxy.port)
            try:
                assert refused.call("GET", keys[0]) == b"1"
                with pytest.raises(ConnectionError):
                    refused.call(*command)
            finally:
                refused.close()
            # the other connection, open all along, is served; nothing flushed or renamed
            assert other.call("MGET", *keys) == [b"1"] * len(keys), command
    finally:
        other.close()
    assert await _where(shards, keys) == {k: [RING.name_for(k)] for k in keys}


async def test_a_pipeline_of_1000_commands_answers_in_order(layout: Layout) -> None:
    shards, proxy = layout
    keys = [b"%d:pipe" % i for i in range(1_000)]
    conn = Resp(proxy.port)
    try:
        assert conn.pipeline([("SET", k, b"v" + k) for k in keys]) == [b"OK"] * 1_000
        mixed: list[tuple[Any, ...]] = []
        want: list[object] = []
        for i, k in enumerate(keys):
            if i % 3 == 0:
                mixed.append(("GET", k))
                want.append(b"v" + k)
            elif i % 3 == 1:
                mixed.append(("MGET", k, keys[i - 1], b"absent"))
                want.append([b"v" + k, b"v" + keys[i - 1], None])
            else:
                mixed.append(("INCR", b"c:" + k))
                want.append(1)
        assert conn.pipeline(mixed) == want
    finally:
        conn.close()
    async with connect_sharded(_addresses(shards), **FAST) as sc:
        assert await sc.mget(keys) == [b"v" + k for k in keys]


async def test_values_of_1_mib_and_of_the_maximum_pass_the_proxy(layout: Layout) -> None:
    shards, proxy = layout
    one_mib, biggest = os.urandom(1 << 20), os.urandom(MAX_VALUE)
    conn = Resp(proxy.port)
    try:
        assert conn.call("SET", b"big:1", one_mib) == b"OK"
        assert conn.call("SET", b"big:max", biggest) == b"OK"
        over = conn.call("SET", b"big:over", biggest + b"x")
        assert isinstance(over, RespError), over
        assert over.message.startswith("ERR string exceeds maximum allowed size"), over
        assert "\n" not in over.message
        assert conn.call("GET", b"big:1") == one_mib  # the connection goes on
        assert conn.call("MGET", b"big:max", b"big:over") == [biggest, None]
    finally:
        conn.close()
    async with connect_sharded(_addresses(shards), **FAST) as sc:
        assert await sc.mget([b"big:1", b"big:max", b"big:over"]) == [one_mib, biggest, None]


async def test_redis_auth_in_front_of_shards_run_with_auth(
    server_factory: Callable[..., ServerProcess], nutcracker: Callable[..., Proc]
) -> None:
    shards, proxy = _start(server_factory, nutcracker, ("--auth", "s3cret"),
                           ("redis_auth: s3cret",))  # fmt: skip
    keys = _one_per_shard(b"auth")
    conn = Resp(proxy.port)
    try:
        refused = conn.call("GET", keys[0])
        assert isinstance(refused, RespError) and refused.message.startswith("NOAUTH"), refused
        wrong = conn.call("AUTH", "wrong")
        assert isinstance(wrong, RespError) and "s3cret" not in wrong.message, wrong
        assert conn.call("AUTH", "s3cret") == b"OK"
        assert conn.call("MSET", *[x for k in keys for x in (k, b"v" + k)]) == b"OK"
        assert conn.call("MGET", *keys) == [b"v" + k for k in keys]
    finally:
        conn.close()
    async with connect_sharded(_addresses(shards), auth="s3cret", **FAST) as sc:
        assert await sc.mget(keys) == [b"v" + k for k in keys]


async def test_the_empty_key_and_non_utf8_keys_place_alike_both_ways(layout: Layout) -> None:
    shards, proxy = layout
    odd = [b"", b"\xff", b"\x80\x00\xfe", b"\xc3\x28", b"{\xff}:a", b"{\xff}:b", b"\xe9t\xe9"]
    odd += [b"%d:\xff\xfe" % i for i in range(200)]
    conn = Resp(proxy.port)
    try:
        assert conn.pipeline([("SET", k, b"p" + k) for k in odd]) == [b"OK"] * len(odd)
    finally:
        conn.close()
    assert await _where(shards, odd) == {k: [RING.name_for(k)] for k in odd}
    assert RING.name_for(b"{\xff}:a") == RING.name_for(b"{\xff}:b")
    async with connect_sharded(_addresses(shards), **FAST) as sc:
        assert await sc.mget(odd) == [b"p" + k for k in odd]
        await sc.mput({k: b"c" + k for k in odd})
    conn = Resp(proxy.port)
    try:
        assert conn.pipeline([("GET", k) for k in odd]) == [b"c" + k for k in odd]
    finally:
        conn.close()
