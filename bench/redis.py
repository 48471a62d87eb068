"""Redis's own load generator against bitcask-server and Redis, and RESP's CPU vs binary's.

`python -m bench.redis [--quick] [--requests N] [--ops N] [--rounds N] [--out DIR]`

Three tables from one run, every server in its own child process:

- **redis-benchmark**: `redis-benchmark -t set`, `-t get`, `-t incr` (one test per
  invocation, so that each gets its own CPU reading), 50 connections, `-P 1` and
  `-P 16`, 100-byte values, random keys over 10,000 (`-r`), against bitcask-server
  `--sync never` and redis-server without persistence, side by side.
- **durable writes**: `-t set` at `-P 1` and `-P 16` against bitcask-server
  `--sync always` and redis-server `appendonly yes`, `appendfsync always`.
- **RESP vs binary**: bench/server.py's load generator sends the same operations
  (put/SET, get/GET, incr/INCR, 100-byte values) to one bitcask-server as binary
  frames and as RESP multibulks. A second, identical server runs with hiredis hidden
  (`sys.modules["hiredis"] = None` before the server is imported), so its RESP reader
  is the pure-Python one. Issue 10's target: RESP CPU per op within 1.3x of binary.

Server CPU µs/op = the server's CPU time across one run (every thread, from /proc:
schedstat nanoseconds, or stat ticks where the kernel keeps no schedstat) divided by
the requests of that run. On a shared machine it moves far less than ops/s do. Every
cell is the median of `--rounds` rounds that interleave the servers, so a busy moment
hits all of them alike. Nothing here asserts speed.

Needs redis-server and redis-benchmark (Debian: redis-server, redis-tools); without
them the first two tables say so and only the dialect table is measured. Results:
bench/results/redis.json and .md.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import functools
import importlib.util
import statistics
import sys
import tempfile
from collections.abc import Callable, Iterator
from typing import Any

from bench._util import (
    Column,
    Table,
    emit,
    fmt_num,
    fmt_rate,
    fmt_ratio,
    free_port,
    process,
    redis_benchmark,
    server_cpu,
    which,
)
from bench.server import (
    Target,
    bitcask_target,
    drive,
    keys_and_values,
    mp_frame,
    redis_target,
    resp_frame,
    split,
)

TESTS = ("set", "get", "incr")
DEPTHS = (1, 16)
CONNS = 50
VALUE_SIZE = 100
KEYSPACE = 10_000  # -r: small enough that the GETs after a SET run find their keys
TARGET_RATIO = 1.3  # issue 10: RESP server CPU per op within 1.3x of the binary dialect's

# Makes `import hiredis` raise ImportError in the process that runs it first.
HIDE_HIREDIS = "import sys; sys.modules['hiredis'] = None; "
# Runs the server exactly as `python -m server` does, with hiredis hidden.
_NO_HIREDIS = HIDE_HIREDIS + "from server.cli import main; raise SystemExit(main(sys.argv[1:]))"


def without_hiredis(target: Target) -> Target:
    """The same bitcask-server, its RESP reader forced onto the pure-Python parser."""

    def argv(port: int, scratch: str) -> list[str]:
        full = target.argv(port, scratch)
        assert full[1:3] == ["-m", "server"], full
        return [full[0], "-c", _NO_HIREDIS, *full[3:]]

    return dataclasses.replace(target, name=f"{target.name}, pure-Python RESP", argv=argv)


@contextlib.contextmanager
def started(targets: list[Target], scratch: str) -> Iterator[list[tuple[Target, int, int]]]:
    """Every target running: (target, pid, port) each; all stopped on exit."""
    with contextlib.ExitStack() as stack:
        out = []
        for target in targets:
            port = free_port()
            proc = stack.enter_context(process(target.argv(port, scratch), port))
            out.append((target, proc.pid, port))
        yield out


def _cpu_per_op(pid: int, requests: int, run: Callable[[], Any]) -> tuple[Any, float]:
    """`run()`'s result and the server's CPU µs per request while it ran."""
    before = server_cpu(pid)
    result = run()
    return result, (server_cpu(pid) - before) / requests * 1e6


# --------------------------------------------------------------------------- redis-benchmark


def benchmark_table(
    title: str,
    targets: list[Target],
    tests: tuple[str, ...],
    requests: int,
    rounds: int,
    scratch: str,
) -> Table:
    """redis-benchmark against every target: rows per (test, depth, server), medians."""
    table = Table(
        title,
        [
            Column("test", "test", str), Column("depth", "-P", fmt_num),
            Column("server", "server", str), Column("rps", "ops/s", fmt_rate),
            Column("p50", "p50 ms", _ms), Column("p99", "p99 ms", _ms),
            Column("cpu", "server CPU µs/op", _us), Column("vs", "ops/s vs Redis", fmt_ratio),
            Column("cpu_vs", "CPU/op vs Redis", fmt_ratio),
        ],
    )  # fmt: skip
    samples: dict[tuple[str, int, str], list[dict[str, float]]] = {}
    with started(targets, scratch) as running:
        for round_no in range(rounds):
            for depth in DEPTHS:
                for test in tests:
                    for target, pid, port in running:
                        print(
                            f"-- round {round_no + 1}: {test} -P {depth} {target.name}", flush=True
                        )
                        one = functools.partial(
                            redis_benchmark, port, test, requests, conns=CONNS,
                            pipeline=depth, size=VALUE_SIZE, keyspace=KEYSPACE,
                        )  # fmt: skip
                        row, cpu = _cpu_per_op(pid, requests, one)
                        row["cpu"] = cpu
                        samples.setdefault((test, depth, target.name), []).append(row)
    redis_name = targets[-1].name
    for test in tests:
        for depth in DEPTHS:
            med = {
                t.name: {
                    k: statistics.median(r[k] for r in samples[(test, depth, t.name)])
                    for k in ("rps", "p50", "p99", "cpu")
                }
                for t in targets
            }
            for t in targets:
                m = med[t.name]
                theirs = med[redis_name]
                vs = cpu_vs = None
                if t.name != redis_name:
                    vs = m["rps"] / theirs["rps"]
                    cpu_vs = m["cpu"] / theirs["cpu"] if theirs["cpu"] > 0 else None
                table.add(test=test.upper(), depth=depth, server=t.name, vs=vs, cpu_vs=cpu_vs, **m)
    table.notes.append(
        f"{requests:,} requests per test, {CONNS} connections, {VALUE_SIZE} B values, "
        f"random keys over {KEYSPACE:,}; median of {rounds} interleaved round(s)."
    )
    return table


def _ms(v: Any) -> str:
    return "-" if not isinstance(v, int | float) else f"{v:.2f}"


def _us(v: Any) -> str:
    if not isinstance(v, int | float) or v != v:
        return "-"
    return f"{v:.2f}" if v < 10 else f"{v:.1f}"


# --------------------------------------------------------------------------- dialects


def dialect_table(ops: int, rounds: int, scratch: str) -> Table:
    """Server CPU per op: binary frames vs RESP (hiredis, pure Python), same ops."""
    fast = bitcask_target("never")
    targets = [fast, without_hiredis(fast)]
    keys, values = keys_and_values(ops, VALUE_SIZE)
    counters = [b"counter:%d" % (i % 1000) for i in range(ops)]
    frames: dict[tuple[str, str], list[bytes]] = {
        ("binary", "set"): [mp_frame("put", [k, v]) for k, v in zip(keys, values, strict=True)],
        ("binary", "get"): [mp_frame("get", [k]) for k in keys],
        ("binary", "incr"): [mp_frame("incr", [k]) for k in counters],
        ("resp", "set"): [resp_frame(b"SET", k, v) for k, v in zip(keys, values, strict=True)],
        ("resp", "get"): [resp_frame(b"GET", k) for k in keys],
        ("resp", "incr"): [resp_frame(b"INCR", k) for k in counters],
    }
    # (label, server index, dialect): binary runs on the hiredis server only; the binary
    # path never touches the RESP reader, so it is the baseline of both servers.
    lanes = (("binary", 0, "binary"), ("hiredis", 0, "resp"), ("pure", 1, "resp"))
    cpu: dict[tuple[str, int, str], list[float]] = {}
    rate: dict[tuple[str, int, str], list[float]] = {}
    errors = 0
    with started(targets, scratch) as running:
        for round_no in range(rounds):
            for depth in DEPTHS:
                print(f"-- round {round_no + 1}: dialects, depth {depth}", flush=True)
                for test in TESTS:
                    for label, index, dialect in lanes:
                        _, pid, port = running[index]
                        per_conn = split(frames[(dialect, test)], CONNS)
                        one = functools.partial(
                            drive, pid, port, per_conn, depth, dialect == "resp"
                        )
                        run, us = _cpu_per_op(pid, ops, one)
                        errors += run.errors
                        cpu.setdefault((test, depth, label), []).append(us)
                        rate.setdefault((test, depth, label), []).append(run.rate)
    table = Table(
        "RESP vs binary on one bitcask-server: server CPU µs/op, same operations",
        [
            Column("test", "op", str), Column("depth", "pipeline", fmt_num),
            Column("binary", "binary", _us), Column("hiredis", "RESP (hiredis)", _us),
            Column("pure", "RESP (pure Python)", _us),
            Column("r_hiredis", "hiredis / binary", fmt_ratio),
            Column("r_pure", "pure / binary", fmt_ratio),
            Column("met", f"≤ {TARGET_RATIO}x", str),
            Column("rate_binary", "binary ops/s", fmt_rate),
            Column("rate_hiredis", "RESP ops/s", fmt_rate),
        ],
    )  # fmt: skip
    for test in TESTS:
        for depth in DEPTHS:
            m = {label: statistics.median(cpu[(test, depth, label)]) for label, _, _ in lanes}
            r_hiredis = m["hiredis"] / m["binary"] if m["binary"] else float("nan")
            table.add(
                test=f"{'put' if test == 'set' else test} / {test.upper()}", depth=depth,
                binary=m["binary"], hiredis=m["hiredis"], pure=m["pure"], r_hiredis=r_hiredis,
                r_pure=m["pure"] / m["binary"] if m["binary"] else None,
                met="yes" if r_hiredis <= TARGET_RATIO else "NO",
                rate_binary=statistics.median(rate[(test, depth, "binary")]),
                rate_hiredis=statistics.median(rate[(test, depth, "hiredis")]),
            )  # fmt: skip
    table.notes.append(
        f"{ops:,} ops per run, {CONNS} connections, {VALUE_SIZE} B values, bitcask-server "
        f"--sync never; the load generator of bench/server.py; median of {rounds} "
        "interleaved round(s). 'met' compares RESP with hiredis (the default when hiredis "
        "is installed) against binary."
    )
    if importlib.util.find_spec("hiredis") is None:
        table.notes.append(
            "hiredis is not installed here: the 'RESP (hiredis)' column ran the pure-Python "
            "reader too (pip install 'bitcask[bench]' or 'bitcask[fast]')."
        )
    if errors:
        table.notes.append(f"{errors} error replies during these runs.")
    return table


# --------------------------------------------------------------------------- main


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m bench.redis", description=__doc__.splitlines()[0]
    )
    parser.add_argument("--quick", action="store_true", help="small sizes; a smoke run")
    parser.add_argument("--requests", type=int, help="redis-benchmark requests per test")
    parser.add_argument("--ops", type=int, help="operations per dialect run")
    parser.add_argument("--rounds", type=int, help="interleaved rounds; medians are reported")
    parser.add_argument("--out", help="results directory (default bench/results)")
    args = parser.parse_args(argv)
    requests = args.requests or (2_000 if args.quick else 50_000)
    # 100,000, not 30,000: a run of 30,000 pipelined GETs lasts about 0.15 s, and one
    # full run put RESP/binary at 1.35x for depth-16 GET where 100,000 ops gave 0.99x.
    ops = args.ops or (2_000 if args.quick else 100_000)
    rounds = args.rounds or (1 if args.quick else 3)
    missing = [b for b in ("redis-server", "redis-benchmark") if which(b) is None]
    tables: list[Table] = []
    with tempfile.TemporaryDirectory(prefix="bench-redis-") as scratch:
        if missing:
            for title in ("redis-benchmark", "durable writes"):
                t = Table(title, [Column("test", "test", str)])
                t.notes.append(
                    f"not run: {', '.join(missing)} not installed "
                    "(Debian packages redis-server, redis-tools)"
                )
                tables.append(t)
        else:
            tables.append(
                benchmark_table(
                    "redis-benchmark: bitcask-server --sync never vs redis-server (no persistence)",
                    [bitcask_target("never"), redis_target(False)],
                    TESTS,
                    requests,
                    rounds,
                    scratch,
                )
            )
            tables.append(
                benchmark_table(
                    "durable writes: bitcask-server --sync always vs redis-server "
                    "appendfsync always",
                    [bitcask_target("always"), redis_target(True)],
                    ("set",),
                    max(1, requests // 2),
                    rounds,
                    scratch,
                )
            )
        tables.append(dialect_table(ops, rounds, scratch))
    emit(
        "redis",
        tables,
        meta={"quick": args.quick, "requests": requests, "ops": ops, "rounds": rounds,
              "conns": CONNS, "value_size": VALUE_SIZE, "python": sys.version.split()[0]},
        out_dir=args.out,
    )  # fmt: skip
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
