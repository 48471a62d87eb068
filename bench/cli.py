"""The command line beside redis-cli: start-up time and piped-mode throughput, one run.

`python -m bench.cli [--quick] [--startup-runs N] [--puts N] [--runs N]`

Issue 12 (items 13 and 18) sets two targets that are measured here, never
asserted in a test: `bitcask ping` in under 0.15 s, and 10,000 puts piped into
`bitcask-shell` within 2x of `redis-cli`'s wall time for the same lines.

Strategy: every number is the wall time of a whole child process (fork, exec,
interpreter start-up, imports, connect, work, exit) as a user at a shell sees it,
taken by perf_counter around `subprocess.run`, the same way for every program, and
reported as a median. Runs interleave (run 1 of every program, then run 2, ...) so
that a noisy moment on a shared machine spreads over all of them instead of
skewing one ratio. Each program gets one untimed warm-up run (page cache).

- **start-up**: `bitcask ping` and `bitcask get k` (a stored key) against a
  running bitcask-server, beside `python -c pass` (this interpreter's floor: no
  program can start faster) and `redis-cli ping` / `redis-cli get k` against a
  redis-server, each bitcask row divided by the redis-cli row of the same command;
  median of 15. Also the import time of what a command runs (`repl._run`, which
  `repl.cli` loads once the arguments name a command; `--help` loads less) from
  `python -X importtime` (the cumulative column of its top-level lines), median of 5.
- **piped mode**: N lines `put key:I value` piped into `bitcask-shell` against
  bitcask-server `--sync interval` and `--sync always`, beside N lines
  `SET key:I value` piped into `redis-cli` against redis-server with
  `appendonly yes` and `appendfsync everysec` / `always`; median of 3, each run
  on a fresh server and an empty store. A run counts only if every line answered
  OK and the server holds N keys afterwards (`bitcask stats`, `redis-cli dbsize`),
  so a failure cannot pass for speed.

Children get a scratch HOME and no BITCASK_* variables, so no user config or
history is read. Every server listens on 127.0.0.1, on a port the kernel chose.
Without redis-server / redis-cli (Debian: redis-server, redis-tools) the Redis
rows are left out with a note. Results: bench/results/cli.json and .md.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path

from bench._util import HOST, Column, Table, emit, fmt_ms, fmt_rate, fmt_ratio, free_port, median
from bench._util import process as server_process

SBIN = "/usr/local/sbin:/usr/sbin:/sbin"
TIMEOUT = 300.0  # seconds for any one child; a hung child fails the run
IMPORT_MODULE = "repl._run"  # a command's run path: repl.cli is a stdlib-only entry point
STARTUP_TARGET_S = 0.15  # issue 12, item 13
KEY, VALUE = "bench:startup", "v"  # what `bitcask get` / `redis-cli get` read
PIPED_TARGET_X = 2.0  # issue 12, item 18


def _which(binary: str) -> str | None:
    return shutil.which(binary) or shutil.which(binary, path=SBIN)


def _script(name: str) -> str:
    """A console script of this project: beside this interpreter, else on PATH."""
    beside = Path(sys.executable).parent / name
    if beside.exists():
        return str(beside)
    found = shutil.which(name)
    if found is None:
        raise SystemExit(f"{name} not found beside {sys.executable} nor on PATH (pip install -e .)")
    return found


def child_env(home: str) -> dict[str, str]:
    """This environment without BITCASK_* and with HOME/XDG dirs under `home`."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("BITCASK_", "XDG_"))}
    env.update(
        HOME=home,
        XDG_CONFIG_HOME=os.path.join(home, ".config"),
        XDG_DATA_HOME=os.path.join(home, ".local", "share"),
    )
    return env


# --------------------------------------------------------------------------- servers


@contextlib.contextmanager
def bitcask_server(sync: str) -> Iterator[int]:
    """A bitcask-server on a fresh data directory; yields its binary port."""
    with tempfile.TemporaryDirectory(prefix="bench-cli-") as data:
        port, http_port = free_port(), free_port()
        argv = [
            sys.executable,
            "-m",
            "server",
            "--data",
            data,
            "--host",
            HOST,
            "--port",
            str(port),
            "--http-port",
            str(http_port),
            "--sync",
            sync,
            "--drain-seconds",
            "0",
            "--log-level",
            "warning",
        ]
        with server_process(argv, port):
            yield port


