"""Kill the server at its N-th fsync (or write, or rename) while several clients write.

Strategy: a real bitcask-server under ``--sync always`` takes puts from CLIENTS
connections at once, so its writer group-commits them (one write, one fdatasync for
many requests). strace attaches to it with ``-e inject=CALL:signal=SIGKILL:when=N``:
the server dies just before that call runs. Each client records a put as
acknowledged only once its reply arrived. Then the store is opened directly (twice):
every acknowledged put answers its value; a put in flight answers its value or
nothing (its key is new), never a torn value, never CORRUPT_RECORD.

The suite runs a few points per call; ``BITCASK_CRASH_SWEEP=1`` runs N = 1..40 for
each. Needs strace (Debian package ``strace``; attaching needs ptrace rights over a
sibling process: root, or Yama ptrace_scope 0).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
import subprocess
from pathlib import Path

import pytest

import bitcask
from client import connect
from tests.protocol._redis_server import require_binary
from tests.serverproc import ServerProcess, attach_strace

FULL = os.environ.get("BITCASK_CRASH_SWEEP", "") not in ("", "0")
CLIENTS = 4
PUTS = 60  # per client, at most
CALLS = ("fdatasync", "write", "rename")
POINTS = range(1, 41) if FULL else (1, 6)
AFTER_LOAD = 2.0  # seconds a live server is given to reach its point after the load


def _strace() -> str:
    return require_binary("strace", "strace")


def value(c: int, i: int) -> bytes:
    return b"client %d put %d " % (c, i) + b"#" * (37 * (i % 5))


async def _writer(port: int, c: int, acked: list[int], flying: list[int]) -> None:
    try:
        async with connect("127.0.0.1", port) as cl:
            for i in range(PUTS):
                flying.append(i)
                await cl.put(b"c%d:%03d" % (c, i), value(c, i))
                acked.append(i)
                flying.remove(i)
    except Exception:
        return


async def _load(port: int) -> tuple[list[list[int]], list[list[int]]]:
    acked: list[list[int]] = [[] for _ in range(CLIENTS)]
    flying: list[list[int]] = [[] for _ in range(CLIENTS)]
    await asyncio.wait_for(
        asyncio.gather(*(_writer(port, c, acked[c], flying[c]) for c in range(CLIENTS))), 60
    )
    return acked, flying


@pytest.mark.parametrize("call", CALLS)
def test_server_killed_at_a_call_keeps_every_acknowledged_put(call: str, tmp_path: Path) -> None:
    strace = _strace()
    failures = []
    killed = 0
    for n in POINTS:
        data = tmp_path / f"{call}-{n}"
        # small files: rotations, and the hints of sealed files renamed into place
        srv = ServerProcess(data=data, sync="always", extra=["--max-file-size", "4096"]).start()
        assert srv.proc is not None
        tracer = attach_strace(strace, srv.proc.pid, call, f"signal=SIGKILL:when={n}")
        try:
            acked, flying = asyncio.run(_load(srv.port))
            # the background worker renames hints into place, possibly after the load
            with contextlib.suppress(subprocess.TimeoutExpired):
                srv.proc.wait(AFTER_LOAD)
        finally:
            killed += srv.proc.poll() == -9  # by the injection, not by us
            srv.kill()
            tracer.wait(10)
        for attempt in (1, 2):
            with bitcask.open(data, sync="never") as db:
                for c in range(CLIENTS):
                    for i in acked[c]:
                        got = db.get(b"c%d:%03d" % (c, i))
                        if got != value(c, i):
                            failures.append(f"{call}#{n} open {attempt}: c{c}:{i} = {got!r}")
                    for i in flying[c]:
                        got = db.get(b"c%d:%03d" % (c, i))
                        if got not in (None, value(c, i)):
                            failures.append(
                                f"{call}#{n} open {attempt}: in flight c{c}:{i} = {got!r}"
                            )
        shutil.rmtree(data, ignore_errors=True)
    assert not failures, "\n".join(failures)
    assert killed, f"no point killed the server: fewer than {max(POINTS)} {call} calls?"
