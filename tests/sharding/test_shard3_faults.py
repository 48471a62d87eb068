"""Shard failures under load, through the proxy (docs/scaling.md's config) and through the
sharded client at the same time, with real nutcracker and real bitcask-servers.

A steady, bounded load (two proxy connections and two sharded-client tasks, each
rewriting its own keys round after round) runs while one shard is SIGKILLed and
restarted, then another is SIGSTOPped (wedged) and resumed; and, on
test_multihost.py's network namespaces, while one is cut off (netem delay, or its
veth down where the kernel has no netem). Checked: every error
either path gets is typed and one line (an `-ERR Connection ...` reply from the
proxy; ConnectError, ConnectionLostError or CallTimeoutError from the client), no
call hangs past its bound, the other shards keep serving, and afterwards every key
answers, on both paths, its last acknowledged value or a later write that failed
(a write the proxy timed out may still be applied when the shard resumes).

With `auto_eject_hosts: true` instead, the docs' warning is shown to be needed: the
proxy answers nil for the dead shard's keys and writes them to another shard, while
the sharded client (which never ejects) keeps failing them; once the shard is back,
the proxy reads its old values again and the writes made meanwhile are stranded.

Loopback ports only; every process is killed when its test ends. Outcomes only,
never timings (bounds only catch a hang).
"""

from __future__ import annotations

import asyncio
import contextlib
import signal
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import pytest

from client import CallTimeoutError, ConnectError, ConnectionLostError, Ring, connect_sharded
from tests.serverproc import ServerProcess, free_port
from tests.sharding.conftest import Proc, Resp, RespError, nutcracker_yaml
from tests.sharding.test_multihost import Layout
from tests.sharding.test_multihost import layout as multihost_layout

# the multi-host fixture (`layout`), for the partition test
__all__ = ["multihost_layout"]

NAMES = ("shard-a", "shard-b", "shard-c")
RING = Ring([(n, 1) for n in NAMES])
DOC_EXTRA = ("backlog: 1024", "preconnect: true", "server_connections: 1")
CLIENT: dict[str, Any] = {"timeout": 1.0, "reconnect_attempts": 2, "backoff_base": 0.05,
                          "backoff_max": 0.1}  # fmt: skip
HANG = 15.0  # no single call may take this long: the proxy's timeout is 2 s, the client's 1 s
KEYS_PER_WORKER = 45
WAIT_STEPS = 600  # 0.05 s each: how long a phase may wait for every worker to see it
# seconds between a worker's writes: flat out, the four workers and three --sync always
# shards took the machine's cores from the rest of the suite; paced, every key is
# still rewritten every ~0.1 s, far inside each phase's wait
PACE = 0.002


@dataclass
class Ledger:
    """What one worker's keys should answer: the last acknowledged value, and the
    values written since then whose write failed (applied or not)."""

    acked: dict[bytes, bytes] = field(default_factory=dict)
    doubt: dict[bytes, set[bytes]] = field(default_factory=dict)
    errors: list[str] = field(default_factory=list)
    failed_on: set[str] = field(default_factory=set)  # shards whose keys got an error
    served_on: set[str] = field(default_factory=set)  # shards that answered since reset

    def ack(self, key: bytes, value: bytes) -> None:
        self.acked[key] = value
        self.doubt[key] = set()
        self.served_on.add(RING.name_for(key))

    def fail(self, key: bytes, value: bytes, error: str) -> None:
        self.doubt.setdefault(key, set()).add(value)
        self.errors.append(error)
        self.failed_on.add(RING.name_for(key))

    def allowed(self, key: bytes) -> set[bytes | None]:
        return {self.acked.get(key), *self.doubt.get(key, set())}


def _keys(tag: str) -> list[bytes]:
    keys = [b"%d:%s" % (i, tag.encode()) for i in range(KEYS_PER_WORKER)]
    assert {RING.name_for(k) for k in keys} == set(NAMES)
    return keys


def _writes(tag: str) -> Iterator[tuple[bytes, bytes]]:
    """A worker's writes: each of its keys in turn, a new value each round (bounded)."""
    keys = _keys(tag)
    for rnd in range(100_000):
        for key in keys:
            yield key, b"%s:%d" % (tag.encode(), rnd)


def _proxy_worker(
    address: tuple[str, int], tag: str, ledger: Ledger, stop: threading.Event
) -> None:
    conn = Resp(address[1], address[0])
    conn.sock.settimeout(HANG)
    try:
        for key, value in _writes(tag):
            if stop.is_set():
                return
            try:
                reply = conn.call("SET", key, value)
            except TimeoutError:
                ledger.fail(key, value, "HANG: no reply from the proxy")
                return
            if reply == b"OK":
                ledger.ack(key, value)
            else:
                assert isinstance(reply, RespError), reply
                ledger.fail(key, value, f"proxy: {reply.message}")
            time.sleep(PACE)
    finally:
        conn.close()


