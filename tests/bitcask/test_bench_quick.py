"""`python -m bench.embedded --quick` runs end to end and writes its results;
`python -m bench.opcodes` counts the same bytecodes twice.

A smoke test of the benchmark harness, not a measurement: it checks the structure of
the JSON and markdown it writes (every store, every workload, the targets table),
never a speed. Sizes are tiny so it stays within a few seconds.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_quick_benchmark_writes_its_results(tmp_path: Path) -> None:
    out = tmp_path / "results"
    cmd = [
        sys.executable,
        "-m",
        "bench.embedded",
        "--quick",
        "--keys=2000",
        "--big-keys=200",
        "--million=5000",
        "--durable=50",
        "--stores=bitcask,rawlog,checkedlog,sqlite3",
        f"--out={out}",
        f"--dir={tmp_path}",
    ]
    proc = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "targets (issue 13)" in proc.stdout

    doc = json.loads((out / "embedded.json").read_text())
    assert doc["name"] == "embedded"
    assert doc["meta"]["quick"] is True
    assert doc["meta"]["machine"]["python"]
    titles = [t["title"] for t in doc["tables"]]
    assert titles == [
        "2,000 keys, 100 B values",
        "200 keys, 4096 B values",
        "5,000 keys, 100 B values: open time and keydir",
        "durable writes: fsync before returning, 50 puts of 100 B",
        "targets (issue 13)",
    ]
    for table in doc["tables"][:2]:
        rows = {r["store"]: r for r in table["rows"]}
        checked = "checkedlog (floor + CRC, mmap)"
        assert set(rows) == {"bitcask", "rawlog (floor)", checked, "sqlite3 (WAL)"}
        assert all(rows[checked][op] > 0 for op in ("put", "get", "batch", "reopen_ms"))
        floor = rows["rawlog (floor)"]
        assert floor["put_x"] == 1.0 and floor["get_x"] == 1.0
        engine = rows["bitcask"]
        for key in (
            *("put", "get", "batch", "delete", "incr"),
            *("reopen_ms", "scan_ms", "keydir_stats", "keydir_traced"),
        ):
            assert isinstance(engine[key], int | float) and engine[key] > 0, key
        assert "delete" not in floor and "no delete" in table["notes"][0]  # said so
        assert engine["disk_bytes"] > 0
        assert engine["hints_removed"] >= 1  # "no hints" really reopened without them
    durable = doc["tables"][3]["rows"]
    assert len(durable) == 4 and all(r["rate"] > 0 for r in durable)
    targets = doc["tables"][-1]["rows"]
    assert len(targets) == 7
    assert {r["verdict"] for r in targets} <= {"met", "MISSED"}

    md = (out / "embedded.md").read_text()
    assert "| store | put ops/s |" in md
    assert md.count("**") >= 2 * len(titles)
    # the run cleaned up after itself: only the results directory is left
    assert sorted(p.name for p in tmp_path.iterdir()) == ["results"]


def test_opcode_count_is_deterministic() -> None:
    # bench/opcodes.py: the same op on the same state executes the same bytecodes, in
    # two processes; the single-op calls are no dearer than a one-op write_batch.
    def run() -> dict[str, int]:
        cmd = [sys.executable, "-m", "bench.opcodes", "--json"]
        proc = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=60)
        assert proc.returncode == 0, proc.stderr[-3000:]
        return json.loads(proc.stdout)  # type: ignore[no-any-return]

    first = run()
    assert first == run()
    assert {"put (overwrite)", "delete (present)", "incr (present)"} <= set(first)
    assert all(n > 0 for n in first.values())
    assert first["delete (present)"] < first["write_batch([delete])"]
