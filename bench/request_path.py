"""The binary port's request path in one process: instructions per request, by callgrind.

bench/server.py measures whole servers on loopback, where the kernel's socket work and
a loaded machine blur differences of a few percent. This drives the real parts (the
BinaryProtocol, protocol.Connection, the Pipeline, the Dispatcher, the writer in
"loop" mode as under `--sync never`, and the engine) with a mock transport: N
connections each receive one chunk of `depth` pipelined frames per round (msgid 1,
100 B values: bench/server.py's rows), and the loop runs until the replies are out.

`--ceiling` drives bench/ceiling_server.py's protocol (a dict behind the same framing)
through the same harness instead, so the two counts compare like for like.

With `--callgrind` it runs itself twice under `valgrind --tool=callgrind` (two round
counts, PYTHONHASHSEED=0) and prints the difference per request: start-up cancels out
and the count repeats to within about 1% however loaded the machine is.

    python -m bench.request_path --op put --depth 16              # wall clock (noisy)
    python -m bench.request_path --op put --depth 16 --callgrind  # instructions/request
    python -m bench.request_path --op put --depth 16 --callgrind --ceiling  # the same, ceiling
    python -m bench.request_path --op get --depth 1 --opcodes     # bytecodes/request, by function

`--opcodes` counts the Python bytecode instructions executed per request (a trace
function with `f_trace_opcodes`), in all and by function: exact and repeatable like
callgrind, in seconds instead of minutes, and it names the function; C work
(msgpack, zlib, the kernel) is not in it, and the trace makes it useless for timing.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from types import CodeType, FrameType
from typing import Any

import msgpack
import uvloop

import bitcask
from bench.ceiling_server import Ceiling
from server._dispatch import Dispatcher
from server._metrics import Metrics
from server._startup import tune_gc
from server._state import ServerState
from server._writer import Writer
from server.binary import BinaryProtocol
from server.config import ServerConfig

KEYS = 10_000
VALUE = b"v" * 100
_pack = msgpack.Packer(use_bin_type=True).pack
TraceFunction = Callable[[FrameType, str, Any], Any]


class _Transport:
    """Counts writes; never closes or pushes back."""

    def __init__(self) -> None:
        self.writes = 0

    def write(self, data: bytes) -> None:
        self.writes += 1

    def is_closing(self) -> bool:
        return False

    def pause_reading(self) -> None: ...

    def resume_reading(self) -> None: ...

    def can_write_eof(self) -> bool:
        return True

    def write_eof(self) -> None: ...

    def close(self) -> None: ...

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        return default


class _Host:
    """The server-wide facts (server/_state.py's Host): admits everyone, no pressure."""

    draining = False
    writer_pressured = False

    def admit(self, conn: Any) -> bool:
        return True

    def admit_probe(self, conn: Any) -> bool:
        return False

    def release(self, conn: Any) -> None: ...

    def readonly_reason(self) -> str | None:
        return None

    def not_ready_reason(self) -> str | None:
        return None

    def not_live_reason(self) -> str | None:
        return None

    def disk_health(self) -> dict[str, Any]:
        return {}

    def key_count(self) -> int:
        return 0

    def uptime(self) -> float:
        return 0.0

    def stats(self) -> dict[str, Any]:
        return {}

    def render_metrics(self) -> str:
        return ""


def _frame(method: str, params: list[Any]) -> bytes:
    body = _pack([0, 1, method, params])
    return len(body).to_bytes(4, "big") + body


def _chunks(op: str, depth: int, conns: int) -> list[list[bytes]]:
    """Per connection, 64 chunks of `depth` frames each (keys 7 apart, cycling)."""
    chunks: list[list[bytes]] = []
    k = 0
    for _ in range(conns):
        mine = []
        for _ in range(64):
            frames = []
            for _ in range(depth):
                key = b"key:%012d" % (k % KEYS)
                k += 7
                frames.append(_frame("put", [key, VALUE]) if op == "put" else _frame("get", [key]))
            mine.append(b"".join(frames))
        chunks.append(mine)
    return chunks


async def drive_ceiling(
    op: str, depth: int, rounds: int, conns: int, trace: TraceFunction | None = None
) -> tuple[int, float, int]:
    """The ceiling's protocol in the same harness: (requests, seconds, transport writes)."""
    store = {b"key:%012d" % i: VALUE for i in range(KEYS)}
    transports = [_Transport() for _ in range(conns)]
    protocols = [Ceiling(store) for _ in transports]
    seconds = await _rounds(protocols, transports, _chunks(op, depth, conns), rounds, trace)
    return rounds * conns * depth, seconds, sum(t.writes for t in transports)


async def _rounds(
    protocols: list[Any],
    transports: list[_Transport],
    chunks: list[list[bytes]],
    rounds: int,
    trace: TraceFunction | None,
) -> float:
    """Connect each protocol to its transport, feed the rounds; return the seconds taken.

    ``trace`` (`opcodes`) is installed for the rounds only, not the set-up.
    """
    for proto, transport in zip(protocols, transports, strict=True):
        proto.connection_made(transport)
    started = time.perf_counter()
    sys.settrace(trace)
    try:
        for r in range(rounds):
            for proto, mine in zip(protocols, chunks, strict=True):
                proto.data_received(mine[r % 64])
            for _ in range(3):  # the writer's group, then the flushes after it
                await asyncio.sleep(0)
    finally:
        sys.settrace(None)
    return time.perf_counter() - started


async def drive(
    op: str, depth: int, rounds: int, conns: int, trace: TraceFunction | None = None
) -> tuple[int, float, int]:
    """Run the rounds; return (requests, seconds, transport writes)."""
    tmp = Path(tempfile.mkdtemp(prefix="bitcask-request-path-"))
    try:
        db = bitcask.open(tmp / "db", sync="never")
        metrics = Metrics()
        writer = Writer(db, mode="loop", metrics=metrics)
        cfg = ServerConfig(data=tmp / "db", port=0, http_port=0)
        dispatcher = Dispatcher(
            db,
            writer,
            cfg,
            max_key_size=db.options.max_key_size,
            max_value_size=db.options.max_value_size,
            server_stats=dict,
        )
        state = ServerState(
            config=cfg,
            store=db,
            metrics=metrics,
            writer=writer,
            dispatcher=dispatcher,
            loop=asyncio.get_running_loop(),
            http_port=0,
            host=_Host(),
        )
        for i in range(KEYS):
            db.put(b"key:%012d" % i, VALUE)
        transports = [_Transport() for _ in range(conns)]
        protocols = [BinaryProtocol(state) for _ in transports]
        chunks = _chunks(op, depth, conns)
        tune_gc()
        seconds = await _rounds(protocols, transports, chunks, rounds, trace)
        await writer.wait_idle()
        db.close()
        return rounds * conns * depth, seconds, sum(t.writes for t in transports)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def opcodes(
    op: str, depth: int, rounds: int, conns: int, ceiling: bool
) -> tuple[int, Counter[str]]:
    """Bytecodes executed while the rounds run: (requests, count by "folder/file:function")."""
    counts: Counter[str] = Counter()
    names: dict[CodeType, str] = {}

    def name(code: CodeType) -> str:
        where = names.get(code)
        if where is None:
            parent, file = os.path.split(code.co_filename)
            where = names[code] = f"{os.path.basename(parent)}/{file}:{code.co_name}"
        return where

    def trace(frame: FrameType, event: str, arg: Any) -> Any:
        frame.f_trace_opcodes = True
        frame.f_trace_lines = False
        where = name(frame.f_code)

        def local(frame: FrameType, event: str, arg: Any) -> Any:
            if event == "opcode":
                counts[where] += 1
            return local

        return local

    run = drive_ceiling if ceiling else drive
    n, _, _ = uvloop.run(run(op, depth, rounds, conns, trace))
    return n, counts


def _instructions(argv: list[str]) -> int:
    with tempfile.TemporaryDirectory() as tmp:
        out = os.path.join(tmp, "callgrind.out")
        env = {**os.environ, "PYTHONHASHSEED": "0"}
        cmd = ["valgrind", "--tool=callgrind", f"--callgrind-out-file={out}", *argv]
        subprocess.run(cmd, check=True, env=env, capture_output=True)
        with open(out) as f:
            for line in f:
                m = re.match(r"(?:summary|totals): (\d+)", line)
                if m:
                    return int(m.group(1))
    raise RuntimeError("callgrind wrote no totals")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--op", choices=("put", "get"), default="put")
    parser.add_argument("--depth", type=int, default=16)
    parser.add_argument("--conns", type=int, default=50)
    parser.add_argument("--rounds", type=int, default=0, help="default: 3200 requests/conn")
    parser.add_argument("--callgrind", action="store_true", help="instructions per request")
    parser.add_argument("--ceiling", action="store_true", help="drive the ceiling's protocol")
    parser.add_argument(
        "--opcodes", action="store_true", help="Python bytecodes per request, by function"
    )
    args = parser.parse_args(argv)
    rounds = args.rounds or max(1, 3200 // args.depth)
    if args.callgrind:
        if shutil.which("valgrind") is None:
            parser.error("valgrind is not installed (Debian package: valgrind)")
        small = max(1, rounds // 4)
        base = [sys.executable, "-m", "bench.request_path", "--op", args.op]
        base += ["--depth", str(args.depth), "--conns", str(args.conns)]
        base += ["--ceiling"] if args.ceiling else []
        subprocess.run([*base, "--rounds", "1"], check=True, capture_output=True)  # .pyc
        a = _instructions([*base, "--rounds", str(small)])
        b = _instructions([*base, "--rounds", str(rounds)])
        who = "ceiling: " if args.ceiling else ""
        per = (b - a) / ((rounds - small) * args.conns * args.depth)
        print(
            f"{who}{args.op} depth {args.depth}, {args.conns} connections: "
            f"{per:,.0f} instructions/request"
        )
        return 0
    if args.opcodes:
        n, counts = opcodes(args.op, args.depth, rounds, args.conns, args.ceiling)
        who = "ceiling: " if args.ceiling else ""
        print(
            f"{who}{args.op} depth {args.depth}, {args.conns} connections: "
            f"{sum(counts.values()) / n:,.0f} bytecodes/request"
        )
        for where, count in counts.most_common(15):
            print(f"{count / n:9.1f}  {where}")
        return 0
    run = drive_ceiling if args.ceiling else drive
    n, seconds, writes = uvloop.run(run(args.op, args.depth, rounds, args.conns))
    print(
        f"{args.op} depth {args.depth}, {args.conns} connections: {n:,} requests, "
        f"{seconds / n * 1e6:.2f} us/request, {writes / n:.3f} writes/request"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
