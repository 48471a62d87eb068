"""Shared helpers for every benchmark in bench/: timing, medians, tables, results.

A benchmark measures, builds one or more `Table`s, and hands them to `emit()`, which
prints them as aligned text and writes `bench/results/<name>.json` (machine-readable,
every raw number) and `bench/results/<name>.md` (a markdown fragment that
docs/benchmarks.md can paste). Numbers are never asserted anywhere: they are
reported, with the machine they were measured on.

    from bench._util import Column, Table, emit, median_time
    secs = median_time(lambda: work(), runs=3)
    t = Table("puts", [Column("store", "store"), Column("rate", "ops/s", fmt_rate)])
    t.add(store="x", rate=200_000 / secs)
    emit("mybench", [t], meta={"n": 200_000})
"""

from __future__ import annotations

import contextlib
import csv
import datetime as _dt
import io
import json
import os
import platform
import shutil
import socket
import statistics
import subprocess
import sys
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

RESULTS_DIR = Path(__file__).resolve().parent / "results"

Formatter = Callable[[Any], str]


# --------------------------------------------------------------------------- timing


def timed(fn: Callable[[], object]) -> float:
    """Run `fn` once and return the wall time in seconds (perf_counter)."""
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def median_time(
    fn: Callable[[], object],
    runs: int = 3,
    setup: Callable[[], object] | None = None,
) -> float:
    """Median wall time of `runs` calls of `fn`; `setup` (untimed) runs before each."""
    samples: list[float] = []
    for _ in range(max(1, runs)):
        if setup is not None:
            setup()
        samples.append(timed(fn))
    return statistics.median(samples)


def median(values: Iterable[float]) -> float:
    """Median of the numbers (NaN for none)."""
    vals = list(values)
    return statistics.median(vals) if vals else float("nan")


def dir_size(path: str | os.PathLike[str]) -> int:
    """Total bytes of the regular files under `path` (recursively)."""
    total = 0
    for root, _dirs, files in os.walk(path):
        for name in files:
            try:
                total += os.stat(os.path.join(root, name)).st_size
            except FileNotFoundError:
                continue
    return total


# --------------------------------------------------------------------------- processes

HOST = "127.0.0.1"  # every benchmark server listens on loopback only


def free_port() -> int:
    """A loopback port that was free a moment ago (the kernel picks it)."""
    with socket.socket() as s:
        s.bind((HOST, 0))
        return int(s.getsockname()[1])


