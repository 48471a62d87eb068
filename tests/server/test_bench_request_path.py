"""bench/request_path.py drives the real request path and the ceiling alike (no speed asserted).

Both harnesses must do the same work for the instruction counts to compare: every
request answered and one transport write per connection per round (the replies of one
chunk leave together).
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
import uvloop

from bench import request_path

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.parametrize("op", ["put", "get"])
@pytest.mark.parametrize("depth", [1, 16])
def test_both_harnesses_answer_every_request_in_one_write_per_chunk(op: str, depth: int) -> None:
    rounds, conns = 4, 3
    for drive in (request_path.drive, request_path.drive_ceiling):
        n, seconds, writes = uvloop.run(drive(op, depth, rounds, conns))
        assert n == rounds * conns * depth
        assert writes == rounds * conns, drive.__name__
        assert seconds > 0


def test_command_line_prints_a_rate_for_the_ceiling() -> None:
    cmd = [sys.executable, "-m", "bench.request_path", "--ceiling", "--rounds", "2",
           "--depth", "4", "--conns", "2"]  # fmt: skip
    proc = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert proc.stdout.startswith("put depth 4, 2 connections: 16 requests,"), proc.stdout
