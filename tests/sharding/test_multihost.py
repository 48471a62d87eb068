"""A real multi-host layout: three bitcask-servers, each in its own network namespace,
nutcracker in a fourth, clients (the proxy's RESP and `connect_sharded`) in the root
namespace, all on one bridge (tests/sharding/netlab.py).

Where namespaces cannot be made (not root, no `ip netns`), the same tests run with
every process on loopback ports, and one line in the output says so; under CI=true
that fails instead. Everything is torn down when a test ends, even on failure
(processes killed, namespaces, veths and the bridge deleted).

Covered: placement both ways (10,000 keys through the proxy read back by the client,
and the reverse; every shard holds at least 10%; hash-tagged keys together); a
SIGKILLed shard fails only its keys on both paths and comes back whole (`--sync
always`); a slow (or unreachable) shard times out alone, with the typed error, while
calls to the other shards succeed. Outcomes only, never timings.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import os
import signal
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from client import CallTimeoutError, ConnectionLostError, Ring, connect, connect_sharded
from tests.serverproc import ServerProcess, free_port
from tests.sharding.conftest import (
    Proc,
    Resp,
    RespError,
    nutcracker_yaml,
    placement_keys,
    tag_of,
    tagged_keys,
)
from tests.sharding.netlab import Host, NetLab, NetLabError, NsServer, in_ci

NAMES = ("shard-a", "shard-b", "shard-c")
SHARD_PORT, SHARD_HTTP_PORT = 7379, 7380  # inside a namespace every port is free
PROXY_PORT, PROXY_STATS_PORT = 22121, 22222
N_KEYS = 10_000
FAST: dict[str, Any] = {"timeout": 5.0, "reconnect_attempts": 2, "backoff_base": 0.05,
                        "backoff_max": 0.1}  # fmt: skip


@dataclass
class Layout:
    shards: dict[str, ServerProcess]
    proxy: Proc
    lab: NetLab | None
    hosts: dict[str, Host]

    def addresses(self) -> dict[str, str]:
        return {n: f"{s.host}:{s.port}" for n, s in self.shards.items()}

    def proxy_conn(self) -> Resp:
        return Resp(self.proxy.port, self.proxy.host)

    @contextlib.contextmanager
    def slowed(self, name: str) -> Iterator[str]:
        """Make shard `name` answer nothing for a while (netem delay, its veth down, or,
        on loopback, the process stopped with SIGSTOP); yields how."""
        if self.lab is not None:
            with self.lab.slowed(self.hosts[name], delay_ms=30_000) as how:
                yield how
            return
        proc = self.shards[name].proc
        assert proc is not None
        proc.send_signal(signal.SIGSTOP)
        try:
            yield "loopback: the shard's process stopped (SIGSTOP)"
        finally:
            proc.send_signal(signal.SIGCONT)


_said: set[str] = set()


def _say(request: pytest.FixtureRequest, line: str) -> None:
    """One line in pytest's output (once per session), even with capture on."""
    if line in _said:
        return
    _said.add(line)
    reporter = request.config.pluginmanager.get_plugin("terminalreporter")
    capture = request.config.pluginmanager.get_plugin("capturemanager")
    if reporter is None:
        return
    with capture.global_and_fixture_disabled() if capture else contextlib.nullcontext():
        reporter.write_line(line)


