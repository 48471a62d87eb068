"""`python -m bench.sharding` runs end to end with tiny sizes (a smoke test, no speeds)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from tests.sharding.conftest import require

ROOT = Path(__file__).resolve().parents[2]


def test_quick_sharding_benchmark_writes_its_results(tmp_path: Path) -> None:
    for binary, package in (("redis-server", "redis-server"), ("redis-benchmark", "redis-tools"),
                            ("nutcracker", "nutcracker")):  # fmt: skip
        require(binary, package)
    cmd = [sys.executable, "-m", "bench.sharding", "--quick", "--requests=300", "--ops=200",
           f"--out={tmp_path}"]  # fmt: skip
    proc = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr[-3000:]
    doc = json.loads((tmp_path / "sharding.json").read_text())
    proxy, sharded = doc["tables"]
    assert [r["setup"] for r in proxy["rows"]] == [
        "bitcask-server, direct", "nutcracker, 1 bitcask shard", "nutcracker, 2 bitcask shards",
        "nutcracker, 3 bitcask shards", "redis-server, direct", "nutcracker, 1 redis-server",
    ]  # fmt: skip
    assert [r["setup"] for r in sharded["rows"]] == [
        "Client, one server", "connect_sharded, 1 bitcask shard",
        "connect_sharded, 2 bitcask shards", "connect_sharded, 3 bitcask shards",
    ]  # fmt: skip
    assert all(r["set"] > 0 and r["get"] > 0 and r["backend_cpu"] >= 0 for r in proxy["rows"])
    # the proxy's own CPU is measured on exactly the rows that go through it
    for r in proxy["rows"]:
        assert (r.get("proxy_cpu") is not None) == r["setup"].startswith("nutcracker"), r
    assert all(r["put"] > 0 and r["get"] > 0 for r in sharded["rows"])
    md = (tmp_path / "sharding.md").read_text()
    assert md.count("|---|---|---|---|---|") == 1 and md.count("\n|---|---|---|\n") == 1
