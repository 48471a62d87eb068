"""Scenarios of tests/bitcask/test_crashpoints.py, and the child that runs one under strace.

    python tests/bitcask/_crashpoints_child.py SCENARIO STORE ACKS

Strategy: the parent builds each scenario's starting store (``Scenario.setup``, run
in the test process, untraced), copies it for every kill point, and starts this
child. The child imports everything, says ``ready`` on stdout and waits for one byte
on stdin; meanwhile the parent attaches ``strace -f -p PID -e
inject=CALL:signal=SIGKILL:when=N`` (or ``error=EIO``) and then sends the byte.
strace counts calls per call name and per process or thread from the moment it
attaches, so ``when=N`` names the N-th call of the operation itself (in whichever
thread first makes N of them), never one of the interpreter's start-up.

Acknowledgements go to the file ACKS, one ``os.write`` per line (O_APPEND, no
user-space buffer): ``? I`` before step I is called, ``! I`` after it returned,
``x I NAME`` when it raised the exception NAME. A step's effects (key -> value, or
None for absent) are known to both sides from ``SCENARIOS``; the parent replays the
acknowledged steps into a model of the store.
"""

from __future__ import annotations

import ctypes
import os
import shutil
import sys
import traceback
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

import bitcask

Effects = dict[bytes, bytes | None]
Model = dict[bytes, bytes | None]

# The far-future clock of the expiry scenario: every TTL the setup gave has passed.
LATER = 4_000_000_000.0


@dataclass
class Step:
    """One call of a scenario: what it does and what it changes once acknowledged."""

    kind: str  # put | delete | batch | group | merge | backup | close | expire | repair | reopen
    args: tuple[Any, ...] = ()
    effects: Effects = field(default_factory=dict)
    atomic: bool = True  # on a crash inside it: all of effects or none (else key by key)


@dataclass
class Scenario:
    """A starting store, the options the child opens it with, and its steps."""

    name: str
    setup: Callable[[str], Model]  # build the starting store at STORE; return its contents
    steps: list[Step]
    options: dict[str, Any] = field(default_factory=dict)
    fresh: bool = False  # the step list starts on a directory that does not exist
    clock: float | None = None  # the child's (and the oracle's) fixed clock, if any


def v(key: bytes, tag: str, n: int = 40) -> bytes:
    """A value that names its key and version, and has a length (no torn value passes)."""
    body = key + b"=" + tag.encode()
    return body + b"." * max(0, n - len(body))


def _fill(path: str, keys: int, *, versions: int = 1, size: int = 60, **opts: Any) -> Model:
    model: Model = {}
    with bitcask.open(path, sync="never", **opts) as db:
        for ver in range(versions):
            for i in range(keys):
                k = b"k%02d" % i
                db.put(k, v(k, f"old{ver}", size))
                model[k] = v(k, f"old{ver}", size)
        if versions > 1:  # garbage to merge: some deletes too
            for i in range(0, keys, 5):
                db.delete(b"k%02d" % i)
                model[b"k%02d" % i] = None
    return model


def setup_empty(path: str) -> Model:
    return {}


def setup_ten(path: str) -> Model:
    return _fill(path, 10)


def setup_garbage(path: str) -> Model:
    return _fill(path, 12, versions=3, size=100, max_file_size=1024)


def setup_crashed(path: str) -> Model:
    # A writer killed mid-append: flagged active file, zero tail, a torn record after
    # the last whole one (what the next writer open truncates).
    model = _fill(path, 6)
    db = bitcask.open(path, sync="never")
    db.put(b"k00", v(b"k00", "last"))
    model[b"k00"] = v(b"k00", "last")
    off, fid = db.files.offset, db.files.active_id
    db._abandon()
    name = os.path.join(path, f"{fid:010d}.data")
    with open(name, "r+b") as f:
        f.seek(off)
        f.write(b"\x12\x34\x56\x78\x00" + b"\x01" * 20)  # half a record header
    return model


