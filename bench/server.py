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
import statistics
import struct
import subprocess
import sys
import tempfile
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import msgpack
import uvloop

from bench._util import (
    HOST,
    Column,
    Table,
    emit,
    fmt_num,
    fmt_rate,
    fmt_ratio,
    free_port,
    process,
)

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
            "--log-level", "warning", "--drain-seconds", "0",
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


@dataclass
class Running:
    """A target's server process, with its pre-encoded frames."""

    target: Target
    proc: subprocess.Popen[bytes]
    port: int
    puts: list[bytes]
    gets: list[bytes]


def start_all(
    stack: contextlib.ExitStack,
    targets: list[Target],
    scratch: str,
    keys: list[bytes],
    values: list[bytes],
) -> list[Running]:
    running = []
    for target in targets:
        port = free_port()
        proc = stack.enter_context(process(target.argv(port, scratch), port))
        puts = [target.put_cmd(k, v) for k, v in zip(keys, values, strict=True)]
        gets = [target.get_cmd(k) for k in keys]
        running.append(Running(target, proc, port, puts, gets))
    return running


def run_phase(r: Running, op: str, conns: int, depth: int) -> Run:
    frames = r.puts if op == "put" else r.gets
    return drive(r.proc.pid, r.port, split(frames, conns), depth, r.target.resp)


@dataclass
class Summary:
    """The median of several runs of one (server, depth, op)."""

    rate: float
    p50: float
    p99: float
    cpu: float
    errors: int
    runs: int


def summarize(runs: list[Run]) -> Summary:
    return Summary(
        rate=statistics.median(r.rate for r in runs),
        p50=statistics.median(r.pct(0.5) for r in runs),
        p99=statistics.median(r.pct(0.99) for r in runs),
        cpu=statistics.median(r.cpu_seconds / r.ops * 1e6 for r in runs),
        errors=sum(r.errors for r in runs),
        runs=len(runs),
    )


# --------------------------------------------------------------------------- report


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m bench.server", description=__doc__.splitlines()[0]
    )
    parser.add_argument("--quick", action="store_true", help="small sizes (a smoke run)")
    parser.add_argument("--ops", type=int, default=200_000)
    parser.add_argument("--conns", type=int, default=50)
    parser.add_argument("--value-size", type=int, default=100)
    parser.add_argument("--runs", type=int, default=3, help="rounds; medians are reported")
    parser.add_argument("--no-redis", action="store_true", help="skip Redis even if installed")
    parser.add_argument(
        "--only",
        metavar="NAMES",
        help=f"comma-separated servers to run ({', '.join(TARGET_NAMES)}); only the main "
        "table is measured and nothing is written (a quick look at a few rows)",
    )
    parser.add_argument("--depths", default="1,16", help="pipeline depths (default 1,16)")
    parser.add_argument("--op", choices=("put", "get", "both"), default="both")
    args = parser.parse_args(argv)
    ops = 5_000 if args.quick else args.ops
    rounds = 1 if args.quick else max(1, args.runs)
    conns, depths = args.conns, [int(d) for d in args.depths.split(",")]
    keys, values = keys_and_values(ops, args.value_size)
    if args.only:
        return only_rows(args.only.split(","), depths, args.op, conns, rounds, keys, values)
    redis = shutil.which("redis-server") is not None and not args.no_redis
    targets = [bitcask_target("never"), bitcask_target("always"), CEILING]
    if redis:
        targets += [redis_target(False), redis_target(True)]

    main_table = Table(
        f"Servers on loopback: {conns} connections, {args.value_size} B values, "
        f"{ops:,} ops per row, median of {rounds} interleaved rounds",
        [
            Column("server", "server"), Column("depth", "pipeline"), Column("op", "op"),
            Column("rate", "ops/s", fmt_rate), Column("p50", "p50 ms", _ms), Column("p99", "p99 ms", _ms),
            Column("cpu", "server CPU µs/op", fmt_num), Column("errors", "errors"),
        ],
    )  # fmt: skip
    samples: dict[tuple[str, int, str], list[Run]] = {}
    with tempfile.TemporaryDirectory(prefix="bench-server-") as scratch:
        with contextlib.ExitStack() as stack:
            running = start_all(stack, targets, scratch, keys, values)
            # Rounds interleave the servers, so that a busy moment of the machine hits
            # every server alike instead of one row of the table.
            for round_no in range(rounds):
                for depth in depths:
                    for r in running:
                        print(
                            f"-- round {round_no + 1}: {r.target.name}, depth {depth}", flush=True
                        )
                        for op in ("put", "get"):
                            run = run_phase(r, op, conns, depth)
                            samples.setdefault((r.target.name, depth, op), []).append(run)
            sweep = connection_sweep(running, quick=args.quick)
        results = {key: summarize(runs) for key, runs in samples.items()}
        for target in targets:
            for depth in depths:
                for op in ("put", "get"):
                    s = results[(target.name, depth, op)]
                    main_table.add(
                        server=target.name, depth=depth, op=op, rate=s.rate, p50=s.p50,
                        p99=s.p99, cpu=s.cpu, errors=s.errors,
                    )  # fmt: skip
        if not redis:
            main_table.notes.append("redis-server not on PATH: the Redis rows are skipped.")
        ratios = ratio_table(results, redis)
        modes = writer_modes(scratch, keys, values, conns, rounds, quick=args.quick)
        curve = group_commit_curve(scratch, keys, values, quick=args.quick)
        profile = profile_summary(scratch, keys, values, quick=args.quick)
    emit(
        "server",
        [main_table, ratios, profile, sweep, modes, curve],
        meta={"ops": ops, "conns": conns, "value_size": args.value_size, "rounds": rounds},
    )
    return 0


