"""The embedded benchmark: this engine beside the floor and other stores, in one run.

    python -m bench.embedded            # full run (about 2 minutes on 2 cores)
    python -m bench.embedded --quick    # small sizes: a smoke run, not a measurement

Strategy: every store sees the same keys (`key:%012d`, 16 B), the same values
(random bytes from a fixed seed) and the same random read order, one store after
the other in one process, each run in a fresh directory. Times are medians of
`--runs` runs (slow stores run once). Ratios are taken against bench/rawlog.py,
the pure-Python floor, measured in the same run. Nothing here asserts a speed: the
targets of issue 13 are printed as met/missed and written to bench/results/.

Workloads: "small" (200,000 keys, 100 B values) and "large" (50,000 keys, 4 KiB
values): put, uniform random get, batch put (1,000 per batch), reopen, reopen with
the hint files deleted (the engine scans), keydir bytes per key (stats() and
tracemalloc on a fresh reopen), disk size. Then a 1,000,000-key section: open
time from hints and keydir bytes per key; and a durable-writes section (fsync
before returning: per put, and group commit through write_batch).

Stores: this engine (sync="never": a put still survives SIGKILL once it returns),
the floor, the floor with a checked record format (bench/checkedlog.py: what a CRC, a
timestamp and mapped appends cost, without the engine's bookkeeping), sqlite3 (WAL),
dbm.gnu / dbm.ndbm (dbm.dumb when neither is built), and semidbm, lmdb, plyvel when
importable (`pip install semidbm lmdb plyvel`).
"""

from __future__ import annotations

import argparse
import gc
import random
import shutil
import tempfile
import tracemalloc
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from functools import partial
from pathlib import Path
from typing import Any

from bench._stores import Adapter, BitcaskAdapter, Pairs, RawLogAdapter, available
from bench._util import (
    Column,
    Table,
    dir_size,
    emit,
    fmt_bytes,
    fmt_ms,
    fmt_rate,
    fmt_ratio,
    median,
    timed,
)
from bench.rawlog import RawLog

BATCH = 1_000
INCRS = 50_000  # incr calls per run (the delete column deletes every key)
SEED = 20_26


@dataclass(frozen=True, slots=True)
class Workload:
    name: str
    keys: int
    value_size: int


def make_data(w: Workload) -> tuple[list[bytes], list[bytes], list[bytes]]:
    """Keys, values (a pool of distinct random values, cycled) and a random read order."""
    rng = random.Random(SEED + w.keys + w.value_size)
    keys = [b"key:%012d" % i for i in range(w.keys)]
    pool = [rng.randbytes(w.value_size) for _ in range(min(w.keys, 4096))]
    values = [pool[i % len(pool)] for i in range(w.keys)]
    reads = rng.choices(keys, k=w.keys)
    return keys, values, reads


def traced_open(adapter: Adapter, path: str) -> int:
    """Bytes still allocated after opening the store (tracemalloc; the store stays open)."""
    gc.collect()
    tracemalloc.start()
    try:
        adapter.open(path)
        gc.collect()
        return tracemalloc.get_traced_memory()[0]
    finally:
        tracemalloc.stop()


@dataclass
class Measure:
    """The samples of one store on one workload, filled in one run at a time."""

    adapter: Adapter
    row: dict[str, Any]
    samples: dict[str, list[float]]