def setup_damaged(path: str) -> Model:
    # One flipped byte inside a value of a sealed file: repair quarantines it and
    # tombstones its key (absent); before the repair it answers CorruptRecordError.
    model = _fill(path, 8)
    name = os.path.join(path, "0000000001.data")
    data = bytearray(Path(name).read_bytes())
    at = 16 + 3 * (29 + 3 + 60) + 29 + 3 + 10  # inside k03's value
    data[at] ^= 0xFF
    Path(name).write_bytes(bytes(data))
    for hint in Path(path).glob("*.hint"):
        hint.unlink()
    model[b"k03"] = None  # "absent or corrupt": see the oracle's ``damaged``
    return model


def setup_damaged_small(path: str) -> Model:
    # As setup_damaged, but the damaged value is 4 bytes, so the tombstone repair
    # writes in its place has the record's size and the rewritten file the old one's;
    # and the file keeps the hint its writer wrote (it describes the damaged file).
    model = _fill(path, 8)
    with bitcask.open(path, sync="never") as db:
        db.put(b"k08", b"abcd")
    name = os.path.join(path, "0000000002.data")
    data = bytearray(Path(name).read_bytes())
    data[16 + 29 + 3 + 1] ^= 0xFF  # inside k08's value
    Path(name).write_bytes(bytes(data))
    model[b"k08"] = None
    return model


def setup_expiring(path: str) -> Model:
    model: Model = {}
    with bitcask.open(path, sync="never") as db:
        for i in range(8):
            k = b"k%02d" % i
            db.put(k, v(k, "old"), ttl=60.0 if i % 2 else None)
            model[k] = None if i % 2 else v(k, "old")
    return model


def _writes(tag: str) -> list[Step]:
    k = [b"k%02d" % i for i in range(10)]
    return [
        Step("put", (k[0], v(k[0], tag)), {k[0]: v(k[0], tag)}),
        Step("delete", (k[1],), {k[1]: None}),
        Step(
            "batch",
            ([("put", k[2], v(k[2], tag)), ("delete", k[3]), ("put", b"n1", v(b"n1", tag))],),
            {k[2]: v(k[2], tag), k[3]: None, b"n1": v(b"n1", tag)},
        ),
        Step(
            "group",
            ([[("put", k[4], v(k[4], tag))], [("put", k[5], v(k[5], tag)), ("delete", k[6])]],),
            {k[4]: v(k[4], tag), k[5]: v(k[5], tag), k[6]: None},
            atomic=False,
        ),
        Step("put", (k[7], v(k[7], tag, 3000)), {k[7]: v(k[7], tag, 3000)}),
        Step("close"),
    ]


def _rotations() -> list[Step]:
    steps = []
    for i in range(6):
        k = b"k%02d" % (i % 10)
        steps.append(Step("put", (k, v(k, f"r{i}", 400)), {k: v(k, f"r{i}", 400)}))
    steps.append(Step("close"))
    return steps


def _after(tag: str) -> list[Step]:
    return [Step("put", (b"after", v(b"after", tag)), {b"after": v(b"after", tag)}), Step("close")]


SCENARIOS: dict[str, Scenario] = {
    s.name: s
    for s in [
        Scenario("fresh", setup_empty, _after("fresh"), fresh=True),
        *(
            Scenario(f"writes-{sync}", setup_ten, _writes(sync), {"sync": sync})
            for sync in ("always", "interval", "never")
        ),
        Scenario("rotate", setup_ten, _rotations(), {"sync": "always", "max_file_size": 1024}),
        Scenario("recover", setup_crashed, _after("rec"), {"sync": "always"}),
        Scenario(
            "merge",
            setup_garbage,
            [Step("merge"), *_after("merged")],
            {"sync": "always", "max_file_size": 1024},
        ),
        Scenario("backup", setup_ten, [Step("backup"), Step("close")], {"sync": "always"}),
        Scenario("repair", setup_damaged, [Step("repair")]),
        Scenario("repair-small", setup_damaged_small, [Step("repair")]),
        Scenario(
            "expire",
            setup_expiring,
            [Step("expire"), *_after("exp")],
            {"sync": "always"},
            clock=LATER,
        ),
    ]
}


