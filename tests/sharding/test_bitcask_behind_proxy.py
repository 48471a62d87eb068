"""Three bitcask-servers behind a real nutcracker, against connect_sharded, both ways.

nutcracker speaks only RESP to its backends, so this needs the server's Redis
dialect (docs/redis.md). Each test first asks a fresh bitcask-server `PING` in
RESP and fails unless it answers `+PONG`. Then it proves, on loopback ports: 10,000 keys written through the proxy are all read back by
connect_sharded from the shards the ring names, and the reverse; a SIGKILLed
shard fails only its keys on both paths, and after a restart (--sync always)
its keys are back.
"""

from __future__ import annotations

import socket
from collections.abc import Callable
from typing import Any

import pytest

from client import ConnectionLostError, Ring, connect, connect_sharded
from tests.serverproc import ServerProcess, free_port
from tests.sharding.conftest import Proc, Resp, RespError, nutcracker_yaml

NAMES = ("shard-a", "shard-b", "shard-c")
FAST: dict[str, Any] = {"timeout": 5.0, "reconnect_attempts": 2, "backoff_base": 0.05,
                        "backoff_max": 0.1}  # fmt: skip


def _speaks_resp(port: int) -> bool:
    with socket.create_connection(("127.0.0.1", port), 5) as s:
        s.settimeout(5)
        s.sendall(b"*1\r\n$4\r\nPING\r\n")
        reply = b""
        while b"\n" not in reply:
            chunk = s.recv(4096)
            if not chunk:
                break
            reply += chunk
    return reply.startswith(b"+PONG\r\n")


@pytest.fixture
def layout(
    server_factory: Callable[..., ServerProcess], nutcracker: Callable[[str, int], Proc]
) -> tuple[dict[str, ServerProcess], Proc]:
    shards = {name: server_factory() for name in NAMES}
    assert _speaks_resp(shards["shard-a"].port), "bitcask-server must answer a RESP PING"
    listen = free_port()
    config = nutcracker_yaml("bitcask", listen, [(shards[n].port, 1, n) for n in NAMES])
    return shards, nutcracker(config, listen)


def _addresses(shards: dict[str, ServerProcess]) -> dict[str, str]:
    return {n: f"127.0.0.1:{s.port}" for n, s in shards.items()}


async def test_keys_written_through_the_proxy_are_read_by_the_client_and_back(
    layout: tuple[dict[str, ServerProcess], Proc],
) -> None:
    shards, proxy = layout
    through_proxy = [b"%d:p" % i for i in range(9_000)] + [
        b"order:{%d:c}:%d" % (i % 50, i) for i in range(1_000)
    ]
    conn = Resp(proxy.port)
    try:
        for start in range(0, len(through_proxy), 500):
            chunk = through_proxy[start : start + 500]
            assert conn.pipeline([("SET", k, b"v" + k) for k in chunk]) == [b"OK"] * len(chunk)
    finally:
        conn.close()
    ring = Ring([(n, 1) for n in NAMES])
    async with connect_sharded(_addresses(shards), **FAST) as sc:
        for start in range(0, len(through_proxy), 1000):
            chunk = through_proxy[start : start + 1000]
            assert await sc.mget(chunk) == [b"v" + k for k in chunk]
        for name, srv in shards.items():
            async with connect("127.0.0.1", srv.port) as direct:
                held = {k async for k in direct.scan(count=5000)}
            assert held == {k for k in through_proxy if ring.name_for(k) == name}
            assert len(held) >= len(through_proxy) // 10
        # the reverse: written by the client, read through the proxy
        by_client = {b"%d:c" % i: b"w%d" % i for i in range(2_000)}
        await sc.mput(by_client)
    conn = Resp(proxy.port)
    try:
        keys = list(by_client)
        for start in range(0, len(keys), 500):
            chunk = keys[start : start + 500]
            assert conn.call("MGET", *chunk) == [by_client[k] for k in chunk]
    finally:
        conn.close()


async def test_a_killed_shard_fails_only_its_keys_on_both_paths(
    layout: tuple[dict[str, ServerProcess], Proc],
) -> None:
    shards, proxy = layout
    ring = Ring([(n, 1) for n in NAMES])
    keys = [b"%d:k" % i for i in range(600)]
    async with connect_sharded(_addresses(shards), **FAST) as sc:
        await sc.mput({k: b"v" + k for k in keys})
        shards["shard-b"].kill()  # SIGKILL
        conn = Resp(proxy.port)
        try:
            replies = conn.pipeline([("GET", k) for k in keys])
        finally:
            conn.close()
        for key, reply in zip(keys, replies, strict=True):
            if ring.name_for(key) == "shard-b":
                assert isinstance(reply, RespError), (key, reply)
                with pytest.raises(ConnectionLostError):
                    await sc.get(key)
                break
        for key, reply in zip(keys, replies, strict=True):
            if ring.name_for(key) != "shard-b":
                assert reply == b"v" + key
                assert await sc.get(key) == b"v" + key
        shards["shard-b"].start()  # same port and data, --sync always
        assert await sc.mget(keys) == [b"v" + k for k in keys]
    conn = Resp(proxy.port)
    try:
        assert conn.pipeline([("GET", k) for k in keys]) == [b"v" + k for k in keys]
    finally:
        conn.close()