@contextlib.contextmanager
def redis_server(appendfsync: str | None) -> Iterator[int]:
    """A redis-server with no RDB; with the AOF and this fsync policy unless None."""
    binary = _which("redis-server")
    assert binary is not None
    with tempfile.TemporaryDirectory(prefix="bench-cli-redis-") as data:
        port = free_port()
        aof = ["--appendonly", "no"]
        if appendfsync is not None:
            aof = ["--appendonly", "yes", "--appendfsync", appendfsync]
        argv = [binary, "--port", str(port), "--bind", HOST, "--dir", data, "--save", "", *aof]
        with server_process(argv, port):
            yield port


# --------------------------------------------------------------------------- timing


def run_timed(argv: list[str], env: dict[str, str], stdin: bytes = b"") -> tuple[float, bytes]:
    """Wall time of one child from spawn to exit, and its stdout; fails on a bad exit."""
    started = time.perf_counter()
    proc = subprocess.run(argv, input=stdin, capture_output=True, env=env, timeout=TIMEOUT)
    elapsed = time.perf_counter() - started
    if proc.returncode != 0 or proc.stderr.strip():
        raise RuntimeError(
            f"{' '.join(argv[:3])} ...: exit {proc.returncode}: "
            f"{proc.stderr.decode(errors='replace')[-500:]}"
        )
    return elapsed, proc.stdout


def importtime_ms(stderr: str, module: str = IMPORT_MODULE) -> float:
    """Milliseconds `python -X importtime` spent importing `module`'s package.

    The sum of the cumulative column over the top-level lines (no indentation in
    the name column) that belong to `module`'s top-level package: everything it
    imported is nested below them, and what the interpreter imported at start-up
    (site, encodings, ...) is not.

    >>> importtime_ms("import time: 5 | 7 | site\\nimport time: 3 | 90 |   repl\\n"
    ...               "import time: 2 | 120 | repl.cli\\n")
    0.12
    """
    root = module.split(".")[0]
    total_us = 0
    for line in stderr.splitlines():
        if not line.startswith("import time:"):
            continue
        parts = line.split("|")
        if len(parts) != 3 or not parts[1].strip().isdigit():
            continue  # the header line
        name = parts[2][1:]  # one space follows the bar; more is nesting
        if name.startswith(" "):
            continue
        if name == root or name.startswith(root + "."):
            total_us += int(parts[1])
    return total_us / 1e3


@dataclass
class Series:
    """One program's timed runs."""

    name: str
    run: Callable[[], float]  # one run; returns seconds
    versus: str | None = None  # the redis-cli series of the same command
    samples: list[float] = field(default_factory=list)


def interleave(series: list[Series], runs: int) -> None:
    """One warm-up of each, then `runs` rounds of one run each."""
    for s in series:
        s.run()
    for _ in range(runs):
        for s in series:
            s.samples.append(s.run())


# --------------------------------------------------------------------------- start-up