TARGET_NAMES = ("never", "always", "ceiling", "redis", "redis-always")


def named_target(name: str) -> Target:
    if name in ("never", "always"):
        return bitcask_target(name)
    if name == "ceiling":
        return CEILING
    if name in ("redis", "redis-always"):
        return redis_target(name == "redis-always")
    raise SystemExit(f"--only: unknown server {name!r}; one of {', '.join(TARGET_NAMES)}")


def only_rows(
    names: list[str],
    depths: list[int],
    op: str,
    conns: int,
    rounds: int,
    keys: list[bytes],
    values: list[bytes],
) -> int:
    """`--only`: the main table's rows for a few servers, printed, nothing written."""
    targets = [named_target(n) for n in names]
    ops = ("put", "get") if op == "both" else (op,)
    samples: dict[tuple[str, int, str], list[Run]] = {}
    per_group: dict[tuple[str, int, str], list[float]] = {}  # puts per group commit
    with (
        tempfile.TemporaryDirectory(prefix="bench-server-") as scratch,
        contextlib.ExitStack() as stack,
    ):
        running = start_all(stack, targets, scratch, keys, values)
        for _ in range(rounds):
            for depth in depths:
                for r in running:
                    for o in ops:
                        if o == "get" and "put" not in ops:
                            run_phase(r, "put", conns, depth)  # something to read
                        key = (r.target.name, depth, o)
                        # group commits: bitcask only (the ceiling answers stats with nil)
                        counted = not r.target.resp and r.target is not CEILING
                        before = _groups(r.port) if counted and o == "put" else None
                        run = run_phase(r, o, conns, depth)
                        samples.setdefault(key, []).append(run)
                        if before is not None:
                            groups = _groups(r.port) - before
                            per_group.setdefault(key, []).append(run.ops / max(1, groups))
    for key, runs in samples.items():
        name, depth, o = key
        s = summarize(runs)
        group = (
            f"  puts per group {statistics.median(per_group[key]):.1f}" if key in per_group else ""
        )
        print(
            f"{name:28} depth {depth:2} {o}: {s.rate:9.0f} ops/s  "
            f"cpu {s.cpu:6.2f} µs/op  p50 {s.p50:.2f} ms  errors {s.errors}{group}"
        )
    return 0


