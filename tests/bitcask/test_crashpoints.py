"""Kill (or fail) the engine at each system call of each operation; nothing acknowledged is lost.

Strategy (the ALICE / CrashMonkey method, one system call at a time): each scenario of
tests/bitcask/_crashpoints_child.py (open of a fresh directory; put, delete,
write_batch and write_group under each sync policy; rotations; close; the open after
an unclean stop; merge; backup; repair; expiry) is first run once under
``strace -f -e trace=CALLS`` to count its calls per call name. Then, for every call
N of every name, a fresh copy of its starting store is handed to a child that strace
attaches to with ``-e inject=NAME:signal=SIGKILL:when=N`` (the process dies before
the call runs) or ``error=EIO`` / ``ENOSPC`` (the call fails), and the oracle runs:

- the store opens without manual action, twice, and every key answers its last
  acknowledged value, or, for the one step in flight (or one that raised), its
  value before or after that step (a batch all or nothing): never a torn value,
  never CORRUPT_RECORD, never a resurrected delete, never an older value;
- a merge and a backup then work, and leave no ``merge/``, ``*.tmp`` or
  ``*.repair`` behind; ``check`` finds nothing wrong;
- a failed call raised a documented error (StoreIOError, ReadOnlyError, or the
  OSError the call documents), never something else.

The suite runs a deterministic sample of the points (SAMPLE per scenario and mode,
spread evenly, plus the points where a defect was found: ``MUST``), within its
budget of 45 s. ``BITCASK_CRASH_SWEEP=1`` runs all of them (about 10 minutes on a
loaded 2-core machine): that is the full sweep; ``BITCASK_CRASH_MODES=kill`` (or
``error``) runs one mode. Needs strace (Debian package ``strace``):
skipped without it, a failure under CI=true.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import pytest

import bitcask
from tests.protocol._redis_server import require_binary

from ._crashpoints_child import DAMAGED, SCENARIOS, Model, Scenario, Step, backup_dir, copy_store

CHILD = Path(__file__).with_name("_crashpoints_child.py")
FULL = os.environ.get("BITCASK_CRASH_SWEEP", "") not in ("", "0")
SAMPLE = 3  # the suite runs SAMPLE points of each scenario and mode, spread evenly
# ... and these, where the sweep found a defect (a kill or failure at that call).
MUST = {
    ("backup", "kill"): [("rename", 1), ("write", 5)],
    ("repair", "kill"): [("rename", 1)],
    ("repair-small", "kill"): [("unlink", 1)],
    ("writes-always", "error"): [("ftruncate", 1), ("openat", 14)],
}
TIMEOUT = 30.0

# The calls that change files (or may fail for lack of space), swept one by one.
CALLS = (
    "openat",
    "write",
    "pwrite64",
    "fsync",
    "fdatasync",
    "ftruncate",
    "fallocate",
    "rename",
    "renameat",
    "renameat2",
    "unlink",
    "unlinkat",
    "mkdir",
    "rmdir",
    "mmap",
)
# What an injected failure of each call may be: the errors the engine documents.
ERRORS = {"fallocate": "ENOSPC", "write": "ENOSPC", "pwrite64": "ENOSPC"}
WRITE_ERRORS = {"StoreIOError", "ReadOnlyError"}
# What each step may raise when one of its calls fails: writes their documented
# errors; merge, backup and repair, which copy files, the OSError of the call too.
DOCUMENTED = {
    "put": WRITE_ERRORS,
    "delete": WRITE_ERRORS,
    "batch": WRITE_ERRORS,
    "group": WRITE_ERRORS,
    "expire": WRITE_ERRORS,
    "close": set(),
    "merge": WRITE_ERRORS | {"OSError"},
    "backup": WRITE_ERRORS | {"OSError"},
    "repair": {"OSError"},
}


def strace() -> str:
    return require_binary("strace", "strace")


@dataclass
class Outcome:
    """What one run of a scenario's child said and how it ended."""

    acked: list[int] = field(default_factory=list)
    failed: dict[int, str] = field(default_factory=dict)  # step -> exception name
    where: dict[int, str] = field(default_factory=dict)  # step (-1: open) -> file:line
    reopen_error: str | None = None  # the same process could not open after a failed open
    in_flight: int | None = None
    opened: bool = False
    open_error: str | None = None
    returncode: int = 0
    injected: bool = False


