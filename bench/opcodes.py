"""Python bytecodes per write op of the embedded engine: a deterministic cost count.

    python -m bench.opcodes             # one table: bytecodes per call of each op
    python -m bench.opcodes --json      # the same numbers as JSON (for a before/after diff)

Timings on a shared 2-core machine wander by 10-20% between runs; the number of
bytecodes an op executes does not (the same op on the same state runs the same
code). So a fast path is judged here first, then timed (bench/embedded.py's delete
and incr columns). Counted: every opcode of every Python frame the call enters, in
the calling thread, after three warm-up calls (the specialising interpreter's
caches, the first rotation). C code (dict, struct, zlib, os.write) counts nothing:
a C-level pass is one opcode however many keys it touches, which is why the
keydir publications are written as C passes.

On 3.12+ sys.monitoring's INSTRUCTION event is used; on 3.11, sys.settrace with
``f_trace_opcodes``. Both count the same thing: instructions executed.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from typing import Any

KEY = b"key:%012d"
VALUE = bytes(range(100))


def count_opcodes(fn: Callable[[], object]) -> int:
    """How many bytecodes ``fn()`` executes in this thread (its own frame included)."""
    n = 0
    mon = getattr(sys, "monitoring", None)
    if mon is not None:  # pragma: no cover - 3.12+
        tool = mon.PROFILER_ID

        def on_instruction(code: Any, offset: int) -> None:
            nonlocal n
            n += 1

        mon.use_tool_id(tool, "bench.opcodes")
        try:
            mon.register_callback(tool, mon.events.INSTRUCTION, on_instruction)
            mon.set_events(tool, mon.events.INSTRUCTION)
            try:
                fn()
            finally:
                mon.set_events(tool, 0)
        finally:
            mon.free_tool_id(tool)
        return n

    def local(frame: Any, event: str, arg: Any) -> Any:
        nonlocal n
        if event == "opcode":
            n += 1
        return local

    def on_call(frame: Any, event: str, arg: Any) -> Any:
        frame.f_trace_opcodes = True
        frame.f_trace_lines = False
        return local

    sys.settrace(on_call)
    try:
        fn()
    finally:
        sys.settrace(None)
    return n


@contextmanager
def _store(**options: Any) -> Iterator[Any]:
    import bitcask

    with tempfile.TemporaryDirectory(prefix="bench-opcodes-") as path:
        db = bitcask.open(path, sync="never", **options)
        try:
            yield db
        finally:
            db.close()


def _measure(db: Any, prepare: Callable[[int], None], op: Callable[[int], object]) -> int:
    # Three warm-up calls, then the counted one; each call on its own key, prepared
    # (untraced) just before it.
    for i in range(3):
        prepare(i)
        op(i)
    prepare(3)
    return count_opcodes(lambda: op(3))


def measure(**options: Any) -> dict[str, int]:
    """Bytecodes per call of every write op this bench follows (one fresh store)."""
    out: dict[str, int] = {}
    with _store(**options) as db:
        far = int(time.time() * 1000) + 3_600_000
        for i in range(100):
            db.put(KEY % (1000 + i), VALUE)

        def put_key(i: int) -> None:
            db.put(KEY % i, VALUE)

        def nothing(i: int) -> None:
            pass

        def ttl_key(i: int) -> None:
            db.put(KEY % i, VALUE, ttl=3600)

        def counter(i: int) -> None:
            db.put(KEY % i, b"41")

        absent = 10_000
        cases: list[tuple[str, Callable[[int], None], Callable[[int], object]]] = [
            ("put (new key)", nothing, lambda i: db.put(KEY % (absent + 100 + i), VALUE)),
            ("put (overwrite)", put_key, lambda i: db.put(KEY % i, VALUE)),
            ("delete (present)", put_key, lambda i: db.delete(KEY % i)),
            ("delete (absent)", nothing, lambda i: db.delete(KEY % (absent + i))),
            ("write_batch([delete])", put_key, lambda i: db.write_batch([("delete", KEY % i)])),
            ("get_delete (present)", put_key, lambda i: db.get_delete(KEY % i)),
            ("get_delete (absent)", nothing, lambda i: db.get_delete(KEY % (absent + i))),
            ("incr (present)", counter, lambda i: db.incr(KEY % i)),
            ("incr (absent)", nothing, lambda i: db.incr(KEY % (absent + 200 + i))),
            ("expire", put_key, lambda i: db.expire(KEY % i, at_ms=far)),
            ("persist", ttl_key, lambda i: db.persist(KEY % i)),
        ]
        for name, prepare, op in cases:
            out[name] = _measure(db, prepare, op)
    return out


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m bench.opcodes", description=__doc__.splitlines()[0]
    )
    parser.add_argument("--json", action="store_true", help="print JSON, not a table")
    args = parser.parse_args(argv)
    counts = measure()
    if args.json:
        print(json.dumps(counts, indent=2))
        return 0
    width = max(map(len, counts))
    print(f"{'op':<{width}}  bytecodes")
    for name, n in counts.items():
        print(f"{name:<{width}}  {n:>9,}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