@pytest.fixture
def layout(
    request: pytest.FixtureRequest,
    tmp_path: Path,
    nutcracker: Callable[..., Proc],
) -> Iterator[Layout]:
    lab: NetLab | None = None
    hosts: dict[str, Host] = {}
    shards: dict[str, ServerProcess] = {}
    try:
        try:
            lab = NetLab.create(str(os.getpid()))
            for name in (*NAMES, "proxy"):
                hosts[name] = lab.host(name)
        except NetLabError as exc:
            if lab is not None:
                lab.close()
                lab, hosts = None, {}
            if in_ci():
                pytest.fail(f"CI=true: network namespaces are needed here: {exc}")
            _say(request, f"test_multihost: no network namespaces ({exc}): on loopback ports")
        else:
            _say(
                request,
                f"test_multihost: 3 shards and nutcracker in network namespaces on bridge "
                f"{lab.bridge} ({lab.subnet}0/24)",
            )
        for name in NAMES:
            data = tmp_path / name
            data.mkdir()
            if lab is None:
                srv: ServerProcess = ServerProcess(data=data)
            else:
                h = hosts[name]
                srv = NsServer(data=data, host=h.address, port=SHARD_PORT,
                               http_port=SHARD_HTTP_PORT, prefix=h.prefix)  # fmt: skip
            shards[name] = srv
            srv.start()
        servers = [(shards[n].port, 1, n) for n in NAMES]
        if lab is None:
            listen = free_port()
            proxy = nutcracker(nutcracker_yaml("bitcask", listen, servers), listen)
        else:
            h = hosts["proxy"]
            where = {n: shards[n].host for n in NAMES}
            text = nutcracker_yaml(
                "bitcask", PROXY_PORT, servers, listen_host=h.address, hosts=where
            )
            proxy = nutcracker(
                text,
                PROXY_PORT,
                host=h.address,
                prefix=h.prefix,
                stats_port=PROXY_STATS_PORT,
            )
        yield Layout(shards, proxy, lab, hosts)
    finally:
        for srv in shards.values():
            srv.kill()
        if lab is not None:
            lab.close()  # nutcracker's own fixture kills it too


def _proxy_set(layout: Layout, items: dict[bytes, bytes]) -> None:
    conn = layout.proxy_conn()
    try:
        keys = list(items)
        for start in range(0, len(keys), 500):
            chunk = keys[start : start + 500]
            replies = conn.pipeline([("SET", k, items[k]) for k in chunk])
            assert replies == [b"OK"] * len(chunk), [r for r in replies if r != b"OK"][:3]
    finally:
        conn.close()


def _proxy_get(layout: Layout, keys: list[bytes]) -> list[object]:
    conn = layout.proxy_conn()
    try:
        out: list[object] = []
        for start in range(0, len(keys), 500):
            out += conn.pipeline([("GET", k) for k in keys[start : start + 500]])
        return out
    finally:
        conn.close()


async def _held(layout: Layout) -> dict[str, set[bytes]]:
    """Every key each shard holds, asked of the shard itself (binary protocol)."""
    held: dict[str, set[bytes]] = {}
    for name, srv in layout.shards.items():
        async with connect(srv.host, srv.port, timeout=10.0) as direct:
            held[name] = {k async for k in direct.scan(count=5000)}
    return held


async def test_placement_agrees_both_ways_across_hosts(layout: Layout) -> None:
    ring = Ring([(n, 1) for n in NAMES])
    # through the proxy, read back by the sharded client
    by_proxy = {k: b"p:" + k for k in placement_keys(N_KEYS)}
    _proxy_set(layout, by_proxy)
    keys = list(by_proxy)
    async with connect_sharded(layout.addresses(), **FAST) as sc:
        for start in range(0, N_KEYS, 1000):
            chunk = keys[start : start + 1000]
            assert await sc.mget(chunk) == [by_proxy[k] for k in chunk]
        held = await _held(layout)
        for name in NAMES:
            assert held[name] == {k for k in keys if ring.name_for(k) == name}, name
            assert len(held[name]) >= N_KEYS // 10, {n: len(h) for n, h in held.items()}
        # the reverse: written by the sharded client, read through the proxy
        by_client = {b"%d:c" % i: b"c%d" % i for i in range(N_KEYS - 600)}
        by_client.update({k: b"t:" + k for k in tagged_keys(200)})
        items = list(by_client.items())
        for start in range(0, len(items), 1000):
            await sc.mput(items[start : start + 1000])
    assert _proxy_get(layout, list(by_client)) == list(by_client.values())
    # hash-tagged keys landed together, and the tags spread over every shard
    where = {k: name for name, ks in (await _held(layout)).items() for k in ks}
    by_tag: dict[bytes, set[str]] = collections.defaultdict(set)
    for k in tagged_keys(200):
        by_tag[tag_of(k)].add(where[k])
    assert all(len(s) == 1 for s in by_tag.values())
    assert set.union(*by_tag.values()) == set(NAMES)