def run_child(scenario: Scenario, store: str, tmp: Path, inject: str | None, tag: str) -> Outcome:
    """Run ``scenario`` on ``store`` under strace (``inject``: an -e inject= value)."""
    acks = tmp / f"{tag}.acks"
    log = tmp / f"{tag}.strace"
    child = subprocess.Popen(
        [sys.executable, str(CHILD), scenario.name, store, str(acks)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
    )
    assert child.stdin is not None and child.stdout is not None
    try:
        assert child.stdout.readline() == b"ready\n"
        cmd = [strace(), "-f", "-o", str(log), "-e", "trace=" + ",".join(CALLS)]
        if inject is not None:
            cmd += ["-e", "inject=" + inject]
        cmd += ["-p", str(child.pid)]
        tracer = subprocess.Popen(cmd, stderr=subprocess.PIPE)
        assert tracer.stderr is not None
        line = tracer.stderr.readline()
        assert b"attached" in line, line
        child.stdin.write(b"g")
        child.stdin.close()
        rc = child.wait(TIMEOUT)
        tracer.wait(TIMEOUT)
        tracer.stderr.close()
    finally:
        if child.poll() is None:
            child.kill()
            child.wait()
        child.stdout.close()
    out = Outcome(returncode=rc)
    text = log.read_text(errors="replace")
    out.injected = "INJECTED" in text or "killed by SIGKILL" in text
    for line in acks.read_text().splitlines() if acks.exists() else []:
        parts = line.split()
        if parts[0] == "open":
            out.opened = True
        elif parts[0] == "?":
            out.in_flight = int(parts[1])
        elif parts[0] == "!":
            out.acked.append(int(parts[1]))
            out.in_flight = None
        elif parts[:2] == ["x", "open"]:
            out.open_error = parts[2]
            out.where[-1] = parts[3]
        elif parts[:2] == ["x", "reopen"]:
            out.reopen_error = f"{parts[2]} at {parts[3]}"
        elif parts[0] == "x":
            out.failed[int(parts[1])] = parts[2]
            out.where[int(parts[1])] = parts[3]
            out.in_flight = None
    return out


def count_calls(scenario: Scenario, template: str, tmp: Path) -> Counter[str]:
    """How many calls of each name the scenario makes, in its busiest process or thread."""
    store = str(tmp / "count")
    copy_store(template, store)
    out = run_child(scenario, store, tmp, None, "count")
    assert out.returncode == 0 and not out.failed, out
    per: Counter[tuple[str, str]] = Counter()
    for line in (tmp / "count.strace").read_text().splitlines():
        m = re.match(r"(\d+) +([a-z0-9_]+)\(", line)
        if m and m.group(2) in CALLS:
            per[m.group(1), m.group(2)] += 1
    most: Counter[str] = Counter()
    for (_pid, name), n in per.items():
        most[name] = max(most[name], n)
    shutil.rmtree(store, ignore_errors=True)
    shutil.rmtree(backup_dir(store), ignore_errors=True)
    return most


def expected(scenario: Scenario, start: Model, out: Outcome) -> tuple[Model, list[Step]]:
    """The model after the acknowledged steps, and the steps whose fate is open."""
    model = dict(start)
    open_steps = []
    for i, step in enumerate(scenario.steps):
        if i in out.acked:
            model.update(step.effects)
        elif i in out.failed or i == out.in_flight:
            open_steps.append(step)
    return model, open_steps


def allowed(model: Model, open_steps: list[Step]) -> dict[bytes, set[bytes | None]]:
    """Each key's acceptable answers."""
    keys = set(model)
    for step in open_steps:
        keys |= set(step.effects)
    ok = {k: {model.get(k)} for k in keys}
    for step in open_steps:
        for k, val in step.effects.items():
            ok[k].add(val)
    return ok


def verify(
    scenario: Scenario, store: str, start: Model, out: Outcome, damaged: set[bytes]
) -> list[str]:
    """The oracle; returns what is wrong (empty: nothing)."""
    errors: list[str] = []
    model, open_steps = expected(scenario, start, out)
    ok = allowed(model, open_steps)
    opts = {k: val for k, val in scenario.options.items() if k != "sync"}
    clock = scenario.clock
    if clock is not None:
        opts["clock"] = lambda: clock
    if not os.path.isdir(store):
        if model:
            errors.append("store directory missing")
        return errors
    for attempt in range(2):
        try:
            db = bitcask.open(store, sync="never", **opts)
        except Exception as exc:
            return [*errors, f"open #{attempt + 1}: {exc!r}"]
        try:
            rec = db.recovery
            if rec.corrupt_records and not damaged:
                errors.append(f"open #{attempt + 1}: {rec}")
            for k, answers in ok.items():
                try:
                    got = db.get(k)
                except bitcask.CorruptRecordError as exc:
                    if k not in damaged or not _damage_left(store):
                        errors.append(f"open #{attempt + 1}: get {k!r}: {exc!r}")
                    continue
                if got not in answers:
                    errors.append(f"open #{attempt + 1}: get {k!r} = {got!r}, want {answers}")
            extra = set(db.keys()) - set(ok)
            if extra:
                errors.append(f"open #{attempt + 1}: unexpected keys {sorted(extra)}")
            if attempt == 1:
                db.merge()
                dest = store + "-check-backup"
                db.backup(dest)
                shutil.rmtree(dest)
        finally:
            db.close()
    stray = [
        p.name
        for p in Path(store).iterdir()
        if p.name == "merge" or p.name.endswith((".tmp", ".repair", ".corrupt"))
    ]
    if stray:
        errors.append(f"left behind: {stray}")
    report = bitcask.check(store)
    if not report.ok and not damaged:
        errors.append(f"check: {report}")
    if scenario.name == "backup":
        errors += verify_backup(store, backup_dir(store), model)
    for i, name in out.failed.items():
        if name not in DOCUMENTED[scenario.steps[i].kind]:
            errors.append(f"step {i} ({scenario.steps[i].kind}) raised {name} at {out.where[i]}")
    if out.open_error is not None and out.open_error not in {"OSError", "StoreIOError"}:
        errors.append(f"open raised {out.open_error} at {out.where[-1]}")
    if out.reopen_error is not None:
        errors.append(f"open failed, then the same process could not open: {out.reopen_error}")
    return errors


def _damage_left(store: str) -> bool:
    """Whether a data file of ``store`` still holds a record that fails its check."""
    return bool(bitcask.check(store).problems)


def verify_backup(store: str, dest: str, model: Model) -> list[str]:
    """A backup directory is absent, empty, or a whole copy: never a part of one. A
    backup to the same place then works and leaves no staging directory behind."""
    want = {k: val for k, val in model.items() if val is not None}
    if os.path.isdir(dest) and os.listdir(dest):
        try:
            with bitcask.open(dest, readonly=True) as db:
                got = {k: db.get(k) for k in sorted(db.keys())}
        except Exception as exc:
            return [f"backup does not open: {exc!r}"]
        if got != want:
            missing = sorted(set(want) - set(got))
            return [f"backup {os.listdir(dest)} holds {len(got)} keys, missing {missing}"]
        shutil.rmtree(dest)
    with bitcask.open(store, sync="never") as db:
        db.backup(dest)
    with bitcask.open(dest, readonly=True) as db:
        got = {k: db.get(k) for k in sorted(db.keys())}
    parent, name = os.path.split(dest)
    stages = [e for e in os.listdir(parent) if e.startswith(f".{name}.backup-")]
    errors = [f"staging directories left: {stages}"] if stages else []
    if got != want:
        errors.append(f"the next backup holds {len(got)} keys, want {len(want)}")
    return errors


def points(counts: Counter[str], full: bool, must: list[tuple[str, int]]) -> list[tuple[str, int]]:
    """Every point, or SAMPLE spread evenly over them plus the ``must`` ones."""
    every = [(name, i) for name in sorted(counts) for i in range(1, counts[name] + 1)]
    if full or len(every) <= SAMPLE:
        return every
    picked = {every[round(j * (len(every) - 1) / (SAMPLE - 1))] for j in range(SAMPLE)}
    picked |= {p for p in must if p in every}
    return sorted(picked)


def sweep(
    scenario: Scenario, tmp: Path, modes: tuple[str, ...], full: bool
) -> tuple[dict[str, int], list[str]]:
    """Run the points of ``scenario`` in each mode ("kill", "error"); (points per mode,
    failures)."""
    template = str(tmp / "template")
    start = scenario.setup(template) if not scenario.fresh else {}
    damaged = {DAMAGED[scenario.name]} if scenario.name in DAMAGED else set()
    counts = count_calls(scenario, template, tmp)
    failures = []
    swept = {}
    for mode in modes:
        if mode == "error":
            # mmap also allocates thread stacks and interpreter memory: a failure
            # there hangs CPython's Thread.start (MemoryError in the new thread
            # before it says it started), not the engine. Killed, it is swept.
            counts = Counter({k: n for k, n in counts.items() if k != "mmap"})
        pts = points(counts, full, MUST.get((scenario.name, mode), []))
        swept[mode] = len(pts)
        for name, n in pts:
            store = str(tmp / f"{mode}-{name}-{n}")
            copy_store(template, store)
            if mode == "kill":
                inject = f"{name}:signal=SIGKILL:when={n}"
            else:
                inject = f"{name}:error={ERRORS.get(name, 'EIO')}:when={n}"
            out = run_child(scenario, store, tmp, inject, f"{mode}-{name}-{n}")
            errs = verify(scenario, store, start, out, damaged)
            if errs:
                failures.append(f"{scenario.name} {mode} {name}#{n}: " + "; ".join(errs))
            shutil.rmtree(store, ignore_errors=True)
            shutil.rmtree(backup_dir(store), ignore_errors=True)
    return swept, failures


@pytest.mark.parametrize("name", sorted(SCENARIOS))
def test_every_crash_point(name: str, tmp_path: Path) -> None:
    strace()
    modes = tuple(
        m for m in ("kill", "error") if m in os.environ.get("BITCASK_CRASH_MODES", "kill,error")
    )
    swept, failures = sweep(SCENARIOS[name], tmp_path, modes, FULL)
    print(f"{name}: {swept} points, {len(failures)} failures")
    assert not failures, "\n".join(failures)
