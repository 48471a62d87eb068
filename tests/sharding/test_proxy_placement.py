"""client._ketama places keys exactly where the real nutcracker does.

10,000 keys (ASCII, bytes >= 0x80, hash-tagged, empty-tag) are written through a
real nutcracker to real redis-server backends; then each backend is asked which
keys it holds (SCAN, straight to the backend) and every key must be where
`Ring.name_for` says. Runs on loopback ports (no network namespaces).
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import random
import subprocess
from collections.abc import Callable
from pathlib import Path

import pytest

from client import InterfaceError
from client._ketama import Ring, fnv1a_64, read_nutcracker_config
from tests.serverproc import free_port
from tests.sharding.conftest import (
    Cluster,
    Proc,
    Resp,
    RespError,
    nutcracker_yaml,
    placement_keys,
    require,
    tag_of,
    tagged_keys,
)

N_KEYS = 10_000


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
    keys = placement_keys(N_KEYS)
    _write_through_proxy(cluster, keys)
    held = _check_placement(cluster, ring, keys)
    counts = {name: len(ks) for name, ks in held.items()}
    if len(set(weights.values())) == 1:
        assert all(c >= N_KEYS // 10 for c in counts.values()), counts


def test_hash_tagged_keys_land_together(
    redis_cluster: Callable[[dict[str, int]], Cluster],
) -> None:
    cluster = redis_cluster({"shard-a": 1, "shard-b": 1, "shard-c": 1})
    keys = tagged_keys()
    _write_through_proxy(cluster, keys)
    held = _held(cluster)
    where = {k: name for name, ks in held.items() for k in ks}
    by_tag: dict[bytes, set[str]] = collections.defaultdict(set)
    for k in keys:
        by_tag[tag_of(k)].add(where[k])
    assert all(len(shards) == 1 for shards in by_tag.values())
    # and the tags themselves spread over every shard
    assert {next(iter(s)) for s in by_tag.values()} == {"shard-a", "shard-b", "shard-c"}


WORKS = [
    (("SET", "a", "1", "EX", "100", "NX"), b"OK"),
    (("GET", "a"), b"1"),
    (("EXISTS", "a", "b", "c"), 1),
    (("EXPIRE", "a", "50"), 1),
    (("INCR", "n"), 1),
    (("APPEND", "a", "2"), 2),
    (("GETDEL", "a"), b"12"),
    (("MSET", *[x for i in range(30) for x in (f"k{i}", f"v{i}")]), b"OK"),
    (("MGET", "k3", "nope", "k17", "k29"), [b"v3", None, b"v17", b"v29"]),
    (("DEL", *[f"k{i}" for i in range(30)]), 30),
    (("TTL", "k1"), -2),
    (("PING",), b"PONG"),
]

REFUSED = [
    ("MULTI",), ("EXEC",), ("DISCARD",), ("WATCH", "a"), ("UNWATCH",),
    ("SCAN", "0"), ("KEYS", "*"), ("RANDOMKEY",), ("DBSIZE",), ("FLUSHALL",), ("INFO",),
    ("SELECT", "0"), ("CLIENT", "LIST"), ("CONFIG", "GET", "maxmemory"), ("HELLO", "3"),
    ("SUBSCRIBE", "ch"), ("RENAME", "a", "b"), ("MSETNX", "a", "1"), ("BITOP", "AND", "d", "a"),
]  # fmt: skip


def test_commands_through_the_proxy_as_the_doc_says(
    redis_cluster: Callable[[dict[str, int]], Cluster],
) -> None:
    """The table in docs/scaling.md, "Commands through the proxy"."""
    cluster = redis_cluster({"shard-a": 1, "shard-b": 1, "shard-c": 1})
    proxy = Resp(cluster.proxy.port)
    try:
        for command, reply in WORKS:
            assert proxy.call(*command) == reply, command
    finally:
        proxy.close()
    for command in REFUSED:
        conn = Resp(cluster.proxy.port)
        try:
            # nutcracker closes the connection (some versions first send an error)
            with pytest.raises(ConnectionError):
                reply = conn.call(*command)
                assert isinstance(reply, RespError), (command, reply)
                conn.call("PING")
        finally:
            conn.close()


def test_a_dead_backend_fails_only_its_keys_through_the_proxy(
    redis_cluster: Callable[[dict[str, int]], Cluster],
) -> None:
    cluster = redis_cluster({"shard-a": 1, "shard-b": 1, "shard-c": 1})
    ring = Ring([("shard-a", 1), ("shard-b", 1), ("shard-c", 1)])
    keys = [b"%d:f" % i for i in range(300)]
    _write_through_proxy(cluster, keys)
    cluster.backends["shard-b"].kill()
    proxy = Resp(cluster.proxy.port)
    try:
        replies = proxy.pipeline([("GET", k) for k in keys])
        for k, r in zip(keys, replies, strict=True):
            if ring.name_for(k) == "shard-b":
                assert isinstance(r, RespError), (k, r)
            else:
                assert r == b"v:" + k
    finally:
        proxy.close()
    cluster.backends["shard-b"].start()  # same port; redis-server here keeps nothing
    proxy = Resp(cluster.proxy.port)
    try:
        lost = [k for k in keys if ring.name_for(k) == "shard-b"]
        assert proxy.pipeline([("SET", k, b"again") for k in lost]) == [b"OK"] * len(lost)
        assert proxy.pipeline([("GET", k) for k in lost]) == [b"again"] * len(lost)
    finally:
        proxy.close()


@pytest.mark.parametrize(
    ("names", "port_format"),
    [
        pytest.param(True, "{}", id="named"),
        pytest.param(False, "{}", id="unnamed-host-port"),
        # the ring hashes the port as written: "127.0.0.1:0PORT" (it used to hash
        # "127.0.0.1:PORT", so every key of such a pool was placed apart from the proxy)
        pytest.param(False, "0{}", id="unnamed-zero-padded-port"),
    ],
)
def test_a_config_relying_on_nutcrackers_defaults_is_read_as_nutcracker_places(
    redis_backend: Callable[[str], Proc],
    nutcracker: Callable[..., Proc],
    names: bool,
    port_format: str,
) -> None:
    # No hash:, distribution: or hash_tag: lines: nutcracker defaults to fnv1a_64,
    # ketama and no hash tag. The ring read from that file must place keys as it does
    # (it used to be refused: "hash must be fnv1a_64, got None").
    backends = [redis_backend(f"s{i}") for i in range(3)]
    listen = free_port()
    servers = [
        f"   - 127.0.0.1:{port_format.format(b.port)}:{w}" + (f" s{i}" if names else "")
        for i, (b, w) in enumerate(zip(backends, (1, 2, 3), strict=True))
    ]
    text = f"pool:\n  listen: 127.0.0.1:{listen}\n  redis: true\n  servers:\n" + "\n".join(servers)
    proxy = nutcracker(text + "\n", listen)
    pool = read_nutcracker_config(text)["pool"]
    ring = pool.ring()
    keys = placement_keys(3_000)
    conn = Resp(proxy.port)
    try:
        for start in range(0, len(keys), 500):
            chunk = keys[start : start + 500]
            assert conn.pipeline([("SET", k, b"1") for k in chunk]) == [b"OK"] * len(chunk)
    finally:
        conn.close()
    misplaced = []
    for server, backend in zip(pool.servers, backends, strict=True):
        conn = Resp(backend.port)
        try:
            held = conn.keys()
        finally:
            conn.close()
        misplaced += [k for k in held if ring.name_for(k) != server.name]
    assert misplaced == []


def test_tied_points_go_to_the_server_nutcracker_sorts_first(
    redis_backend: Callable[[str], Proc], nutcracker: Callable[..., Proc]
) -> None:
    # "shard-a" and "s205632" (found by search) both own the point 3647977106.
    # nutcracker sorts its servers by name (shorter first) before building the ring,
    # so the keys hashing just below that point go to s205632 whatever the config
    # order; the ring used to give them to the first server in the file (shard-a).
    tie = 3647977106
    names = ["shard-a", "s205632"]  # config order: the other one sorts first
    ring = Ring([(n, 1) for n in names])
    values = [v for v, _ in ring.points]
    assert values.count(tie) == 2
    below = values[values.index(tie) - 1]
    keys = [k for k in (b"%d:tie" % i for i in range(20_000)) if below < fnv1a_64(k) <= tie]
    assert len(keys) >= 20
    backends = {n: redis_backend(n) for n in names}
    listen = free_port()
    text = nutcracker_yaml("p", listen, [(backends[n].port, 1, n) for n in names])
    proxy = Resp(nutcracker(text, listen).port)
    try:
        assert proxy.pipeline([("SET", k, b"1") for k in keys]) == [b"OK"] * len(keys)
    finally:
        proxy.close()
    conn = Resp(backends["s205632"].port)
    try:
        assert conn.keys() == set(keys)
    finally:
        conn.close()
    assert {ring.name_for(k) for k in keys} == {"s205632"}
    # so the order of the servers does not matter, here or in nutcracker
    assert Ring([(n, 1) for n in reversed(names)]).points == ring.points


class _Sink:
    """A RESP backend that answers +OK to every command and records SET keys."""

    def __init__(self) -> None:
        self.keys: list[bytes] = []
        self.port = 0

    async def start(self) -> asyncio.Server:
        server = await asyncio.start_server(self._serve, "127.0.0.1", 0)
        self.port = int(server.sockets[0].getsockname()[1])
        return server

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        with contextlib.suppress(OSError, ValueError, asyncio.IncompleteReadError):
            while line := await reader.readline():
                args = []
                for _ in range(int(line[1:])):
                    size = int((await reader.readline())[1:])
                    args.append((await reader.readexactly(size + 2))[:-2])
                if args[0].upper() == b"SET":
                    self.keys.append(args[1])
                writer.write(b"+OK\r\n")
        writer.close()


async def test_fifty_weighted_servers_place_as_the_proxy(
    nutcracker: Callable[..., Proc],
) -> None:
    # 50 servers, weights 1..10, names of many lengths (nutcracker orders its servers
    # by name, shorter first), and keys of every kind, on in-process RESP sinks
    rnd = random.Random(50)
    names = [f"n{rnd.randrange(10**6)}-{'x' * rnd.randrange(30)}" for _ in range(50)]
    weights = [rnd.randrange(1, 11) for _ in names]
    sinks = [_Sink() for _ in names]
    servers = [await s.start() for s in sinks]
    try:
        listen = free_port()
        lines = [(s.port, w, n) for s, w, n in zip(sinks, weights, names, strict=True)]
        proxy = nutcracker(nutcracker_yaml("p", listen, lines), listen)
        keys = placement_keys(5_000)
        reader, writer = await asyncio.open_connection("127.0.0.1", proxy.port)
        try:
            for start in range(0, len(keys), 500):
                chunk = keys[start : start + 500]
                writer.write(b"".join(
                    b"*3\r\n$3\r\nSET\r\n$%d\r\n%s\r\n$1\r\nv\r\n" % (len(k), k) for k in chunk
                ))  # fmt: skip
                for _ in chunk:
                    assert await asyncio.wait_for(reader.readline(), 10) == b"+OK\r\n"
        finally:
            writer.close()
    finally:
        for server in servers:
            server.close()
    ring = Ring(list(zip(names, weights, strict=True)))
    assert sum(len(s.keys) for s in sinks) == len(keys)
    misplaced = [(k, n) for s, n in zip(sinks, names, strict=True) for k in s.keys
                 if ring.name_for(k) != n]  # fmt: skip
    assert misplaced == []


@pytest.mark.parametrize(
    ("option", "server"),
    [
        pytest.param('hash_tag: "{}"', "127.0.0.1:7379:1 a", id="plain"),
        pytest.param("hash_tag: '{}'", "127.0.0.1:07379:01 a", id="zero-padded"),
        pytest.param("hash_tag: {}", "127.0.0.1:7379:1 a", id="unquoted-tag"),
        pytest.param('hash_tag: "a"', "127.0.0.1:7379:1 a", id="one-char-tag"),
        pytest.param('hash_tag: "«»"', "127.0.0.1:7379:1 a", id="two-chars-four-bytes"),
        pytest.param("hash_tag: '::'", "127.0.0.1:7379:1 ключ", id="utf8-name"),
        pytest.param("hash: fnv1a_64", "127.0.0.1:7379:1 my shard", id="name-with-space"),
        pytest.param("hash: fnv1a_64", "127.0.0.1:7379:1  a", id="two-spaces"),
        pytest.param("hash: fnv1a_64", "127.0.0.1:+7379:1 a", id="signed-port"),
        pytest.param("hash: fnv1a_64", "127.0.0.1:7_379:1 a", id="underscore-port"),
        pytest.param("hash: fnv1a_64", "127.0.0.1:7379:0 a", id="zero-weight"),
        pytest.param("hash: fnv1a_64", "127.0.0.1:7379:1 a # comment", id="comment"),
        pytest.param("hash: fnv1a_64\n  hash: md5", "127.0.0.1:7379:1 a", id="option-twice"),
        pytest.param(
            "hash: fnv1a_64",
            "127.0.0.1:7379:1 a\np:\n  listen: 127.0.0.1:1\n  servers:\n   - 127.0.0.1:7380:1 b",
            id="pool-twice",
        ),
    ],
)
def test_the_config_reader_accepts_what_nutcracker_accepts(
    tmp_path: Path, option: str, server: str
) -> None:
    # bitcask reshard reads the files nutcracker runs: one nutcracker refuses must be
    # refused (the reader used to take "my shard" as a name, "+7379" as a port...)
    text = f"p:\n  listen: 127.0.0.1:{free_port()}\n  redis: true\n  {option}\n"
    text += f"  servers:\n   - {server}\n"
    conf = tmp_path / "p.yml"
    conf.write_text(text, encoding="utf-8")
    binary = require("nutcracker", "nutcracker")
    check = subprocess.run([binary, "--test-conf", "--conf-file", str(conf)],
                           capture_output=True, text=True, timeout=30)  # fmt: skip
    try:
        read_nutcracker_config(text)["p"].ring()
        accepted = True
    except InterfaceError:
        accepted = False
    assert accepted == (check.returncode == 0), check.stderr