async def _client_worker(sc: Any, tag: str, ledger: Ledger, stop: asyncio.Event) -> None:
    for key, value in _writes(tag):
        if stop.is_set():
            return
        try:
            await asyncio.wait_for(sc.put(key, value), HANG)
        except (ConnectError, ConnectionLostError, CallTimeoutError) as exc:
            ledger.fail(key, value, f"client: {type(exc).__name__}: {exc}")
        except TimeoutError:
            ledger.fail(key, value, "HANG: the client's call did not end")
            return
        else:
            ledger.ack(key, value)
        await asyncio.sleep(PACE)


async def _until(ledgers: list[Ledger], done: Callable[[Ledger], bool], what: str) -> None:
    for _ in range(WAIT_STEPS):
        if all(done(led) for led in ledgers):
            return
        await asyncio.sleep(0.05)
    raise AssertionError(f"not every worker saw {what}: {[led.errors[-1:] for led in ledgers]}")


@contextlib.contextmanager
def _load(address: tuple[str, int], sc: Any) -> Iterator[tuple[list[Ledger], Callable[[], Any]]]:
    """Two proxy threads and two client tasks writing until the block ends."""
    ledgers = [Ledger() for _ in range(4)]
    stop_threads, stop_tasks = threading.Event(), asyncio.Event()
    threads = [
        threading.Thread(target=_proxy_worker, args=(address, f"p{i}", ledgers[i], stop_threads))
        for i in range(2)
    ]
    for t in threads:
        t.start()
    tasks = [asyncio.ensure_future(_client_worker(sc, f"c{i}", ledgers[2 + i], stop_tasks))
             for i in range(2)]  # fmt: skip

    async def finish() -> None:
        stop_tasks.set()
        await asyncio.gather(*tasks)

    try:
        yield ledgers, finish
    finally:
        stop_threads.set()
        stop_tasks.set()
        for t in threads:
            t.join(HANG * 2)
        for task in tasks:
            task.cancel()


def _start(
    server_factory: Callable[..., ServerProcess],
    nutcracker: Callable[..., Proc],
    extra: tuple[str, ...],
) -> tuple[dict[str, ServerProcess], Proc]:
    shards = {name: server_factory() for name in NAMES}
    listen = free_port()
    text = nutcracker_yaml("bitcask", listen, [(shards[n].port, 1, n) for n in NAMES], extra)
    return shards, nutcracker(text, listen)


def _addresses(shards: dict[str, ServerProcess]) -> dict[str, str]:
    return {n: f"127.0.0.1:{s.port}" for n, s in shards.items()}


def _reset(ledgers: list[Ledger]) -> None:
    for led in ledgers:
        led.failed_on.clear()
        led.served_on.clear()


async def test_a_killed_then_a_wedged_shard_under_load_on_both_paths(
    server_factory: Callable[..., ServerProcess], nutcracker: Callable[..., Proc]
) -> None:
    shards, proxy = _start(server_factory, nutcracker, DOC_EXTRA)
    async with connect_sharded(_addresses(shards), **CLIENT) as sc:
        with _load((proxy.host, proxy.port), sc) as (ledgers, finish):
            await _until(ledgers, lambda led: len(led.acked) == KEYS_PER_WORKER, "a full round")
            # 1. SIGKILL shard-b: its keys fail, the others are served meanwhile
            _reset(ledgers)
            shards["shard-b"].kill()
            await _until(ledgers, lambda led: "shard-b" in led.failed_on, "shard-b fail")
            _reset(ledgers)
            await _until(ledgers, lambda led: {"shard-a", "shard-c"} <= led.served_on,
                         "shard-a and shard-c serve while shard-b is down")  # fmt: skip
            assert all("shard-b" not in led.served_on for led in ledgers)
            shards["shard-b"].start()  # same port, same data (--sync always)
            _reset(ledgers)
            await _until(ledgers, lambda led: "shard-b" in led.served_on, "shard-b back")
            # 2. SIGSTOP shard-c: wedged, its connections open but silent
            proc = shards["shard-c"].proc
            assert proc is not None
            _reset(ledgers)
            proc.send_signal(signal.SIGSTOP)
            try:
                await _until(ledgers, lambda led: "shard-c" in led.failed_on, "shard-c fail")
                _reset(ledgers)
                await _until(ledgers, lambda led: {"shard-a", "shard-b"} <= led.served_on,
                             "shard-a and shard-b serve while shard-c is wedged")  # fmt: skip
            finally:
                proc.send_signal(signal.SIGCONT)
            _reset(ledgers)
            await _until(ledgers, lambda led: "shard-c" in led.served_on, "shard-c back")
            await finish()
        await _check_after(ledgers, sc, (proxy.host, proxy.port), {"refused", "timed out"})


