"""Servers on loopback: bitcask-server against the Python ceiling and Redis, one run.

`python -m bench.server [--quick] [--ops N] [--conns N]`

A lean load generator (uvloop, pre-encoded frames, N connections each keeping `depth`
requests in flight) drives, one after another: bitcask-server --sync never and --sync
always, bench/ceiling_server.py (a dict behind the same framing: the ceiling), and
Redis without persistence and with `appendfsync always` when `redis-server` is on PATH
(the same generator speaking RESP). Every server runs in its own child process; the
generator runs in this one. Reported per server, depth and operation: ops/s, p50/p99
latency, and server CPU µs/op from /proc/<pid>/stat (utime+stime, all threads).

Also measured: how the writer runs write_batch (dedicated thread, the loop's default
executor, aiofiles, or on the loop itself) for each sync policy, and the group-commit
curve (ops/s against concurrent writers under --sync always). Results go to
bench/results/server.json and .md through bench/_util.py. Nothing here asserts speed.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import random
import shutil
import socket
import struct
import subprocess
import sys
import tempfile
import time
from collections import deque
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import msgpack
import uvloop

from bench._util import Column, Table, emit, fmt_num, fmt_rate, fmt_ratio

HOST = "127.0.0.1"
_HZ = os.sysconf("SC_CLK_TCK")
_LEN = struct.Struct(">I")


# --------------------------------------------------------------------------- wire


def mp_frame(method: str, params: list[Any]) -> bytes:
    # msgid 1 on every request: replies come back in order on a connection, and a fixed
    # msgid puts the error field of every reply at body[3] for the check below.
    body = msgpack.packb([0, 1, method, params], use_bin_type=True)
    return _LEN.pack(len(body)) + body


def resp_frame(*args: bytes) -> bytes:
    out = [b"*%d\r\n" % len(args)]
    for a in args:
        out.append(b"$%d\r\n%s\r\n" % (len(a), a))
    return b"".join(out)


class MsgpackReplies:
    """Counts complete reply frames; an error reply (non-nil error field) is counted too."""

    def __init__(self) -> None:
        self.buf = b""
        self.errors = 0

    def feed(self, data: bytes) -> int:
        buf = self.buf + data if self.buf else data
        pos, end, n = 0, len(buf), 0
        while end - pos >= 4:
            (size,) = _LEN.unpack_from(buf, pos)
            if end - pos - 4 < size:
                break
            if buf[pos + 7] != 0xC0:  # [0x94, 0x01, msgid=0x01, error...]
                self.errors += 1
            pos += 4 + size
            n += 1
        self.buf = buf[pos:]
        return n


class RespReplies:
    """Counts complete RESP replies of the simple kinds Redis sends for SET/GET."""

    def __init__(self) -> None:
        self.buf = b""
        self.errors = 0

    def feed(self, data: bytes) -> int:
        buf = self.buf + data if self.buf else data
        pos, n = 0, 0
        while True:
            eol = buf.find(b"\r\n", pos)
            if eol < 0:
                break
            kind = buf[pos]
            if kind == 0x24:  # $len
                size = int(buf[pos + 1 : eol])
                stop = eol + 2 + (size + 2 if size >= 0 else 0)
                if stop > len(buf):
                    break
                pos = stop
            else:
                if kind == 0x2D:  # -ERR
                    self.errors += 1
                pos = eol + 2
            n += 1
        self.buf = buf[pos:]
        return n


# --------------------------------------------------------------------------- generator


class LoadConn(asyncio.Protocol):
    """Keeps `depth` requests in flight until its frames are all answered."""

    def __init__(
        self,
        frames: list[bytes],
        depth: int,
        parser: Any,
        lat: list[float],
        done: asyncio.Future[None],
    ) -> None:
        self.frames, self.depth, self.parser, self.lat, self.done = frames, depth, parser, lat, done
        self.sent = 0
        self.received = 0
        self.times: deque[float] = deque()
        self.transport: asyncio.Transport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]
        sock = transport.get_extra_info("socket")
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

    def start(self) -> None:
        self._send(min(self.depth, len(self.frames)))

    def _send(self, k: int) -> None:
        if k <= 0:
            return
        i = self.sent
        self.sent += k
        now = time.perf_counter()
        self.times.extend([now] * k)
        chunk = self.frames[i] if k == 1 else b"".join(self.frames[i : i + k])
        self.transport.write(chunk)  # type: ignore[union-attr]

    def data_received(self, data: bytes) -> None:
        n = self.parser.feed(data)
        if not n:
            return
        now = time.perf_counter()
        pop, lat = self.times.popleft, self.lat
        for _ in range(n):
            lat.append(now - pop())
        self.received += n
        self._send(min(n, len(self.frames) - self.sent))
        if self.received >= len(self.frames) and not self.done.done():
            self.done.set_result(None)

    def connection_lost(self, exc: Exception | None) -> None:
        if not self.done.done():
            self.done.set_exception(ConnectionError(f"server closed the connection: {exc}"))


@dataclass
class Run:
    ops: int
    seconds: float
    latencies: list[float]
    errors: int
    cpu_seconds: float

    @property
    def rate(self) -> float:
        return self.ops / self.seconds

    def pct(self, q: float) -> float:
        s = sorted(self.latencies)
        return s[min(len(s) - 1, int(q * len(s)))] * 1000 if s else float("nan")


def cpu_seconds(pid: int) -> float:
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / _HZ  # utime, stime


async def _drive(port: int, per_conn: list[list[bytes]], depth: int, resp: bool) -> Run:
    loop = asyncio.get_running_loop()
    lat: list[float] = []
    conns: list[LoadConn] = []
    waits = []
    for frames in per_conn:
        done: asyncio.Future[None] = loop.create_future()
        parser: RespReplies | MsgpackReplies = RespReplies() if resp else MsgpackReplies()
        proto = LoadConn(frames, depth, parser, lat, done)
        await loop.create_connection(lambda proto=proto: proto, HOST, port)  # type: ignore[misc]
        conns.append(proto)
        waits.append(done)
    started = time.perf_counter()
    for c in conns:
        c.start()
    await asyncio.wait_for(asyncio.gather(*waits), 600)
    elapsed = time.perf_counter() - started
    for c in conns:
        c.transport.close()  # type: ignore[union-attr]
    errors = sum(c.parser.errors for c in conns)
    return Run(sum(len(f) for f in per_conn), elapsed, lat, errors, 0.0)


def drive(pid: int, port: int, per_conn: list[list[bytes]], depth: int, resp: bool) -> Run:
    before = cpu_seconds(pid)
    run = uvloop.run(_drive(port, per_conn, depth, resp))
    run.cpu_seconds = cpu_seconds(pid) - before
    return run


def split(frames: list[bytes], conns: int) -> list[list[bytes]]:
    return [frames[i::conns] for i in range(conns)]


# --------------------------------------------------------------------------- servers


def free_port() -> int:
    with socket.socket() as s:
        s.bind((HOST, 0))
        return int(s.getsockname()[1])


def wait_port(port: int, proc: subprocess.Popen[bytes], timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"server exited with {proc.returncode}")
        with contextlib.suppress(OSError), socket.create_connection((HOST, port), timeout=0.5):
            return
        time.sleep(0.05)
    raise TimeoutError(f"nothing listens on {port}")


@contextlib.contextmanager
def process(argv: list[str], port: int) -> Iterator[subprocess.Popen[bytes]]:
    proc = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        wait_port(port, proc)
        yield proc
    finally:
        proc.terminate()
        try:
            proc.wait(20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(5)


@dataclass(frozen=True)
class Target:
    name: str
    argv: Callable[[int, str], list[str]]  # (port, scratch dir) -> argv
    resp: bool = False
    put_cmd: Callable[[bytes, bytes], bytes] = lambda k, v: mp_frame("put", [k, v])
    get_cmd: Callable[[bytes], bytes] = lambda k: mp_frame("get", [k])


def bitcask_target(sync: str, writer: str = "auto") -> Target:
    def argv(port: int, scratch: str) -> list[str]:
        data = os.path.join(scratch, f"bitcask-{sync}-{writer}-{port}")
        return [
            sys.executable, "-m", "server", "--data", data, "--port", str(port),
            "--http-port", str(free_port()), "--sync", sync, "--writer", writer,
            "--log-level", "warning",
        ]  # fmt: skip

    label = f"bitcask --sync {sync}" + ("" if writer == "auto" else f" ({writer})")
    return Target(label, argv)


CEILING = Target(
    "ceiling (uvloop + dict)",
    lambda p, s: [sys.executable, "-m", "bench.ceiling_server", "--port", str(p)],
)


def redis_target(fsync_always: bool) -> Target:
    def argv(port: int, scratch: str) -> list[str]:
        data = os.path.join(scratch, f"redis-{port}")
        os.makedirs(data, exist_ok=True)
        aof = (
            ["--appendonly", "yes", "--appendfsync", "always"]
            if fsync_always
            else ["--appendonly", "no"]
        )
        return [
            "redis-server", "--port", str(port), "--bind", HOST, "--save", "", "--dir", data,
            "--protected-mode", "no", "--daemonize", "no", *aof,
        ]  # fmt: skip

    name = "redis appendfsync always" if fsync_always else "redis (no persistence)"
    return Target(
        name, argv, True, lambda k, v: resp_frame(b"SET", k, v), lambda k: resp_frame(b"GET", k)
    )


def keys_and_values(n: int, size: int) -> tuple[list[bytes], list[bytes]]:
    rnd = random.Random(42)
    keys = [b"key:%012d" % i for i in range(n)]
    values = [rnd.randbytes(size) for _ in range(min(n, 1024))]
    return keys, [values[i % len(values)] for i in range(n)]


def measure(
    target: Target,
    scratch: str,
    keys: list[bytes],
    values: list[bytes],
    conns: int,
    depths: list[int],
    ops_get: bool = True,
) -> dict[tuple[int, str], Run]:
    """Puts then gets of every key, at each depth, against one fresh server process."""
    out: dict[tuple[int, str], Run] = {}
    puts = [target.put_cmd(k, v) for k, v in zip(keys, values, strict=True)]
    gets = [target.get_cmd(k) for k in keys]
    port = free_port()
    with process(target.argv(port, scratch), port) as proc:
        for depth in depths:
            out[(depth, "put")] = drive(proc.pid, port, split(puts, conns), depth, target.resp)
            if ops_get:
                out[(depth, "get")] = drive(proc.pid, port, split(gets, conns), depth, target.resp)
    return out


# --------------------------------------------------------------------------- report


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m bench.server", description=__doc__.splitlines()[0]
    )
    parser.add_argument("--quick", action="store_true", help="small sizes (a smoke run)")
    parser.add_argument("--ops", type=int, default=200_000)
    parser.add_argument("--conns", type=int, default=50)
    parser.add_argument("--value-size", type=int, default=100)
    parser.add_argument("--no-redis", action="store_true", help="skip Redis even if installed")
    args = parser.parse_args(argv)
    ops = 5_000 if args.quick else args.ops
    conns, depths = args.conns, [1, 16]
    keys, values = keys_and_values(ops, args.value_size)
    redis = shutil.which("redis-server") is not None and not args.no_redis
    targets = [bitcask_target("never"), bitcask_target("always"), CEILING]
    if redis:
        targets += [redis_target(False), redis_target(True)]

    main_table = Table(
        f"Servers on loopback: {conns} connections, {args.value_size} B values, {ops:,} ops per row",
        [
            Column("server", "server"), Column("depth", "pipeline"), Column("op", "op"),
            Column("rate", "ops/s", fmt_rate), Column("p50", "p50 ms", _ms), Column("p99", "p99 ms", _ms),
            Column("cpu", "server CPU µs/op", fmt_num), Column("errors", "errors"),
        ],
    )  # fmt: skip
    results: dict[str, dict[tuple[int, str], Run]] = {}
    with tempfile.TemporaryDirectory(prefix="bench-server-") as scratch:
        for target in targets:
            print(f"-- {target.name}", flush=True)
            results[target.name] = res = measure(target, scratch, keys, values, conns, depths)
            for (depth, op), run in res.items():
                main_table.add(
                    server=target.name, depth=depth, op=op, rate=run.rate, p50=run.pct(0.5),
                    p99=run.pct(0.99), cpu=run.cpu_seconds / run.ops * 1e6, errors=run.errors,
                )  # fmt: skip
        if not redis:
            main_table.notes.append("redis-server not on PATH: the Redis rows are skipped.")
        ratios = ratio_table(results, redis)
        modes = writer_modes(scratch, keys, values, conns, quick=args.quick)
        curve = group_commit_curve(scratch, keys, values, quick=args.quick)
    emit(
        "server",
        [main_table, ratios, modes, curve],
        meta={"ops": ops, "conns": conns, "value_size": args.value_size},
    )
    return 0


def _ms(v: Any) -> str:
    return "-" if not isinstance(v, int | float) else f"{v:.2f}"


def ratio_table(results: dict[str, dict[tuple[int, str], Run]], redis: bool) -> Table:
    t = Table(
        "Targets of issue 3 (ratios measured in this run)",
        [
            Column("what", "ratio"),
            Column("target", "target", fmt_ratio),
            Column("got", "measured", fmt_ratio),
            Column("ok", "met"),
        ],
    )

    def rate(name: str, depth: int, op: str = "put") -> float:
        return results[name][(depth, op)].rate

    never, always = "bitcask --sync never", "bitcask --sync always"
    rows: list[tuple[str, float, float]] = []
    for op in ("put", "get"):
        rows.append(
            (
                f"never / ceiling, depth 1, {op}",
                0.85,
                rate(never, 1, op) / rate(CEILING.name, 1, op),
            )
        )
        rows.append(
            (
                f"never / ceiling, depth 16, {op}",
                0.6,
                rate(never, 16, op) / rate(CEILING.name, 16, op),
            )
        )
    rows.append(("always / never, depth 1, put", 0.5, rate(always, 1) / rate(never, 1)))
    if redis:
        for depth in (1, 16):
            rows.append(
                (
                    f"always / redis appendfsync always, depth {depth}, put",
                    1.0,
                    rate(always, depth) / rate("redis appendfsync always", depth),
                )
            )
    for what, target, got in rows:
        t.add(what=what, target=target, got=got, ok="yes" if got >= target else "NO")
    return t


def writer_modes(
    scratch: str, keys: list[bytes], values: list[bytes], conns: int, quick: bool
) -> Table:
    """How write_batch runs: dedicated thread vs default executor vs aiofiles vs on the loop."""
    n = 2_000 if quick else 50_000
    t = Table(
        f"Writer modes: {n:,} puts, {conns} connections, depth 1 (group commit)",
        [
            Column("sync", "sync"),
            Column("mode", "writer"),
            Column("rate", "put ops/s", fmt_rate),
            Column("p99", "p99 ms", _ms),
            Column("cpu", "server CPU µs/op", fmt_num),
        ],
    )
    for sync, modes in (
        ("always", ("thread", "executor", "aiofiles", "loop")),
        ("never", ("loop", "thread", "executor")),
    ):
        for mode in modes:
            run = measure(
                bitcask_target(sync, mode), scratch, keys[:n], values[:n], conns, [1], ops_get=False
            )[(1, "put")]
            t.add(
                sync=sync,
                mode=mode,
                rate=run.rate,
                p99=run.pct(0.99),
                cpu=run.cpu_seconds / run.ops * 1e6,
            )
    t.notes.append("'auto' (the default) picks thread under always/interval and loop under never.")
    return t


def group_commit_curve(scratch: str, keys: list[bytes], values: list[bytes], quick: bool) -> Table:
    """ops/s against concurrent writers (depth 1 each) under --sync always, one server."""
    t = Table(
        "Group commit: bitcask --sync always, depth 1, put ops/s by concurrent writers",
        [
            Column("writers", "writers"),
            Column("rate", "put ops/s", fmt_rate),
            Column("p50", "p50 ms", _ms),
            Column("per_fsync", "puts per group", fmt_num),
        ],
    )
    target = bitcask_target("always")
    port = free_port()
    with process(target.argv(port, scratch), port) as proc:
        for writers in (1, 2, 4, 8, 16, 32, 64):
            n = min(len(keys), (200 if quick else 1_000) * max(2, writers // 2))
            frames = [target.put_cmd(k, v) for k, v in zip(keys[:n], values[:n], strict=True)]
            before = _groups(port)
            run = drive(proc.pid, port, split(frames, writers), 1, False)
            after = _groups(port)
            groups = after - before
            t.add(
                writers=writers,
                rate=run.rate,
                p50=run.pct(0.5),
                per_fsync=run.ops / groups if groups else None,
            )
    return t


def _groups(port: int) -> int:
    """The server's group-commit counter, read with one `stats` call."""
    with socket.create_connection((HOST, port), timeout=10) as s:
        s.sendall(mp_frame("stats", []))
        buf = b""
        while len(buf) < 4 or len(buf) < 4 + _LEN.unpack_from(buf)[0]:
            chunk = s.recv(1 << 16)
            if not chunk:
                raise ConnectionError("stats: connection closed")
            buf += chunk
    reply = msgpack.unpackb(buf[4:], raw=False)
    return int(reply[3]["server"]["group_commits"])


if __name__ == "__main__":
    raise SystemExit(main())