# The key each scenario's setup damaged (it answers CorruptRecordError until repaired).
DAMAGED = {"repair": b"k03", "repair-small": b"k08"}


def backup_dir(store: str) -> str:
    """Where the backup scenario writes its copy."""
    return store.rstrip("/") + "-backup"


def run(scenario: Scenario, store: str, ack: Callable[[str], None]) -> None:
    """Run the steps (in the forked child)."""
    opts = dict(scenario.options)
    clock = scenario.clock
    if clock is not None:
        opts["clock"] = lambda: clock
    db: bitcask.Bitcask | None = None
    if scenario.steps[0].kind != "repair":
        db = bitcask.open(store, **opts)
        ack("open")
    for i, step in enumerate(scenario.steps):
        ack(f"? {i}")
        try:
            _call(db, store, step)
        except Exception as exc:
            ack(f"x {i} {type(exc).__name__} {_where(exc)}")
            continue
        ack(f"! {i}")


def _where(exc: BaseException) -> str:
    """The innermost frame of the project that ``exc`` passed through: file:line."""
    frames = [f for f in traceback.extract_tb(exc.__traceback__) if "/bitcask/" in f.filename]
    return f"{Path(frames[-1].filename).name}:{frames[-1].lineno}" if frames else "?"


def _call(db: bitcask.Bitcask | None, store: str, step: Step) -> None:
    if step.kind == "repair":
        bitcask.repair(store)
        return
    assert db is not None
    if step.kind == "put":
        db.put(*step.args)
    elif step.kind == "delete":
        db.delete(*step.args)
    elif step.kind == "batch":
        db.write_batch(*step.args)
    elif step.kind == "group":
        results = db.write_group(*step.args)
        bad = [r for r in results if isinstance(r, BaseException)]
        if bad:
            raise bad[0]
    elif step.kind == "merge":
        db.merge()
    elif step.kind == "backup":
        db.backup(backup_dir(store))
    elif step.kind == "expire":
        db.expire_cycle(1000.0)
    elif step.kind == "close":
        db.close()
    else:
        raise ValueError(step.kind)


def main() -> int:
    name, store, acks = sys.argv[1:4]
    scenario = SCENARIOS[name]
    fd = os.open(acks, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)

    def ack(line: str) -> None:
        # An injected error meant for the engine may land on this write: try again
        # (strace fails only the N-th call).
        for _ in range(3):
            try:
                os.write(fd, (line + "\n").encode())
                return
            except OSError:
                continue

    _allow_tracer()
    os.write(1, b"ready\n")
    if os.read(0, 1) != b"g":  # the parent attached strace (or gave up)
        return 2
    try:
        run(scenario, store, ack)
    except Exception as exc:
        ack(f"x open {type(exc).__name__} {_where(exc)}")
        try:  # the failed open released the lock: this process opens the store again
            bitcask.open(store, **scenario.options).close()
        except Exception as exc:
            ack(f"x reopen {type(exc).__name__} {_where(exc)}")
        return 1
    return 0


def _allow_tracer() -> None:
    # Under Yama's ptrace_scope=1 only an ancestor may attach; strace is a sibling.
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(
            0x59616D61, ctypes.c_ulong(-1 & 0xFFFFFFFFFFFFFFFF), 0, 0, 0
        )  # PR_SET_PTRACER_ANY
    except (OSError, AttributeError):
        pass


def copy_store(src: str, dst: str) -> None:
    """Copy a starting store (or nothing, for a fresh one) to a run's directory."""
    if os.path.exists(src):
        shutil.copytree(src, dst)


if __name__ == "__main__":
    sys.exit(main())