def measure_once(
    m: Measure,
    w: Workload,
    data: tuple[list[bytes], ...],
    chunks: Sequence[Pairs],
    run: int,
    base: Path,
) -> None:
    """One run of every measurement of one store on one workload."""
    adapter, row, samples = m.adapter, m.row, m.samples
    keys, values, reads = data
    n = len(keys)
    is_bitcask = isinstance(adapter, BitcaskAdapter)
    path = str(base / f"{w.name}-{run}")
    adapter.open(path)
    samples["put"].append(timed(partial(adapter.load, keys, values)))
    samples["get"].append(timed(partial(adapter.read, reads)))
    for k in reads[:: max(1, n // 50)]:  # the adapter read what was written
        if adapter.get(k) != values[int(k[4:])]:
            raise AssertionError(f"{adapter.name}: wrong value for {k!r}")
    adapter.close()
    row["disk_bytes"] = dir_size(path)
    samples["reopen"].append(timed(partial(adapter.open, path)))
    if is_bitcask:
        extra = adapter.extra()
        row["keydir_stats"] = extra["keydir_bytes"] / max(1, extra["keys"] or 1)
        row["recovery_hinted"] = extra["stats"].get("recovery")
    adapter.close()
    if run == 0 and (is_bitcask or isinstance(adapter, RawLogAdapter)):
        # measured on an open from hints: no background hint writer allocating
        row["keydir_traced"] = traced_open(adapter, path) / n
        adapter.close()
    if isinstance(adapter, BitcaskAdapter):
        row["hints_removed"] = adapter.drop_hints()
        samples["scan"].append(timed(partial(adapter.open, path)))
        row["recovery_scanned"] = adapter.extra()["stats"].get("recovery")
        adapter.close()
    if adapter.has_delete:
        # On the reopened store (every key present): incr of 1,000 counters (the
        # first incr of each creates it), then a delete of every key.
        adapter.open(path)
        counters = [b"ctr:%06d" % (i % 1000) for i in range(min(n, INCRS))]
        # (scaled to n calls: every rate below is n / the median time)
        samples["incr"].append(timed(partial(adapter.incr_all, counters)) * n / len(counters))
        samples["delete"].append(timed(partial(adapter.delete_all, keys)))
        if adapter.get(keys[0]) is not None:
            raise AssertionError(f"{adapter.name}: {keys[0]!r} survived its delete")
        adapter.close()
    shutil.rmtree(path, ignore_errors=True)
    if adapter.has_batch:
        bpath = str(base / f"{w.name}-{run}-batch")
        adapter.open(bpath)
        samples["batch"].append(timed(partial(adapter.load_batches, chunks)))
        adapter.close()
        shutil.rmtree(bpath, ignore_errors=True)


def run_workload(
    adapters: Sequence[Adapter], w: Workload, runs: int, base: Path
) -> list[dict[str, Any]]:
    """Measure every store on `w`; one row per store.

    Runs interleave (run 1 of every store, then run 2, ...) so that a noisy moment
    on a shared machine spreads over all stores instead of skewing one ratio.
    """
    data = make_data(w)
    keys, values, _reads = data
    n = len(keys)
    chunks = [
        list(zip(keys[i : i + BATCH], values[i : i + BATCH], strict=True))
        for i in range(0, n, BATCH)
    ]
    measures = [
        Measure(
            a,
            {"store": a.name},
            {
                "put": [],
                "get": [],
                "batch": [],
                "reopen": [],
                "scan": [],
                "delete": [],
                "incr": [],
            },
        )
        for a in adapters
    ]
    for run in range(runs):
        for m in measures:
            if run < (m.adapter.runs or runs):
                print(f"{w.name} run {run + 1}/{runs}: {m.adapter.name} ...", flush=True)
                measure_once(m, w, data, chunks, run, base)
    rows = []
    for m in measures:
        row, samples = m.row, m.samples
        for op in ("put", "get", "batch", "delete", "incr"):
            if samples[op]:
                row[op] = n / median(samples[op])
        row["reopen_ms"] = median(samples["reopen"]) * 1e3
        if samples["scan"]:
            row["scan_ms"] = median(samples["scan"]) * 1e3
        row["runs"] = len(samples["put"])
        row["raw"] = {k: v for k, v in samples.items() if v}
        rows.append(row)
    return rows


def workload_table(w: Workload, rows: list[dict[str, Any]]) -> Table:
    floor = next((r for r in rows if r["store"].startswith("rawlog")), None)
    for r in rows:
        for op in ("put", "get", "batch"):
            if floor and op in r:
                # batch is judged against the floor's plain put, as issue 13 states it
                r[f"{op}_x"] = r[op] / floor["get" if op == "get" else "put"]
    t = Table(
        f"{w.keys:,} keys, {w.value_size} B values",
        [
            Column("store", "store", str),
            Column("put", "put ops/s", fmt_rate),
            Column("put_x", "x floor", fmt_ratio),
            Column("get", "get ops/s", fmt_rate),
            Column("get_x", "x floor", fmt_ratio),
            Column("batch", "batch put ops/s", fmt_rate),
            Column("batch_x", "x floor put", fmt_ratio),
            Column("delete", "delete ops/s", fmt_rate),
            Column("incr", "incr ops/s", fmt_rate),
            Column("reopen_ms", "reopen ms", fmt_ms),
            Column("scan_ms", "reopen ms, no hints", fmt_ms),
            Column("keydir_stats", "keydir B/key (stats)", lambda v: f"{v:.0f}"),
            Column("keydir_traced", "B/key (tracemalloc)", lambda v: f"{v:.0f}"),
            Column("disk_bytes", "disk", fmt_bytes),
        ],
        rows,
    )
    t.notes.append(
        "delete (every key, each present) and incr (1,000 counters) are measured for"
        " bitcask only: the floor, a raw append log, has no delete and no"
        " read-modify-write to compare them with."
    )
    return t


def million(n: int, runs: int, base: Path) -> dict[str, Any]:
    """Build n keys with write_batch, close, then time opens from hints (and one scan)."""
    value = random.Random(SEED).randbytes(100)
    chunks = [
        [(b"key:%012d" % i, value) for i in range(j, min(n, j + BATCH))] for j in range(0, n, BATCH)
    ]
    path = str(base / "million")
    engine = BitcaskAdapter()
    engine.open(path)
    build = timed(partial(engine.load_batches, chunks))
    engine.close()
    opens: list[float] = []
    stats: dict[str, Any] = {}
    for _ in range(runs):
        opens.append(timed(lambda: engine.open(path)))
        stats = engine.extra()
        engine.close()
    traced = traced_open(engine, path)
    engine.close()
    engine.drop_hints()
    scan = timed(lambda: engine.open(path))
    engine.close()
    floor = RawLogAdapter()
    fpath = str(base / "million-raw")
    floor.open(fpath)
    floor.load_batches(chunks)
    del chunks
    gc.collect()
    floor.close()
    raw_open = timed(lambda: floor.open(fpath))
    floor.close()
    raw_traced = traced_open(floor, fpath)
    floor.close()
    shutil.rmtree(path, ignore_errors=True)
    shutil.rmtree(fpath, ignore_errors=True)
    return {
        "keys": n,
        "build_s": build,
        "open_ms": median(opens) * 1e3,
        "open_raw": opens,
        "scan_ms": scan * 1e3,
        "keydir_stats": stats["keydir_bytes"] / max(1, stats["keys"] or 1),
        "keydir_traced": traced / n,
        "recovery": stats["stats"].get("recovery"),
        "rawlog_open_ms": raw_open * 1e3,
        "rawlog_traced": raw_traced / n,
    }


def durable(n: int, base: Path) -> Table:
    """Writes that are on disk before they return: one fsync per put, and group commit."""
    import sqlite3

    import bitcask

    value = random.Random(SEED).randbytes(100)
    keys = [b"key:%012d" % i for i in range(n)]
    t = Table(
        f"durable writes: fsync before returning, {n:,} puts of 100 B",
        [
            Column("store", "store", str),
            Column("rate", "ops/s", fmt_rate),
            Column("fsyncs", "fsyncs", str),
            Column("x", "x floor", fmt_ratio),
        ],
    )
    log = RawLog.open(str(base / "durable.log"))

    def raw() -> None:
        for k in keys:
            log.put(k, value)
            log.sync()

    floor = n / timed(raw)
    log.close()
    t.add(store="rawlog + fdatasync per put (floor)", rate=floor, fsyncs=f"{n:,}", x=1.0)
    with bitcask.open(base / "durable-put", sync="always") as db:
        adapter = BitcaskAdapter()
        adapter.db = db
        rate = n / timed(partial(adapter.load, keys, [value] * n))
    t.add(store='bitcask sync="always", put', rate=rate, fsyncs=f"{n:,}", x=rate / floor)
    group = 100
    many = [b"key:%012d" % i for i in range(n * 10)]
    ops = [
        [("put", k, value, None) for k in many[i : i + group]] for i in range(0, len(many), group)
    ]
    with bitcask.open(base / "durable-batch", sync="always") as db:
        rate = len(many) / timed(lambda: [db.write_batch(b) for b in ops])
    t.add(
        store=f'bitcask sync="always", write_batch of {group}',
        rate=rate,
        fsyncs=f"{len(ops):,}",
        x=rate / floor,
    )
    conn = sqlite3.connect(base / "durable.sqlite", isolation_level=None)
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute("PRAGMA synchronous=FULL")
    conn.execute("CREATE TABLE kv (k BLOB PRIMARY KEY, v BLOB) WITHOUT ROWID")
    rate = n / timed(
        lambda: [conn.execute("INSERT OR REPLACE INTO kv VALUES (?, ?)", (k, value)) for k in keys]
    )
    conn.close()
    t.add(
        store="sqlite3 WAL synchronous=FULL, autocommit", rate=rate, fsyncs=f"{n:,}", x=rate / floor
    )
    t.notes.append("group commit is the only way past one fsync per write (PEERS.md)")
    return t


def targets(small: list[dict[str, Any]], big: dict[str, Any] | None) -> Table:
    """Issue 13's targets, each with what was measured and whether it was met (the
    sync="always" one is in the durable table: bitcask put against the floor)."""
    engine = next((r for r in small if r["store"] == "bitcask"), {})
    t = Table(
        "targets (issue 13)",
        [
            Column("target", "target", str),
            Column("goal", "goal", str),
            Column("measured", "measured", str),
            Column("verdict", "", str),
        ],
    )

    def add(
        target: str, goal: str, value: float | None, ok: Callable[[float], bool], fmt: str
    ) -> None:
        if value is None or value != value:
            t.add(target=target, goal=goal, measured="-", verdict="not measured")
        else:
            t.add(
                target=target,
                goal=goal,
                measured=fmt.format(value),
                verdict="met" if ok(value) else "MISSED",
            )

    add("put vs floor", ">= 0.90x", engine.get("put_x"), lambda v: v >= 0.9, "{:.2f}x")
    add("batch put vs floor put", ">= 2.00x", engine.get("batch_x"), lambda v: v >= 2.0, "{:.2f}x")
    add(
        "get vs floor (CRC checked)", ">= 1.00x", engine.get("get_x"), lambda v: v >= 1.0, "{:.2f}x"
    )
    scan, hint = engine.get("scan_ms"), engine.get("reopen_ms")
    add(
        "reopen: scan / hints",
        ">= 3.0x",
        scan / hint if scan and hint else None,
        lambda v: v >= 3.0,
        "{:.1f}x",
    )
    if big is not None:
        n = f"{big['keys']:,} keys"
        add(f"open {n} from hints", "< 1000 ms", big["open_ms"], lambda v: v < 1000, "{:.0f} ms")
        add(
            f"keydir B/key, {n} (tracemalloc)",
            "<= 110",
            big["keydir_traced"],
            lambda v: v <= 110,
            "{:.0f}",
        )
        add(
            f"keydir B/key, {n} (stats)",
            "<= 110",
            big["keydir_stats"],
            lambda v: v <= 110,
            "{:.0f}",
        )
    return t


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m bench.embedded", description=__doc__.splitlines()[0]
    )
    parser.add_argument("--quick", action="store_true", help="small sizes (a smoke run)")
    parser.add_argument(
        "--runs", type=int, help="runs per measurement (median); default 3, quick 1"
    )
    parser.add_argument("--keys", type=int, help="keys in the 100 B workload (default 200,000)")
    parser.add_argument("--big-keys", type=int, help="keys in the 4 KiB workload (default 50,000)")
    parser.add_argument(
        "--million", type=int, help="keys in the open-time section (default 1,000,000; 0 skips)"
    )
    parser.add_argument(
        "--stores",
        help="comma list: bitcask,rawlog,checkedlog,sqlite3,dbm.gnu,dbm.ndbm,dbm.dumb,semidbm,lmdb,plyvel",
    )
    parser.add_argument(
        "--durable", type=int, help="fsync'd puts in the durable section (default 2,000; 0 skips)"
    )
    parser.add_argument("--out", help="results directory (default bench/results)")
    parser.add_argument("--dir", help="where to create the stores (default: a temporary directory)")
    args = parser.parse_args(argv)
    q = args.quick
    runs = args.runs or (1 if q else 3)
    small = Workload("small", args.keys or (5_000 if q else 200_000), 100)
    large = Workload("large", args.big_keys or (1_000 if q else 50_000), 4096)
    n_million = args.million if args.million is not None else (20_000 if q else 1_000_000)
    if args.durable is None:
        args.durable = 200 if q else 2_000
    only = [s.strip() for s in args.stores.split(",")] if args.stores else None
    if only and "rawlog" not in only:
        only.append("rawlog")  # every ratio needs the floor
    adapters, skipped = available(only)
    base = Path(tempfile.mkdtemp(prefix="bench-embedded-", dir=args.dir))
    tables: list[Table] = []
    rows_by: dict[str, list[dict[str, Any]]] = {}
    try:
        for w in (small, large):
            rows = run_workload(adapters, w, runs, base)
            rows_by[w.name] = rows
            tables.append(workload_table(w, rows))
            gc.collect()
        big = None
        if n_million > 0 and any(isinstance(a, BitcaskAdapter) for a in adapters):
            print(f"open time: {n_million:,} keys ...", flush=True)
            big = million(n_million, runs, base)
            mt = Table(
                f"{n_million:,} keys, 100 B values: open time and keydir",
                [
                    Column("store", "store", str),
                    Column("open_ms", "open ms (hints)", fmt_ms),
                    Column("scan_ms", "open ms (no hints)", fmt_ms),
                    Column("keydir_stats", "keydir B/key (stats)", lambda v: f"{v:.0f}"),
                    Column("keydir_traced", "B/key (tracemalloc)", lambda v: f"{v:.0f}"),
                ],
            )
            mt.add(
                store="bitcask",
                **{k: big[k] for k in ("open_ms", "scan_ms", "keydir_stats", "keydir_traced")},
            )
            mt.add(
                store="rawlog (floor)",
                scan_ms=big["rawlog_open_ms"],
                keydir_traced=big["rawlog_traced"],
            )
            tables.append(mt)
        if args.durable > 0 and any(isinstance(a, BitcaskAdapter) for a in adapters):
            print(f"durable writes: {args.durable:,} ...", flush=True)
            tables.append(durable(args.durable, base))
        tt = targets(rows_by["small"], big)
        tt.notes.extend(skipped)
        tt.notes.append(
            "bitcask runs with sync='never' (a put survives SIGKILL once it returns); "
            "batch = write_batch of 1,000 puts, judged against the floor's plain put."
        )
        tables.append(tt)
        meta = {
            "workloads": [asdict(w) for w in (small, large)],
            "million": big,
            "runs": runs,
            "quick": q,
            "batch": BATCH,
        }
        emit("embedded", tables, meta=meta, out_dir=args.out)
    finally:
        shutil.rmtree(base, ignore_errors=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
