"""`python -m bench.server --only` prints a row per server named (no speed asserted).

The ceiling speaks the binary framing but has no `stats`: asking it for bitcask's
group-commit counter made every `--only` run that named it fail (TypeError).
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_only_rows_for_the_ceiling_and_bitcask() -> None:
    cmd = [sys.executable, "-m", "bench.server", "--only", "ceiling,never", "--ops", "400",
           "--runs", "1", "--op", "put", "--depths", "1", "--conns", "4"]  # fmt: skip
    proc = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr[-2000:]
    rows = [line for line in proc.stdout.splitlines() if " depth  1 put:" in line]
    assert [row.split(" depth")[0].strip() for row in rows] == [
        "ceiling (uvloop + dict)",
        "bitcask --sync never",
    ], proc.stdout
    assert all("errors 0" in row for row in rows), proc.stdout
    assert "puts per group" in rows[1] and "puts per group" not in rows[0], proc.stdout
