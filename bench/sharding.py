"""What the proxy costs and what sharding buys, on this machine: one run each.

`python -m bench.sharding [--quick] [--requests N] [--ops N]`

Two tables:

- **through nutcracker**: `redis-benchmark -t set,get` (50 connections) against
  one redis-server directly, then through nutcracker (fnv1a_64, ketama, the
  docs/scaling.md settings) in front of 1, 2 and 3 redis-servers. Backends are
  redis-server because bitcask-server does not speak the Redis dialect yet
  (docs/scaling.md, status); the rows show the proxy's own cost and scaling.
- **sharded client**: `connect_sharded` over 1, 2 and 3 bitcask-servers
  (`--sync never`), beside a plain `Client` to one server: 50 tasks, puts of
  100-byte values then gets of the same keys.

Every process shares this machine's cores with the load generator, so more
shards than cores cannot show their real gain; the CPU count is in the header.
Needs redis-server, redis-benchmark and nutcracker (Debian: redis-server,
redis-tools, nutcracker); the nutcracker table is left out, with a note, when
one is missing. Results: bench/results/sharding.json and .md.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import csv
import io
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import uvloop

from bench._util import HOST, Column, Table, emit, fmt_rate, free_port, process
from client import connect, connect_sharded

VALUE = b"v" * 100
NAMES = ("shard-a", "shard-b", "shard-c")
SBIN = "/usr/local/sbin:/usr/sbin:/sbin"


def _which(binary: str) -> str | None:
    return shutil.which(binary) or shutil.which(binary, path=SBIN)


@contextlib.contextmanager
def _redis_servers(n: int) -> Iterator[list[int]]:
    binary = _which("redis-server")
    assert binary is not None
    with contextlib.ExitStack() as stack:
        ports = []
        for _ in range(n):
            port = free_port()
            argv = [binary, "--port", str(port), "--bind", HOST, "--save", "",
                    "--appendonly", "no"]  # fmt: skip
            stack.enter_context(process(argv, port))
            ports.append(port)
        yield ports


@contextlib.contextmanager
def _nutcracker(backends: list[int]) -> Iterator[int]:
    binary = _which("nutcracker")
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
        with process(argv, listen):
            yield listen


def _redis_benchmark(port: int, requests: int) -> dict[str, float]:
    binary = _which("redis-benchmark")
    assert binary is not None
    argv = [binary, "-h", HOST, "-p", str(port), "-t", "set,get", "-n", str(requests),
            "-c", "50", "-d", "100", "-r", "1000000", "--csv"]  # fmt: skip
    out = subprocess.run(argv, capture_output=True, text=True, timeout=600, check=True).stdout
    rows = csv.DictReader(io.StringIO(out))
    return {row["test"]: float(row["rps"]) for row in rows}


def proxy_table(requests: int) -> Table:
    table = Table(
        f"through nutcracker: redis-benchmark, {requests:,} requests per test, 50 connections",
        [
            Column("setup", "setup", str),
            Column("set", "SET ops/s", fmt_rate),
            Column("get", "GET ops/s", fmt_rate),
        ],
    )
    missing = [b for b in ("redis-server", "redis-benchmark", "nutcracker") if not _which(b)]
    if missing:
        table.notes.append(f"not run: {', '.join(missing)} not installed")
        return table
    with _redis_servers(1) as (port,):
        r = _redis_benchmark(port, requests)
        table.add(setup="redis-server, direct", set=r["SET"], get=r["GET"])
    for n in (1, 2, 3):
        with _redis_servers(n) as ports, _nutcracker(ports) as listen:
            r = _redis_benchmark(listen, requests)
            table.add(
                setup=f"nutcracker, {n} shard{'s' if n > 1 else ''}", set=r["SET"], get=r["GET"]
            )
    table.notes.append("backends are redis-server: bitcask-server does not speak RESP yet")
    return table


@contextlib.contextmanager
def _bitcask_servers(n: int) -> Iterator[list[int]]:
    with contextlib.ExitStack() as stack:
        ports = []
        for _ in range(n):
            data = stack.enter_context(tempfile.TemporaryDirectory(prefix="bench-shard-"))
            port, http_port = free_port(), free_port()
            argv = [sys.executable, "-m", "server", "--data", data, "--host", HOST,
                    "--port", str(port), "--http-port", str(http_port), "--sync", "never",
                    "--log-level", "warning"]  # fmt: skip
            stack.enter_context(process(argv, port))
            ports.append(port)
        yield ports


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


def client_table(ops: int) -> Table:
    table = Table(
        f"sharded client: {ops:,} puts then {ops:,} gets of 100 B, 50 tasks, --sync never",
        [
            Column("setup", "setup", str),
            Column("put", "put ops/s", fmt_rate),
            Column("get", "get ops/s", fmt_rate),
        ],
    )
    with _bitcask_servers(1) as (port,):

        async def plain() -> tuple[float, float]:
            async with connect(HOST, port) as c:
                return await _drive(c, ops)

        put, get = uvloop.run(plain())
        table.add(setup="Client, one server", put=put, get=get)
    for n in (1, 2, 3):
        with _bitcask_servers(n) as ports:

            async def sharded(ports: list[int] = ports) -> tuple[float, float]:
                shards = {name: f"{HOST}:{p}" for name, p in zip(NAMES, ports, strict=False)}
                async with connect_sharded(shards) as sc:
                    return await _drive(sc, ops)

            put, get = uvloop.run(sharded())
            table.add(setup=f"connect_sharded, {n} shard{'s' if n > 1 else ''}", put=put, get=get)
    return table


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m bench.sharding", description=__doc__.splitlines()[0]
    )
    parser.add_argument("--quick", action="store_true", help="small sizes; a smoke run")
    parser.add_argument("--requests", type=int, help="redis-benchmark requests per test")
    parser.add_argument("--ops", type=int, help="sharded-client puts (and gets)")
    parser.add_argument("--out", help="results directory (default bench/results)")
    args = parser.parse_args(argv)
    requests = args.requests or (2_000 if args.quick else 100_000)
    ops = args.ops or (1_000 if args.quick else 50_000)
    tables = [proxy_table(requests), client_table(ops)]
    emit("sharding", tables, meta={"quick": args.quick, "requests": requests, "ops": ops},
         out_dir=args.out)  # fmt: skip
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