async def test_a_killed_shard_fails_only_its_keys_and_comes_back_whole(layout: Layout) -> None:
    ring = Ring([(n, 1) for n in NAMES])
    items = {b"%d:k" % i: b"v%d" % i for i in range(3_000)}
    keys = list(items)
    half = dict(list(items.items())[:1500])
    _proxy_set(layout, half)  # half written through the proxy, half by the client
    async with connect_sharded(layout.addresses(), **FAST) as sc:
        await sc.mput(list(items.items())[1500:])
        layout.shards["shard-b"].kill()  # SIGKILL, no warning
        dead = [k for k in keys if ring.name_for(k) == "shard-b"]
        alive = [k for k in keys if ring.name_for(k) != "shard-b"]
        assert dead and alive
        # proxy: an error reply for each of its keys, every other key served
        for key, reply in zip(keys, _proxy_get(layout, keys), strict=True):
            if ring.name_for(key) == "shard-b":
                assert isinstance(reply, RespError), (key, reply)
            else:
                assert reply == items[key], key
        # client: the typed connection error for its keys, every other key served
        for key in dead[:5]:
            with pytest.raises(ConnectionLostError):
                await sc.get(key)
        assert any(k in dead for k in keys[:50])
        with pytest.raises(ConnectionLostError):
            await sc.mget(keys[:50])  # a batch touching the dead shard fails as a whole
        assert await sc.mget(alive) == [items[k] for k in alive]
        assert [await sc.get(k) for k in alive[:20]] == [items[k] for k in alive[:20]]
        # restarted on the same address and data: every key is back, nothing lost
        layout.shards["shard-b"].start()
        assert await sc.mget(keys) == [items[k] for k in keys]
    assert _proxy_get(layout, keys) == [items[k] for k in keys]


async def test_a_slow_shard_times_out_alone(layout: Layout) -> None:
    ring = Ring([(n, 1) for n in NAMES])
    keys = [b"%d:s" % i for i in range(300)]
    first = {n: next(k for k in keys if ring.name_for(k) == n) for n in NAMES}
    others = [k for k in keys if ring.name_for(k) != "shard-c"]
    options = {**FAST, "timeout": 1.0}
    async with connect_sharded(layout.addresses(), **options) as sc:
        await sc.mput({k: b"v" + k for k in keys})
        with layout.slowed("shard-c") as how:
            print(how)
            # one call to the slow shard in flight while the others are served
            slow = asyncio.ensure_future(sc.get(first["shard-c"]))
            assert await sc.mget(others) == [b"v" + k for k in others]
            assert await sc.get(first["shard-a"]) == b"v" + first["shard-a"]
            with pytest.raises(CallTimeoutError):
                await slow
            # and after its timeout, the others still are
            assert await sc.get(first["shard-b"]) == b"v" + first["shard-b"]
            # the proxy: an error reply (its `timeout: 2000`) for the slow shard only
            conn = layout.proxy_conn()
            try:
                reply = conn.call("GET", first["shard-c"])
                assert isinstance(reply, RespError), reply
            finally:
                conn.close()
            assert _proxy_get(layout, others) == [b"v" + k for k in others]
        # back to normal: its keys are served again (bounded retries while it recovers)
        value: bytes | Exception | None = None
        for _ in range(20):
            try:
                value = await sc.get(first["shard-c"])
                break
            except (CallTimeoutError, ConnectionLostError) as exc:
                value = exc
        assert value == b"v" + first["shard-c"], value