async def _check_after(
    ledgers: list[Ledger], sc: Any, proxy: tuple[str, int], seen: set[str]
) -> None:
    """Every error one line and known, the proxy's `seen` among them; then every key
    answers, through the sharded client and through the proxy alike, its last
    acknowledged value or a later write that failed."""
    errors = [e for led in ledgers for e in led.errors]
    assert not [e for e in errors if e.startswith("HANG") or "\n" in e], errors[:5]
    proxy_errors = {e for e in errors if e.startswith("proxy: ")}
    # refused: nothing listens (a kill); timed out: a wedge or a partition; unknown and
    # reset by peer: the shard's connection ended with the request in flight (a kill)
    known = {"refused", "timed out", "reset by peer"}
    assert proxy_errors <= {*(f"proxy: ERR Connection {e}" for e in known),
                            "proxy: ERR unknown"}, proxy_errors  # fmt: skip
    assert {f"proxy: ERR Connection {e}" for e in seen} <= proxy_errors, proxy_errors
    client_errors = {e.split(":")[1].strip() for e in errors if e.startswith("client: ")}
    assert "CallTimeoutError" in client_errors, client_errors
    keys = [k for led in ledgers for k in led.acked]
    expected = {k: led.allowed(k) for led in ledgers for k in led.acked}
    assert len(keys) == 4 * KEYS_PER_WORKER
    got_client = dict(zip(keys, await sc.mget(keys), strict=True))
    conn = Resp(proxy[1], proxy[0])
    try:
        got_proxy = dict(zip(keys, conn.pipeline([("GET", k) for k in keys]), strict=True))
    finally:
        conn.close()
    assert got_client == got_proxy
    wrong = {k: (got_client[k], expected[k]) for k in keys if got_client[k] not in expected[k]}
    assert not wrong, wrong


async def test_a_partitioned_shard_under_load_on_both_paths(multihost_layout: Layout) -> None:
    """tests/sharding/test_multihost.py's hosts: each shard and nutcracker in its own
    network namespace; shard-b's packets held back (tc netem) or dropped (its veth
    down) while the load runs (on loopback, without namespaces: SIGSTOP)."""
    layout = multihost_layout
    async with connect_sharded(layout.addresses(), **CLIENT) as sc:
        proxy = (layout.proxy.host, layout.proxy.port)
        with _load(proxy, sc) as (ledgers, finish):
            await _until(ledgers, lambda led: len(led.acked) == KEYS_PER_WORKER, "a full round")
            _reset(ledgers)
            with layout.slowed("shard-b") as how:
                print(how)
                await _until(ledgers, lambda led: "shard-b" in led.failed_on, "shard-b fail")
                _reset(ledgers)
                await _until(ledgers, lambda led: {"shard-a", "shard-c"} <= led.served_on,
                             "shard-a and shard-c serve while shard-b is cut off")  # fmt: skip
            _reset(ledgers)
            await _until(ledgers, lambda led: "shard-b" in led.served_on, "shard-b back")
            await finish()
        await _check_after(ledgers, sc, proxy, {"timed out"})


async def test_auto_eject_hosts_moves_keys_and_the_client_does_not(
    server_factory: Callable[..., ServerProcess], nutcracker: Callable[..., Proc]
) -> None:
    """Why docs/scaling.md says `auto_eject_hosts: false` for a database."""
    eject = ("preconnect: true", "server_failure_limit: 1", "server_retry_timeout: 1000")
    shards, proxy = _start(server_factory, nutcracker, eject)
    text = proxy.log.parent / f"nutcracker-{proxy.port}.yml"
    assert "auto_eject_hosts: false" in text.read_text()
    text.write_text(text.read_text().replace("auto_eject_hosts: false", "auto_eject_hosts: true"))
    proxy.kill()
    proxy.start()  # the same port, now ejecting
    keys = [b"%d:e" % i for i in range(90)]
    on_b = [k for k in keys if RING.name_for(k) == "shard-b"]
    conn = Resp(proxy.port)
    try:
        assert conn.pipeline([("SET", k, b"old") for k in keys]) == [b"OK"] * len(keys)
        shards["shard-b"].kill()
        # the lost preconnected connection, or this failure, ejects shard-b
        first = conn.call("GET", on_b[0])
        assert first is None or isinstance(first, RespError), first
        # ejected: shard-b's keys read as missing (nil, no error) and are written elsewhere
        assert conn.pipeline([("GET", k) for k in on_b]) == [None] * len(on_b)
        assert conn.pipeline([("SET", k, b"new") for k in on_b]) == [b"OK"] * len(on_b)
        async with connect_sharded(_addresses(shards), **CLIENT) as sc:
            with pytest.raises(ConnectError):
                await sc.get(on_b[0])  # the client keeps the ring: shard-b's keys fail
            others = [k for k in keys if k not in on_b]
            assert await sc.mget(others) == [b"old"] * len(others)
            shards["shard-b"].start()
            # back on the ring after server_retry_timeout: the old values again
            reply: object = None
            for _ in range(100):
                reply = conn.call("GET", on_b[0])
                if reply == b"old":
                    break
                await asyncio.sleep(0.05)
            assert reply == b"old", reply
            assert conn.pipeline([("GET", k) for k in on_b]) == [b"old"] * len(on_b)
            assert await sc.mget(on_b) == [b"old"] * len(on_b)
            # the writes made while it was ejected are stranded on the other shards
            stranded = 0
            for name in ("shard-a", "shard-c"):
                direct = sc.clients[name]
                stranded += sum(v == b"new" for v in await direct.mget(on_b))
            assert stranded == len(on_b)
    finally:
        conn.close()