def _ms(v: Any) -> str:
    return "-" if not isinstance(v, int | float) else f"{v:.2f}"


def ratio_table(results: dict[tuple[str, int, str], Summary], redis: bool) -> Table:
    """Issue 9's targets, each from the medians of the main table (one run)."""
    t = Table(
        "Targets of issue 9 (ratios of the medians above)",
        [
            Column("what", "ratio"),
            Column("target", "target"),
            Column("got", "got", fmt_ratio),
            Column("ok", "met"),
        ],
    )
    never, always, ceiling = "bitcask --sync never", "bitcask --sync always", CEILING.name
    ralways = "redis appendfsync always"
    for depth, most in ((16, 1.5), (1, 1.25)):
        for op in ("put", "get"):
            ours, theirs = results[(never, depth, op)].cpu, results[(ceiling, depth, op)].cpu
            got = ours / theirs if theirs else float("nan")
            t.add(
                what=f"server CPU µs/op, --sync never / ceiling, depth {depth}, {op}",
                target=f"≤ {most:.2f}x", got=got,
                ok="-" if got != got else "yes" if got <= most else "NO",
            )  # fmt: skip
    if redis:
        for depth, least in ((16, 0.75), (1, 1.0)):
            got = results[(always, depth, "put")].rate / results[(ralways, depth, "put")].rate
            t.add(
                what=f"put ops/s, --sync always / {ralways}, depth {depth}",
                target=f"≥ {least:.2f}x", got=got, ok="yes" if got >= least else "NO",
            )  # fmt: skip
    t.notes.append(
        "CPU per op is the server's utime+stime over the run (all threads), so it moves "
        "less with the load of a shared machine than throughput does."
    )
    return t


PROFILE_OPS = 100_000


def profile_summary(scratch: str, keys: list[bytes], values: list[bytes], quick: bool) -> Table:
    """Where a depth-16 put's server time goes: one run under cProfile, by part.

    The server runs as `python -m cProfile -o FILE -m server ...` and writes its
    profile when SIGTERM stops it. A second server, started and stopped without
    load, is profiled the same way and its self time is subtracted function by
    function, so start-up and shutdown do not count. What is left is grouped by
    part of the server (a file of server/ or protocol/, the engine, the loop).
    """
    n = min(len(keys), 5_000 if quick else PROFILE_OPS)
    target = bitcask_target("never")
    frames = [target.put_cmd(k, v) for k, v in zip(keys[:n], values[:n], strict=True)]
    loaded = _profiled_run(scratch, "loaded", target, frames)
    idle = _profiled_run(scratch, "idle", target, [])
    t = Table(
        f"Where a depth-16 put goes: bitcask --sync never, {n:,} puts, 50 connections, "
        "cProfile self time by part",
        [Column("part", "part"), Column("share", "share of the server's profiled time")],
    )
    if loaded is None or idle is None:
        t.notes.append("a profiled server wrote no profile (it did not stop cleanly)")
        return t
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__))) + os.sep
    parts: dict[str, float] = {}
    for key, tottime in loaded.items():
        spent = tottime - idle.get(key, 0.0)
        if spent > 0:
            part = _profile_part(key[0].removeprefix(root), key[2])
            parts[part] = parts.get(part, 0.0) + spent
    total = sum(parts.values()) or 1.0
    rest = "the rest of Python"
    for part, tt in list(parts.items()):
        if tt < total / 200 and part != rest:  # under 0.5%
            parts[rest] = parts.get(rest, 0.0) + parts.pop(part)
    for part, tt in sorted(parts.items(), key=lambda kv: -kv[1]):
        t.add(part=part, share=f"{100 * tt / total:.1f}%")
    t.notes.append(
        "cProfile slows Python calls several times over, so Python code weighs more here "
        "than it does unprofiled; C calls count in the Python function that makes them "
        "when they are methods of extension types (uvloop's transport.write)."
    )
    return t


