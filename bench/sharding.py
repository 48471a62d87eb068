"""What the proxy costs and what sharding buys, on this machine: one run.

`python -m bench.sharding [--quick] [--requests N] [--ops N]`

Two tables, measured on the same bitcask-servers (`--sync never`): for n = 1, 2, 3
shards, n servers start; then

- **through nutcracker**: `redis-benchmark -t set` and `-t get` (50 connections,
  100-byte values, random keys over 10,000) through nutcracker (fnv1a_64, ketama,
  hash tags: the docs/scaling.md settings) in front of the n bitcask-servers, and,
  with one server, straight at it: the row a reader compares the proxy's with. The
  server CPU per SET summed over the shards, and the proxy's own, come from /proc.
  Two redis-server rows (direct, and behind nutcracker) are a reference: there the
  proxy, not the backend, is the bottleneck.
- **sharded client**: `connect_sharded` over the same n servers, beside a plain
  `Client` to one server: 50 tasks, puts of 100-byte values then gets of the same keys.

Every process (shards, proxy, load generator) shares this machine's cores, so more
shards than cores cannot show their real gain; the CPU count is in the header.
Needs redis-benchmark and nutcracker (Debian: redis-tools, nutcracker; redis-server
for the reference rows); the nutcracker table is left out, with a note, when one is
missing. Results: bench/results/sharding.json and .md.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any, NamedTuple

import uvloop

from bench._util import (
    HOST,
    Column,
    Table,
    emit,
    fmt_num,
    fmt_rate,
    free_port,
    process,
    redis_benchmark,
    server_cpu,
    which,
)
from client import connect, connect_sharded

VALUE = b"v" * 100
NAMES = ("shard-a", "shard-b", "shard-c")
KEYSPACE = 10_000


class Served(NamedTuple):
    """A server child: the loopback port it listens on and its pid (for /proc)."""

    port: int
    pid: int


@contextlib.contextmanager
def _redis_server() -> Iterator[Served]:
    binary = which("redis-server")
    assert binary is not None
    port = free_port()
    argv = [binary, "--port", str(port), "--bind", HOST, "--save", "", "--appendonly", "no"]
    with process(argv, port) as proc:
        yield Served(port, proc.pid)


@contextlib.contextmanager
def _nutcracker(backends: list[int]) -> Iterator[Served]:
    binary = which("nutcracker")
    assert binary is not None
    listen, stats = free_port(), free_port()
    servers = "\n".join(
        f"   - {HOST}:{p}:1 {name}" for p, name in zip(backends, NAMES, strict=False)
    )
    config = (
        f"bench:\n  listen: {HOST}:{listen}\n  redis: true\n  hash: fnv1a_64\n"
        '  distribution: ketama\n  hash_tag: "{}"\n  auto_eject_hosts: false\n'
        f"  timeout: 2000\n  servers:\n{servers}\n"
    )
    with tempfile.TemporaryDirectory(prefix="bench-nutcracker-") as tmp:
        path = Path(tmp) / "nutcracker.yml"
        path.write_text(config, encoding="utf-8")
        argv = [binary, "--conf-file", str(path), "--stats-port", str(stats),
                "--stats-addr", HOST]  # fmt: skip
        with process(argv, listen) as proc:
            yield Served(listen, proc.pid)


def _measure(
    port: int, requests: int, backends: list[int], proxy: int | None = None
) -> dict[str, float]:
    """SET then GET through `port`: ops/s each, and CPU µs per SET of backends and proxy."""
    before = [server_cpu(pid) for pid in backends]
    proxy_before = server_cpu(proxy) if proxy is not None else 0.0
    out = {"set": redis_benchmark(port, "set", requests, keyspace=KEYSPACE)["rps"]}
    out["backend_cpu"] = sum(server_cpu(p) - b for p, b in zip(backends, before, strict=True))
    out["backend_cpu"] *= 1e6 / requests
    if proxy is not None:
        out["proxy_cpu"] = (server_cpu(proxy) - proxy_before) * 1e6 / requests
    out["get"] = redis_benchmark(port, "get", requests, keyspace=KEYSPACE)["rps"]
    return out


def proxy_table(requests: int) -> Table:
    return Table(
        f"through nutcracker: redis-benchmark, {requests:,} requests per test, 50 connections",
        [
            Column("setup", "setup", str),
            Column("set", "SET ops/s", fmt_rate),
            Column("get", "GET ops/s", fmt_rate),
            Column("backend_cpu", "backends CPU µs/SET", fmt_num),
            Column("proxy_cpu", "proxy CPU µs/SET", fmt_num),
        ],
    )


def client_table(ops: int) -> Table:
    return Table(
        f"sharded client: {ops:,} puts then {ops:,} gets of 100 B, 50 tasks, --sync never",
        [
            Column("setup", "setup", str),
            Column("put", "put ops/s", fmt_rate),
            Column("get", "get ops/s", fmt_rate),
        ],
    )


@contextlib.contextmanager
def _bitcask_servers(n: int) -> Iterator[list[Served]]:
    with contextlib.ExitStack() as stack:
        served = []
        for _ in range(n):
            data = stack.enter_context(tempfile.TemporaryDirectory(prefix="bench-shard-"))
            port, http_port = free_port(), free_port()
            argv = [sys.executable, "-m", "server", "--data", data, "--host", HOST,
                    "--port", str(port), "--http-port", str(http_port), "--sync", "never",
                    "--log-level", "warning", "--drain-seconds", "0"]  # fmt: skip
            proc = stack.enter_context(process(argv, port))
            served.append(Served(port, proc.pid))
        yield served


async def _drive(db: Any, ops: int, tasks: int = 50) -> tuple[float, float]:
    keys = [b"%d:bench" % i for i in range(ops)]
    per = ops // tasks

    async def puts(t: int) -> None:
        for k in keys[t * per : (t + 1) * per]:
            await db.put(k, VALUE)

    async def gets(t: int) -> None:
        for k in keys[t * per : (t + 1) * per]:
            await db.get(k)

    started = time.perf_counter()
    await asyncio.gather(*(puts(t) for t in range(tasks)))
    put_rate = per * tasks / (time.perf_counter() - started)
    started = time.perf_counter()
    await asyncio.gather(*(gets(t) for t in range(tasks)))
    get_rate = per * tasks / (time.perf_counter() - started)
    return put_rate, get_rate


def _shards(n: int) -> str:
    return f"{n} bitcask shard{'s' if n > 1 else ''}"


def _client_rates(ports: list[int], ops: int, sharded: bool) -> tuple[float, float]:
    async def run() -> tuple[float, float]:
        if not sharded:
            async with connect(HOST, ports[0]) as c:
                return await _drive(c, ops)
        shards = {name: f"{HOST}:{p}" for name, p in zip(NAMES, ports, strict=False)}
        async with connect_sharded(shards) as sc:
            return await _drive(sc, ops)

    return uvloop.run(run())


def measure(requests: int, ops: int) -> list[Table]:
    """Both tables, from one run over the same bitcask-servers."""
    proxy, client = proxy_table(requests), client_table(ops)
    missing = [b for b in ("redis-benchmark", "nutcracker") if not which(b)]
    if missing:
        proxy.notes.append(f"not run: {', '.join(missing)} not installed")
    for n in (1, 2, 3):
        print(f"-- {_shards(n)}", flush=True)
        with _bitcask_servers(n) as servers:
            ports = [s.port for s in servers]
            pids = [s.pid for s in servers]
            if n == 1:
                if not missing:
                    r = _measure(ports[0], requests, pids)
                    proxy.add(setup="bitcask-server, direct", **r)
                put, get = _client_rates(ports, ops, sharded=False)
                client.add(setup="Client, one server", put=put, get=get)
            if not missing:
                with _nutcracker(ports) as nut:
                    r = _measure(nut.port, requests, pids, nut.pid)
                    proxy.add(setup=f"nutcracker, {_shards(n)}", **r)
            put, get = _client_rates(ports, ops, sharded=True)
            client.add(setup=f"connect_sharded, {_shards(n)}", put=put, get=get)
    if not missing and which("redis-server"):
        print("-- redis-server reference", flush=True)
        with _redis_server() as redis:
            r = _measure(redis.port, requests, [redis.pid])
            proxy.add(setup="redis-server, direct", **r)
            with _nutcracker([redis.port]) as nut:
                r = _measure(nut.port, requests, [redis.pid], nut.pid)
                proxy.add(setup="nutcracker, 1 redis-server", **r)
    elif not missing:
        proxy.notes.append("redis-server not installed: no reference rows")
    if not missing:
        proxy.notes.append(
            "bitcask-servers run --sync never; CPU µs/SET: the CPU time of every backend "
            "(and of nutcracker) during the SET run over its requests, from /proc. The "
            "redis-server rows show the proxy's own ceiling."
        )
    client.notes.append("the same bitcask-servers as the table above, one run each")
    return [proxy, client]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m bench.sharding", description=__doc__.splitlines()[0]
    )
    parser.add_argument("--quick", action="store_true", help="small sizes; a smoke run")
    parser.add_argument("--requests", type=int, help="redis-benchmark requests per test")
    parser.add_argument("--ops", type=int, help="sharded-client puts (and gets)")
    parser.add_argument("--out", help="results directory (default bench/results)")
    args = parser.parse_args(argv)
    requests = args.requests or (2_000 if args.quick else 50_000)
    ops = args.ops or (1_000 if args.quick else 50_000)
    emit("sharding", measure(requests, ops),
         meta={"quick": args.quick, "requests": requests, "ops": ops}, out_dir=args.out)  # fmt: skip
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
