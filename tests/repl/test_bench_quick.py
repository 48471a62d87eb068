"""`python -m bench.cli` runs end to end with tiny sizes (a smoke test, no speeds).

The numbers themselves are never checked: the structure of the JSON and markdown
is, and that every row was measured (a run that failed, e.g. a piped line not
answered OK or keys missing afterwards, makes the benchmark exit non-zero).
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from bench.cli import importtime_ms
from tests.repl.conftest import need_binary

ROOT = Path(__file__).resolve().parents[2]


def test_quick_cli_benchmark_writes_its_results(tmp_path: Path) -> None:
    need_binary("redis-server", "redis-server")
    need_binary("redis-cli", "redis-tools")
    cmd = [sys.executable, "-m", "bench.cli", "--quick", "--startup-runs=2", "--import-runs=1",
           "--puts=200", "--runs=1", f"--out={tmp_path}"]  # fmt: skip
    proc = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr[-3000:]
    doc = json.loads((tmp_path / "cli.json").read_text())
    assert doc["name"] == "cli"
    assert doc["meta"]["puts"] == 200 and doc["meta"]["quick"] is True
    startup, piped, targets = doc["tables"]
    programs = [r["program"] for r in startup["rows"]]
    assert programs == [
        "python -c pass (interpreter floor)", "bitcask ping", "bitcask get", "redis-cli ping",
        "redis-cli get", "import repl._run (-X importtime, cumulative)",
    ]  # fmt: skip
    assert all(r["median_ms"] > 0 for r in startup["rows"])
    assert [len(r["raw_s"]) for r in startup["rows"][:5]] == [2, 2, 2, 2, 2]
    rows = {r["program"]: r for r in startup["rows"]}  # each bitcask row over its redis-cli row
    for cmd in ("ping", "get"):
        ours, theirs = rows[f"bitcask {cmd}"], rows[f"redis-cli {cmd}"]
        assert ours["x_redis"] == pytest.approx(ours["median_ms"] / theirs["median_ms"])
    assert [r["pair"] for r in piped["rows"]] == [
        "bitcask --sync interval / redis appendfsync everysec",
        "bitcask --sync always / redis appendfsync always",
    ]
    for row in piped["rows"]:
        assert row["bitcask_s"] > 0 and row["redis_s"] > 0
        assert row["ratio"] == row["bitcask_s"] / row["redis_s"]
    assert len(targets["rows"]) == 3
    assert {r["verdict"] for r in targets["rows"]} <= {"met", "MISSED"}
    md = (tmp_path / "cli.md").read_text()
    assert md.count("**") == 2 * 3
    assert "| `bitcask ping`, wall time (item 13) | < 0.15 s |" in md


def test_importtime_counts_the_top_level_lines_of_the_package() -> None:
    stderr = "\n".join(
        [
            "import time: self [us] | cumulative | imported package",
            "import time:       900 |      13409 | site",
            "import time:      1503 |       4177 |   repl",
            "import time:      1100 |       1788 |   argparse",
            "import time:      1917 |     107236 | repl.cli",
            "import time:        10 |         20 | replica",
        ]
    )
    assert importtime_ms(stderr) == 107.236
    assert importtime_ms(stderr, "site") == 13.409
    assert importtime_ms("no importtime output") == 0.0