def startup_table(runs: int, import_runs: int, home: str) -> Table:
    env = child_env(home)
    table = Table(
        f"start-up: wall time of one command, median of {runs} runs",
        [
            Column("program", "program", str),
            Column("median_ms", "median ms", fmt_ms),
            Column("min_ms", "min ms", fmt_ms),
            Column("x_floor", "x python -c pass", fmt_ratio),
            Column("x_redis", "x redis-cli (same command)", fmt_ratio),
        ],
    )
    bitcask = _script("bitcask")
    redis_cli = _which("redis-cli")
    have_redis = redis_cli is not None and _which("redis-server") is not None
    with contextlib.ExitStack() as stack:
        port = stack.enter_context(bitcask_server("never"))

        def answers(argv: list[str], expected: bytes) -> Callable[[], float]:
            def once() -> float:
                elapsed, out = run_timed(argv, env)
                if out.strip() != expected:
                    raise RuntimeError(f"{argv[0]} {argv[-1]} answered {out[:100]!r}")
                return elapsed

            return once

        cli = [bitcask, "--host", HOST, "--port", str(port)]
        run_timed([*cli, "put", KEY, VALUE], env)
        series = [
            Series(
                "python -c pass (interpreter floor)",
                lambda: run_timed([sys.executable, "-c", "pass"], env)[0],
            ),
            Series("bitcask ping", answers([*cli, "ping"], b"PONG"), "redis-cli ping"),
            Series("bitcask get", answers([*cli, "get", KEY], VALUE.encode()), "redis-cli get"),
        ]
        if have_redis:
            assert redis_cli is not None
            rport = stack.enter_context(redis_server(None))
            rcli = [redis_cli, "-h", HOST, "-p", str(rport)]
            run_timed([*rcli, "set", KEY, VALUE], env)
            for name, argv, expected in (
                ("redis-cli ping", [*rcli, "ping"], b"PONG"),
                ("redis-cli get", [*rcli, "get", KEY], VALUE.encode()),
            ):
                series.append(Series(name, answers(argv, expected), name))
        interleave(series, runs)
    floor = median(series[0].samples)
    medians = {s.name: median(s.samples) for s in series}
    for s in series:
        m = medians[s.name]
        versus = medians.get(s.versus) if s.versus else None  # None: redis not run
        table.add(
            program=s.name,
            median_ms=m * 1e3,
            min_ms=min(s.samples) * 1e3,
            x_floor=m / floor,
            x_redis=m / versus if versus else None,
            raw_s=s.samples,
        )
    imports: list[float] = []
    for _ in range(import_runs):
        proc = subprocess.run(
            [sys.executable, "-X", "importtime", "-c", f"import {IMPORT_MODULE}"],
            capture_output=True,
            text=True,
            env=env,
            timeout=TIMEOUT,
            check=True,
        )
        imports.append(importtime_ms(proc.stderr))
    table.add(
        program=f"import {IMPORT_MODULE} (-X importtime, cumulative)",
        median_ms=median(imports),
        min_ms=min(imports),
        raw_ms=imports,
    )
    table.notes.append(
        f"import time: median of {import_runs} runs of `python -X importtime -c 'import "
        f"{IMPORT_MODULE}'` (importtime's own overhead included); the interpreter's start-up "
        "imports are not counted"
    )
    if not have_redis:
        table.notes.append("redis-cli row not run: redis-server / redis-cli not installed")
    return table


# --------------------------------------------------------------------------- piped mode


def piped_lines(verb: bytes, n: int) -> bytes:
    return b"".join(b"%s key:%d value\n" % (verb, i) for i in range(n))


@dataclass(frozen=True)
class Pair:
    """A bitcask sync policy and the Redis AOF policy it is compared with."""

    sync: str
    appendfsync: str


PAIRS = (Pair("interval", "everysec"), Pair("always", "always"))


def _count_ok(out: bytes, n: int, who: str) -> None:
    replies = out.splitlines()
    if len(replies) != n or any(r != b"OK" for r in replies):
        bad = next((r for r in replies if r != b"OK"), b"")
        raise RuntimeError(f"{who}: {len(replies)} replies for {n} lines; e.g. {bad[:100]!r}")


def bitcask_piped(sync: str, lines: bytes, n: int, env: dict[str, str]) -> float:
    """One timed run of `bitcask-shell < lines` on a fresh server; checks the keys landed."""
    with bitcask_server(sync) as port:
        where = ["--host", HOST, "--port", str(port)]
        elapsed, out = run_timed([_script("bitcask-shell"), *where], env, lines)
        _count_ok(out, n, "bitcask-shell")
        _, stats = run_timed([_script("bitcask"), *where, "stats"], env)
        keys = json.loads(stats)["keys"]
        if keys != n:
            raise RuntimeError(f"bitcask-server holds {keys} keys after {n} puts")
    return elapsed


def redis_piped(appendfsync: str, lines: bytes, n: int, env: dict[str, str]) -> float:
    """One timed run of `redis-cli < lines` on a fresh server; checks the keys landed."""
    cli = _which("redis-cli")
    assert cli is not None
    with redis_server(appendfsync) as port:
        where = ["-h", HOST, "-p", str(port)]
        elapsed, out = run_timed([cli, *where], env, lines)
        _count_ok(out, n, "redis-cli")
        _, size = run_timed([cli, *where, "dbsize"], env)
        if int(size) != n:
            raise RuntimeError(f"redis-server holds {int(size)} keys after {n} SETs")
    return elapsed


