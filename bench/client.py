"""Client CPU per operation: client/ against a lean raw-frame generator, one run.

`python -m bench.client [--quick] [--ops N] [--tasks N] [--runs N]`

Starts one `python -m server --sync never` child on free loopback ports, then, one
after another in this process (uvloop), drives the same workload through:

- the lean generator: raw pre-encoded frames, an asyncio.Protocol that only
  splits replies by their length prefix and sends the next frames (the least
  CPU a Python client can spend per op);
- `client.Client`: 50 tasks sharing one connection (`await c.put(k, v)`, then
  `await c.get(k)`), and `client.Pool` with one connection per task.

The lean generator is the one of the server benchmark: 50 connections, one
request in flight on each (`--tasks`). Two reference rows show the floors of
other shapes on one connection: the lean generator pipelining 50 deep without
tasks, and "lean tasks": 50 tasks each awaiting a future per call (pre-encoded
frames, one write per loop turn), the least any task-based client can spend.
Workload: puts of 100-byte values to `key:%012d`, then gets of the same keys;
--ops in total (half puts, half gets).

Client CPU is `time.process_time()` of this process around the workload only
(the server is another process). Reported: ops/s, client CPU µs/op, and the
ratio client/lean against the 1.5x target (redis.asyncio spends about
5x its lean generator, PEERS.md). Results: bench/results/client.json and .md.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import shutil
import statistics
import struct
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable, Iterator
from typing import Any

import msgpack
import uvloop

from bench._util import HOST, Column, Table, emit, fmt_num, fmt_rate, fmt_ratio, free_port, process
from client import Pool, connect

VALUE = b"v" * 100
TARGET = 1.5
_LEN = struct.Struct(">I")


@contextlib.contextmanager
def bitcask_server() -> Iterator[int]:
    """One `python -m server --sync never` child on free ports; yields the binary port."""
    data = tempfile.mkdtemp(prefix="bench-client-")
    port, http_port = free_port(), free_port()
    argv = [sys.executable, "-m", "server", "--data", data, "--host", HOST, "--port", str(port),
            "--http-port", str(http_port), "--sync", "never", "--log-level", "warning", "--drain-seconds", "0"]  # fmt: skip
    try:
        with process(argv, port):
            yield port
    finally:
        shutil.rmtree(data, ignore_errors=True)


def keys(n: int) -> list[bytes]:
    return [b"key:%012d" % i for i in range(n)]


# --------------------------------------------------------------------------- lean


def frame(msgid: int, method: str, params: list[Any]) -> bytes:
    body = msgpack.packb([0, msgid, method, params], use_bin_type=True)
    return _LEN.pack(len(body)) + body


class Lean(asyncio.Protocol):
    """Keeps `depth` pre-encoded frames in flight; counts replies by length prefix."""

    def __init__(self, frames: list[bytes], depth: int, done: asyncio.Future[None]) -> None:
        self.frames, self.depth, self.done = frames, depth, done
        self.sent = self.received = 0
        self.buf = b""
        self.transport: asyncio.Transport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def send(self, k: int) -> None:
        i = self.sent
        k = min(k, len(self.frames) - i)
        if k > 0:
            self.sent = i + k
            self.transport.write(b"".join(self.frames[i : i + k]))  # type: ignore[union-attr]

    def data_received(self, data: bytes) -> None:
        buf = self.buf + data if self.buf else data
        pos, end, n = 0, len(buf), 0
        while end - pos >= 4:
            (size,) = _LEN.unpack_from(buf, pos)
            if end - pos - 4 < size:
                break
            pos += 4 + size
            n += 1
        self.buf = buf[pos:]
        self.received += n
        self.send(n)
        if self.received >= len(self.frames) and not self.done.done():
            self.done.set_result(None)

    def connection_lost(self, exc: Exception | None) -> None:
        if not self.done.done():
            self.done.set_exception(ConnectionError(f"lost: {exc}"))


async def lean(port: int, conns: int, depth: int, ks: list[bytes]) -> dict[str, float]:
    loop = asyncio.get_running_loop()
    phases = {
        "put": [frame(i % 2**32, "put", [k, VALUE]) for i, k in enumerate(ks)],
        "get": [frame(i % 2**32, "get", [k]) for i, k in enumerate(ks)],
    }
    out: dict[str, float] = {}
    for phase, frames in phases.items():
        protos: list[Lean] = []
        for c in range(conns):
            done: asyncio.Future[None] = loop.create_future()
            mine = frames[c::conns]
            _, proto = await loop.create_connection(
                lambda: Lean(mine, depth, done),  # noqa: B023 - called before the loop moves on
                HOST,
                port,
            )
            protos.append(proto)
        cpu, wall = time.process_time(), time.perf_counter()
        for p in protos:
            p.send(p.depth)
        await asyncio.gather(*(p.done for p in protos))
        out[phase + "_cpu"] = time.process_time() - cpu
        out[phase + "_wall"] = time.perf_counter() - wall
        for p in protos:
            p.transport.close()  # type: ignore[union-attr]
    return out


class LeanTasks(asyncio.Protocol):
    """The floor of a task-based API on one connection: a future per call, replies by msgid.

    Frames are pre-encoded; frames queued in one loop turn leave in one write; replies
    are split by length and their msgid read from the body.
    """

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self.loop = loop
        self.pending: dict[int, asyncio.Future[Any]] = {}
        self.out: list[bytes] = []
        self.buf = b""
        self.transport: asyncio.Transport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def call(self, msgid: int, data: bytes) -> asyncio.Future[Any]:
        fut = self.loop.create_future()
        self.pending[msgid] = fut
        if not self.out:
            self.loop.call_soon(self.flush)
        self.out.append(data)
        return fut

    def flush(self) -> None:
        out, self.out = self.out, []
        self.transport.write(b"".join(out))  # type: ignore[union-attr]

    def data_received(self, data: bytes) -> None:
        buf = self.buf + data if self.buf else data
        pos, end, pop = 0, len(buf), self.pending.pop
        while end - pos >= 4:
            (size,) = _LEN.unpack_from(buf, pos)
            if end - pos - 4 < size:
                break
            reply = msgpack.unpackb(buf[pos + 4 : pos + 4 + size])
            pop(reply[1]).set_result(reply[3])
            pos += 4 + size
        self.buf = buf[pos:]


async def lean_tasks(port: int, tasks: int, ks: list[bytes]) -> dict[str, float]:
    loop = asyncio.get_running_loop()
    _, proto = await loop.create_connection(lambda: LeanTasks(loop), HOST, port)
    await asyncio.sleep(0)
    out: dict[str, float] = {}
    for phase in ("put", "get"):
        params = (lambda k: [k, VALUE]) if phase == "put" else (lambda k: [k])
        frames = [frame(i + 1, phase, params(k)) for i, k in enumerate(ks)]

        async def worker(t: int, frames: list[bytes] = frames) -> None:
            call = proto.call
            for i in range(t, len(frames), tasks):
                await call(i + 1, frames[i])

        cpu, wall = time.process_time(), time.perf_counter()
        await asyncio.gather(*(worker(t) for t in range(tasks)))
        out[phase + "_cpu"] = time.process_time() - cpu
        out[phase + "_wall"] = time.perf_counter() - wall
    proto.transport.close()  # type: ignore[union-attr]
    return out


# --------------------------------------------------------------------------- client


async def through(target: Any, tasks: int, ks: list[bytes]) -> dict[str, float]:
    async def putter(mine: list[bytes]) -> None:
        put = target.put
        for k in mine:
            await put(k, VALUE)

    async def getter(mine: list[bytes]) -> None:
        get = target.get
        for k in mine:
            if await get(k) != VALUE:
                raise AssertionError(f"wrong value for {k!r}")

    out: dict[str, float] = {}
    for phase, worker in (("put", putter), ("get", getter)):
        cpu, wall = time.process_time(), time.perf_counter()
        await asyncio.gather(*(worker(ks[t::tasks]) for t in range(tasks)))
        out[phase + "_cpu"] = time.process_time() - cpu
        out[phase + "_wall"] = time.perf_counter() - wall
    return out


async def client_one(port: int, tasks: int, ks: list[bytes]) -> dict[str, float]:
    async with connect(HOST, port, timeout=30.0) as c:
        return await through(c, tasks, ks)


async def client_pool(port: int, tasks: int, ks: list[bytes]) -> dict[str, float]:
    async with Pool(HOST, port, size=tasks, timeout=30.0) as pool:
        return await through(pool, tasks, ks)


# --------------------------------------------------------------------------- report


def measure(fn: Callable[[], Awaitable[dict[str, float]]], runs: int) -> dict[str, float]:
    samples: list[dict[str, float]] = [uvloop.run(fn()) for _ in range(runs)]  # type: ignore[arg-type]
    return {k: statistics.median(s[k] for s in samples) for k in samples[0]}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m bench.client", description=__doc__.splitlines()[0]
    )
    parser.add_argument("--quick", action="store_true", help="10,000 ops, one run (a smoke run)")
    parser.add_argument("--ops", type=int, default=100_000, help="total ops, half put half get")
    parser.add_argument("--tasks", type=int, default=50, help="requests in flight")
    parser.add_argument("--runs", type=int, default=3, help="runs per row (median)")
    args = parser.parse_args(argv)
    ops, runs = (10_000, 1) if args.quick else (args.ops, args.runs)
    tasks = args.tasks
    ks = keys(ops // 2)
    n = len(ks)
    table = Table(
        f"Client CPU per op: {tasks} in flight, 100 B values, {n} puts then {n} gets",
        [
            Column("driver", "driver", str),
            Column("conns", "connections", str),
            Column("put_rate", "put ops/s", fmt_rate),
            Column("get_rate", "get ops/s", fmt_rate),
            Column("put_us", "put CPU µs/op", fmt_num),
            Column("get_us", "get CPU µs/op", fmt_num),
            Column("us", "CPU µs/op", fmt_num),
            Column("ratio", "vs lean", fmt_ratio),
        ],
    )
    rows: dict[str, dict[str, Any]] = {}
    with bitcask_server() as port:
        drivers: list[tuple[str, str, str, Callable[[], Awaitable[dict[str, float]]]]] = [
            ("lean", "lean generator (server benchmark's)", f"{tasks} x depth 1",
             lambda: lean(port, tasks, 1, ks)),
            ("client", f"Client, {tasks} tasks", "1",
             lambda: client_one(port, tasks, ks)),
            ("pool", f"Pool(size={tasks}), {tasks} tasks", str(tasks),
             lambda: client_pool(port, tasks, ks)),
            ("pipelined", "reference: lean pipelined, no tasks", f"1 x depth {tasks}",
             lambda: lean(port, 1, tasks, ks)),
            ("tasks", f"reference: lean tasks ({tasks} futures)", "1",
             lambda: lean_tasks(port, tasks, ks)),
        ]  # fmt: skip
        base = None
        for key, name, conns, fn in drivers:
            r = measure(fn, runs)
            us = (r["put_cpu"] + r["get_cpu"]) / (2 * n) * 1e6
            base = us if base is None else base
            rows[key] = table.add(
                driver=name, conns=conns,
                put_rate=n / r["put_wall"], get_rate=n / r["get_wall"],
                put_us=round(r["put_cpu"] / n * 1e6, 2), get_us=round(r["get_cpu"] / n * 1e6, 2),
                us=round(us, 2), ratio=us / base,
            )  # fmt: skip
            print(f"{name:42s} {us:6.2f} µs/op  {us / base:.2f}x", flush=True)
    for key in ("client", "pool"):
        row = rows[key]
        verdict = "meets" if row["ratio"] <= TARGET else "misses"
        table.notes.append(
            f"{row['driver']}: {row['ratio']:.2f}x the lean generator's client CPU per op; "
            f"target <= {TARGET}x: {verdict}."
        )
    floor = rows["tasks"]["us"]
    table.notes.append(
        f"Same shape as the Client (one connection, {tasks} tasks awaiting futures): the "
        f"Client spends {rows['client']['us'] / floor:.2f}x the lean-tasks floor; "
        "the pipelined row shows what batching without tasks costs."
    )
    table.notes.append(
        "Client CPU = time.process_time() of the benchmark process around the workload; "
        "one `python -m server --sync never` child serves every row; uvloop; "
        f"median of {runs} run(s)."
    )
    emit("client", [table], meta={"ops": 2 * n, "tasks": tasks, "value_bytes": len(VALUE),
                                  "runs": runs, "target_ratio": TARGET, "pid": os.getpid()})  # fmt: skip
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
