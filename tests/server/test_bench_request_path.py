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


def test_opcodes_count_the_rounds_of_both_harnesses_and_not_the_set_up() -> None:
    rounds, conns = 2, 3
    n, counts = request_path.opcodes("get", 4, rounds, conns, ceiling=False)
    assert n == rounds * conns * 4
    assert counts["server/_pipeline.py:feed"] > 0  # the request path, by function
    assert counts["bitcask/db.py:get"] > 0
    # the set-up's db.put of every key is not counted (the trace covers the rounds)
    assert "bitcask/_writer.py:put" not in counts, sorted(counts)
    assert sys.gettrace() is None
    n, counts = request_path.opcodes("put", 4, rounds, conns, ceiling=True)
    assert n == rounds * conns * 4
    assert counts["bench/ceiling_server.py:data_received"] > 0
    assert not any(where.startswith("server/") for where in counts), sorted(counts)


def test_command_line_prints_bytecodes_per_request_by_function() -> None:
    cmd = [sys.executable, "-m", "bench.request_path", "--opcodes", "--rounds", "2",
           "--depth", "1", "--conns", "2", "--op", "get"]  # fmt: skip
    proc = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr[-2000:]
    first, *rows = proc.stdout.splitlines()
    assert first.startswith("get depth 1, 2 connections: ") and first.endswith(" bytecodes/request")
    assert any(row.split()[-1] == "server/_pipeline.py:feed" for row in rows), proc.stdout