def piped_table(n: int, runs: int, home: str) -> Table:
    env = child_env(home)
    table = Table(
        f"piped mode: {n:,} puts, one per line, into one client process, median of {runs} runs",
        [
            Column("pair", "durability", str),
            Column("bitcask_s", "bitcask-shell s", lambda v: f"{v:.2f}"),
            Column("bitcask_rate", "puts/s", fmt_rate),
            Column("redis_s", "redis-cli s", lambda v: f"{v:.2f}"),
            Column("redis_rate", "SETs/s", fmt_rate),
            Column("ratio", "bitcask / redis", fmt_ratio),
        ],
    )
    have_redis = _which("redis-cli") is not None and _which("redis-server") is not None
    put_lines, set_lines = piped_lines(b"put", n), piped_lines(b"SET", n)
    series: list[tuple[Pair, Series, Series | None]] = []
    for pair in PAIRS:
        b = Series(
            f"bitcask --sync {pair.sync}", partial(bitcask_piped, pair.sync, put_lines, n, env)
        )
        r = None
        if have_redis:
            r = Series(
                f"redis appendfsync {pair.appendfsync}",
                partial(redis_piped, pair.appendfsync, set_lines, n, env),
            )
        series.append((pair, b, r))
    flat = [s for _, b, r in series for s in (b, r) if s is not None]
    for _ in range(runs):  # interleaved; a fresh server per run, so no warm-up run
        for s in flat:
            s.samples.append(s.run())
    for pair, b, r in series:
        bs = median(b.samples)
        rs = median(r.samples) if r is not None else None
        table.add(
            pair=f"bitcask --sync {pair.sync} / redis appendfsync {pair.appendfsync}",
            bitcask_s=bs,
            bitcask_rate=n / bs,
            redis_s=rs,
            redis_rate=n / rs if rs else None,
            ratio=bs / rs if rs else None,
            raw_bitcask_s=b.samples,
            raw_redis_s=r.samples if r is not None else None,
        )
    table.notes.append(
        "bitcask-shell reads `put key:I value` lines (repl/_piped.py: pipelined, 1,024 in "
        "flight); redis-cli reads `SET key:I value` lines (one round trip per line); both "
        "servers with an append-only log; every run on a fresh server, every line checked "
        "OK and the key count checked afterwards"
    )
    if not have_redis:
        table.notes.append("redis-cli not run: redis-server / redis-cli not installed")
    return table


# --------------------------------------------------------------------------- targets


def targets(startup: Table, piped: Table) -> Table:
    """Issue 12's two speed targets, each with what was measured and whether it was met."""
    t = Table(
        "targets (issue 12)",
        [
            Column("target", "target", str),
            Column("goal", "goal", str),
            Column("measured", "measured", str),
            Column("verdict", "", str),
        ],
    )
    ping = next(r for r in startup.rows if r["program"] == "bitcask ping")
    secs = ping["median_ms"] / 1e3
    t.add(
        target="`bitcask ping`, wall time (item 13)",
        goal=f"< {STARTUP_TARGET_S:.2f} s",
        measured=f"{secs:.3f} s",
        verdict="met" if secs < STARTUP_TARGET_S else "MISSED",
    )
    for row in piped.rows:
        ratio = row.get("ratio")
        t.add(
            target=f"piped puts, {row['pair']} (item 18)",
            goal=f"<= {PIPED_TARGET_X:.2f}x redis-cli",
            measured="-" if ratio is None else f"{ratio:.2f}x",
            verdict="not measured"
            if ratio is None
            else ("met" if ratio <= PIPED_TARGET_X else "MISSED"),
        )
    return t


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m bench.cli", description=__doc__.splitlines()[0]
    )
    parser.add_argument("--quick", action="store_true", help="small sizes; a smoke run")
    parser.add_argument("--startup-runs", type=int, help="runs per start-up median (default 15)")
    parser.add_argument("--import-runs", type=int, help="importtime runs (default 5)")
    parser.add_argument("--puts", type=int, help="lines piped per run (default 10,000)")
    parser.add_argument("--runs", type=int, help="piped runs per median (default 3)")
    parser.add_argument("--out", help="results directory (default bench/results)")
    args = parser.parse_args(argv)
    q = args.quick
    startup_runs = args.startup_runs or (3 if q else 15)
    import_runs = args.import_runs or (2 if q else 5)
    puts = args.puts or (500 if q else 10_000)
    runs = args.runs or (1 if q else 3)
    with tempfile.TemporaryDirectory(prefix="bench-cli-home-") as home:
        startup = startup_table(startup_runs, import_runs, home)
        piped = piped_table(puts, runs, home)
    meta = {
        "quick": q,
        "startup_runs": startup_runs,
        "import_runs": import_runs,
        "puts": puts,
        "runs": runs,
    }
    emit("cli", [startup, piped, targets(startup, piped)], meta=meta, out_dir=args.out)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