def wait_port(port: int, proc: subprocess.Popen[bytes], timeout: float = 20.0) -> None:
    """Return once something listens on `port`; fail if `proc` exits or time runs out."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"server exited with {proc.returncode}")
        with contextlib.suppress(OSError), socket.create_connection((HOST, port), timeout=0.5):
            return
        time.sleep(0.05)
    raise TimeoutError(f"nothing listens on {port} after {timeout} s")


@contextlib.contextmanager
def process(argv: list[str], port: int) -> Iterator[subprocess.Popen[bytes]]:
    """A server child listening on `port`, terminated (then killed) on exit."""
    proc = subprocess.Popen(
        argv, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
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


# --------------------------------------------------------------------------- formats


def fmt_rate(v: Any) -> str:
    """Operations per second: 1.23M, 456k, 789."""
    if not isinstance(v, int | float) or v != v:
        return "-"
    if v >= 1e6:
        return f"{v / 1e6:.2f}M"
    if v >= 1e3:
        return f"{v / 1e3:.0f}k"
    return f"{v:.0f}"


def fmt_ms(v: Any) -> str:
    """A duration given in milliseconds."""
    if not isinstance(v, int | float) or v != v:
        return "-"
    return f"{v:.1f}" if v < 100 else f"{v:.0f}"


def fmt_ratio(v: Any) -> str:
    """A ratio such as 0.93x."""
    if not isinstance(v, int | float) or v != v:
        return "-"
    return f"{v:.2f}x"


def fmt_bytes(v: Any) -> str:
    """A byte count: 512 B, 12.3 KiB, 45.6 MiB."""
    if not isinstance(v, int | float) or v != v:
        return "-"
    for unit, size in (("GiB", 1 << 30), ("MiB", 1 << 20), ("KiB", 1 << 10)):
        if v >= size:
            return f"{v / size:.1f} {unit}"
    return f"{v:.0f} B"


def fmt_num(v: Any) -> str:
    """A plain number, one decimal when it is not an integer."""
    if v is None or (isinstance(v, float) and v != v):
        return "-"
    if isinstance(v, float):
        return f"{v:.1f}"
    return str(v)


# --------------------------------------------------------------------------- tables


@dataclass(frozen=True, slots=True)
class Column:
    """One column: the row key it shows, its header, and how to format a cell."""

    key: str
    header: str
    fmt: Formatter = fmt_num


@dataclass(slots=True)
class Table:
    """A titled table of rows (dicts keyed by `Column.key`), plus free-text notes."""

    title: str
    columns: Sequence[Column]
    rows: list[dict[str, Any]] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    def add(self, **row: Any) -> dict[str, Any]:
        """Append a row; missing cells print as "-". Returns the row for later edits."""
        self.rows.append(row)
        return row

    def cells(self) -> list[list[str]]:
        """The formatted cells, one list per row."""
        out: list[list[str]] = []
        for row in self.rows:
            line = []
            for col in self.columns:
                val = row.get(col.key)
                line.append("-" if val is None else col.fmt(val))
            out.append(line)
        return out

    def to_text(self) -> str:
        """Aligned plain text for a terminal."""
        headers = [c.header for c in self.columns]
        body = self.cells()
        widths = [max(len(h), *(len(r[i]) for r in body)) for i, h in enumerate(headers)]
        lines = [self.title, "  ".join(h.ljust(w) for h, w in zip(headers, widths, strict=True))]
        lines.append("  ".join("-" * w for w in widths))
        for r in body:
            cells = [r[0].ljust(widths[0])] + [
                c.rjust(w) for c, w in zip(r[1:], widths[1:], strict=True)
            ]
            lines.append("  ".join(cells))
        lines.extend(f"  {n}" for n in self.notes)
        return "\n".join(lines)

    def to_markdown(self) -> str:
        """A GitHub markdown table under a bold title, notes as a list after it."""
        headers = [c.header for c in self.columns]
        lines = [f"**{self.title}**", "", "| " + " | ".join(headers) + " |"]
        lines.append("|" + "|".join("---" for _ in headers) + "|")
        lines.extend("| " + " | ".join(r) + " |" for r in self.cells())
        if self.notes:
            lines.append("")
            lines.extend(f"- {n}" for n in self.notes)
        return "\n".join(lines)

    def to_json(self) -> dict[str, Any]:
        """Raw (unformatted) values, for tools and later comparison."""
        return {
            "title": self.title,
            "columns": [{"key": c.key, "header": c.header} for c in self.columns],
            "rows": [_jsonable(r) for r in self.rows],
            "notes": list(self.notes),
        }


def _jsonable(obj: Any) -> Any:
    if isinstance(obj, dict):
        return {str(k): _jsonable(v) for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        return [_jsonable(v) for v in obj]
    if isinstance(obj, float) and obj != obj:
        return None
    if obj is None or isinstance(obj, str | int | float | bool):
        return obj
    return str(obj)


def machine_info() -> dict[str, Any]:
    """Where the numbers come from: Python, OS, CPU count, time of the run (UTC)."""
    return {
        "python": sys.version.split()[0],
        "implementation": platform.python_implementation(),
        "platform": platform.platform(),
        "machine": platform.machine(),
        "cpus": os.cpu_count(),
        "utc": _dt.datetime.now(_dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
    }


def emit(
    name: str,
    tables: Sequence[Table],
    meta: dict[str, Any] | None = None,
    out_dir: str | os.PathLike[str] | None = None,
    quiet: bool = False,
) -> Path:
    """Print the tables and write `<out_dir>/<name>.json` and `<name>.md`.

    Args:
        name: the benchmark's name (file stem), e.g. "embedded".
        tables: what to report, in order.
        meta: extra facts for the JSON and the markdown header (sizes, options).
        out_dir: defaults to bench/results/.
        quiet: do not print (files are still written).

    Returns:
        The path of the JSON file.
    """
    target = Path(out_dir) if out_dir is not None else RESULTS_DIR
    target.mkdir(parents=True, exist_ok=True)
    info = {"machine": machine_info(), **(meta or {})}
    doc = {"name": name, "meta": _jsonable(info), "tables": [t.to_json() for t in tables]}
    json_path = target / f"{name}.json"
    json_path.write_text(json.dumps(doc, indent=2) + "\n", encoding="utf-8")
    m = info["machine"]
    head = f"_{name}: Python {m['python']} on {m['platform']}, {m['cpus']} CPUs, {m['utc']}._"
    md = "\n\n".join([head, *(t.to_markdown() for t in tables)]) + "\n"
    (target / f"{name}.md").write_text(md, encoding="utf-8")
    if not quiet:
        print()
        print("\n\n".join(t.to_text() for t in tables))
        print(f"\nwrote {json_path} and {json_path.with_suffix('.md')}")
    return json_path


# --------------------------------------------------------------------------- Redis tools

SBIN = "/usr/local/sbin:/usr/sbin:/sbin"  # Debian puts nutcracker here, often off a user's PATH


def which(binary: str) -> str | None:
    """The path of `binary` on PATH or in the sbin directories, else None."""
    return shutil.which(binary) or shutil.which(binary, path=SBIN)


def redis_benchmark(
    port: int,
    test: str,
    requests: int,
    *,
    conns: int = 50,
    pipeline: int = 1,
    size: int = 100,
    keyspace: int = 100_000,
) -> dict[str, float]:
    """Run `redis-benchmark -t <test>` once against 127.0.0.1:`port`; its CSV row as numbers.

    Random keys over `keyspace` (`-r`), `size`-byte values (`-d`), `conns` connections
    (`-c`), `pipeline` requests in flight per connection (`-P`). Returns the keys
    `rps`, `avg`, `p50`, `p95`, `p99`, `max` (latencies in ms).

    Raises:
        FileNotFoundError: redis-benchmark is not installed (Debian: redis-tools).
        subprocess.CalledProcessError: it failed (e.g. the server refused to connect).
    """
    binary = which("redis-benchmark")
    if binary is None:
        raise FileNotFoundError("redis-benchmark not installed (Debian package redis-tools)")
    argv = [binary, "-h", HOST, "-p", str(port), "-t", test, "-n", str(requests),
            "-c", str(conns), "-P", str(pipeline), "-d", str(size), "-r", str(keyspace),
            "--csv"]  # fmt: skip
    out = subprocess.run(argv, capture_output=True, text=True, timeout=900, check=True).stdout
    rows = list(csv.DictReader(io.StringIO(out)))
    if len(rows) != 1:
        raise RuntimeError(f"redis-benchmark -t {test}: expected one CSV row, got {out!r}")
    row = rows[0]
    names = {"rps": "rps", "avg": "avg_latency_ms", "p50": "p50_latency_ms",
             "p95": "p95_latency_ms", "p99": "p99_latency_ms", "max": "max_latency_ms"}  # fmt: skip
    return {key: float(row[col]) for key, col in names.items()}


def server_cpu(pid: int) -> float:
    """CPU seconds (user + system, every live thread) that process `pid` has used so far.

    Sums the first field of /proc/<pid>/task/*/schedstat (nanoseconds of run time)
    where the kernel keeps it; otherwise utime + stime from /proc/<pid>/stat, whose
    10 ms ticks are too coarse for a short run of a fast server such as Redis.
    """
    total_ns = 0
    try:
        for task in os.listdir(f"/proc/{pid}/task"):
            path = f"/proc/{pid}/task/{task}/schedstat"
            with contextlib.suppress(FileNotFoundError), open(path) as f:  # thread may end
                total_ns += int(f.read().split()[0])
    except (FileNotFoundError, ValueError, IndexError):
        total_ns = 0
    if total_ns:
        return total_ns / 1e9
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
