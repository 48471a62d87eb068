"""A repair killed part way and run again finishes the job once: one quarantine copy.

Strategy: the crash-point harness of test_crashpoints.py (strace attached to a child,
``-e inject=CALL:signal=SIGKILL:when=N``) kills ``bitcask.repair`` before its N-th
call of a name; then repair runs again in this process, and the oracle holds:

- quarantine/ holds exactly one ``.bad``/``.json`` pair per damaged data file, with
  the bytes and index an uninterrupted repair writes, and no ``.tmp`` file;
- a rerun that finds the file not yet replaced reports the same dropped ranges and
  tombstoned keys as an uninterrupted repair, and names that same copy;
- afterwards ``check`` is OK, the damaged key is absent, every other key keeps its
  value, and a third repair changes nothing.

The suite kills before each rename of both repair scenarios (SAMPLE). ``BITCASK_REPAIR_SWEEP=1`` kills at every
call of CALLS of both repair scenarios (run once: see the module's report in the
commit). Needs strace (Debian package ``strace``): skipped without it, a failure
under CI=true.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

import bitcask

from ._crashpoints_child import DAMAGED, SCENARIOS, copy_store
from .test_crashpoints import CALLS, count_calls, run_child, strace

FULL = os.environ.get("BITCASK_REPAIR_SWEEP", "") not in ("", "0")
# The suite kills before each rename (the .bad copy, its index, the rewritten file,
# the hint): the steps a rerun must pick up from.
SAMPLE = ("rename",)


def _quarantine(store: Path) -> dict[str, bytes]:
    q = store / "quarantine"
    return {p.name: p.read_bytes() for p in sorted(q.iterdir())} if q.is_dir() else {}


def _pairs(files: dict[str, bytes]) -> list[tuple[str, bytes, bytes]]:
    """(data file, .bad bytes, .json bytes) per copy, the UTC time left out."""
    out = []
    for name, blob in files.items():
        if name.endswith(".bad"):
            data = name.split(".data.")[0] + ".data"
            out.append((data, blob, files.get(name[: -len(".bad")] + ".json", b"")))
    return sorted(out)


def _points(scenario: str, template: str, tmp: Path) -> list[tuple[str, int]]:
    counts = count_calls(SCENARIOS[scenario], template, tmp)
    names = CALLS if FULL else SAMPLE
    return [(name, n) for name in names for n in range(1, counts[name] + 1)]


@pytest.mark.parametrize("scenario", ["repair", "repair-small"])
def test_repair_killed_and_rerun_quarantines_once(tmp_path: Path, scenario: str) -> None:
    strace()
    sc = SCENARIOS[scenario]
    template = str(tmp_path / "template")
    model = sc.setup(template)
    points = _points(scenario, template, tmp_path)
    ref_store = tmp_path / "reference"
    copy_store(template, str(ref_store))
    ref = bitcask.repair(ref_store)
    ref_copy = _pairs(_quarantine(ref_store))
    assert len(ref_copy) == len(ref.quarantined) == 1
    damaged = DAMAGED[scenario]
    failures = []
    for name, n in points:
        store = tmp_path / f"run-{name}-{n}"
        copy_store(template, str(store))
        out = run_child(sc, str(store), tmp_path, f"{name}:signal=SIGKILL:when={n}", f"{name}{n}")
        assert out.returncode != 0, f"{name}#{n}: the repair was not killed"
        again = bitcask.repair(store)
        got = _quarantine(store)
        errors = []
        if _pairs(got) != ref_copy:
            errors.append(f"quarantine {sorted(got)}")
        if again.dropped:  # the killed repair had not replaced the file yet
            if (again.dropped, again.tombstoned) != (ref.dropped, ref.tombstoned):
                errors.append(f"rerun reported {again}")
            if [os.path.basename(q) for q in again.quarantined] != [
                k for k in got if k.endswith(".bad")
            ]:
                errors.append(f"rerun names {again.quarantined}")
        report = bitcask.check(store)
        if not report.ok or report.missing_hints:
            errors.append(str(report))
        with bitcask.open(store, readonly=True) as db:
            values = {k: db.get(k) for k in model}
        if values != {**model, damaged: None}:
            errors.append(f"values {values}")
        if bitcask.repair(store).changed:
            errors.append("a third repair changed something")
        if errors:
            failures.append(f"{name}#{n} (killed={out.returncode != 0}): {errors}")
        shutil.rmtree(store)
    assert not failures, "\n".join(failures)