def _profiled_run(
    scratch: str, label: str, target: Target, frames: list[bytes]
) -> dict[tuple[str, int, str], float] | None:
    """Self time per function of one server run under cProfile (None: no profile)."""
    import pstats

    out = os.path.join(scratch, f"profile-{label}.prof")
    port = free_port()
    argv = target.argv(port, scratch)
    argv = [argv[0], "-m", "cProfile", "-o", out, *argv[1:]]
    with process(argv, port) as proc:
        if frames:
            drive(proc.pid, port, split(frames, 50), 16, False)
    if not os.path.exists(out):
        return None
    prof: Any = pstats.Stats(out)
    return {key: row[2] for key, row in prof.stats.items()}


def _profile_part(file: str, name: str) -> str:
    """The part of the server a profiled function belongs to (profile_summary)."""
    if file == "server/binary.py" and name == "_write":
        return "socket writes (transport.write)"
    if file.endswith("asyncio/runners.py") and name == "run":
        return "event loop: socket reads, epoll, callbacks (uvloop)"
    if file.startswith("bitcask/"):
        return "engine (bitcask/)"
    if file.startswith(("server/", "protocol/")):
        return file
    if file == "~" and ("msgpack" in name or "Packer" in name or "unpack" in name):
        return "msgpack (C)"
    if file == "~" and "compile" not in name and "marshal" not in name:
        return "other C built-ins (len, append, struct, perf_counter, ...)"
    return "the rest of Python"


def writer_modes(
    scratch: str, keys: list[bytes], values: list[bytes], conns: int, rounds: int, quick: bool
) -> Table:
    """How write_batch runs: dedicated thread vs default executor vs aiofiles vs on the loop."""
    n = 2_000 if quick else 50_000
    t = Table(
        f"Writer modes: {n:,} puts, {conns} connections, depth 1, median of {rounds} interleaved rounds",
        [
            Column("sync", "sync"),
            Column("mode", "writer"),
            Column("rate", "put ops/s", fmt_rate),
            Column("p99", "p99 ms", _ms),
            Column("cpu", "server CPU µs/op", fmt_num),
        ],
    )
    targets = [
        bitcask_target(sync, mode)
        for sync, modes in (
            ("always", ("thread", "executor", "aiofiles", "loop")),
            ("never", ("loop", "thread", "executor")),
        )
        for mode in modes
    ]
    samples: dict[str, list[Run]] = {}
    with contextlib.ExitStack() as stack:
        running = start_all(stack, targets, scratch, keys[:n], values[:n])
        for _ in range(rounds):
            for r in running:
                samples.setdefault(r.target.name, []).append(run_phase(r, "put", conns, 1))
    for target in targets:
        s = summarize(samples[target.name])
        sync, mode = target.name.split()[2], target.name.split("(")[1].rstrip(")")
        t.add(sync=sync, mode=mode, rate=s.rate, p99=s.p99, cpu=s.cpu)
    t.notes.append(
        "'auto' (the default) picks thread under always/interval (the fsync must not block "
        "the loop; 'loop' is listed for comparison only) and loop under never."
    )
    return t


SWEEP_CONNS = (1, 4, 16, 50, 100)


def connection_sweep(running: list[Running], quick: bool) -> Table:
    """ops/s against the number of connections (depth 1 each), for every server."""
    t = Table(
        "Throughput by connections: depth 1, ops/s per server",
        [
            Column("server", "server"),
            Column("op", "op"),
            *(Column(f"c{n}", f"{n} conn", fmt_rate) for n in SWEEP_CONNS),
        ],
    )
    ops = 2_000 if quick else 20_000
    for r in running:
        for op in ("put", "get"):
            frames = (r.puts if op == "put" else r.gets)[:ops]
            row: dict[str, Any] = {"server": r.target.name, "op": op}
            for n in SWEEP_CONNS:
                print(f"-- sweep: {r.target.name}, {op}, {n} connections", flush=True)
                run = drive(r.proc.pid, r.port, split(frames, n), 1, r.target.resp)
                row[f"c{n}"] = run.rate
            t.add(**row)
    t.notes.append(
        f"{ops:,} ops per point; one round (the main table above has the medians at 50)."
    )
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
