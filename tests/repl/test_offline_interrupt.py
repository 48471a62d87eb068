"""Ctrl-C and SIGTERM in the middle of `bitcask merge DIR`, `repair DIR`, `check DIR`.

The real command runs as a process on a real store of a few dozen MB (many files,
so a repair has file boundaries to stop at); the signal is sent once the command is
seen working (the store's files mapped in /proc/PID/maps) and has written a given
part of its output (merge's files in merge/, repair's rebuilt hints). Then the whole state: exit status 128 + the signal, one line on stderr
saying what was interrupted and what is left, no traceback; the store opens for
writing (the lock is free), every key answers what it answered before, no merge
leftovers, and running the command again succeeds.

Before: merge and repair ran in a thread a Ctrl-C could not stop: the command went
on to the end (a whole merge of a 72 MB store: 1.2 s after the Ctrl-C) and then
exited 130 saying nothing of whether the store was merged; SIGTERM killed it at once
with no line (status -15).
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

import bitcask
from tests.repl.conftest import ROOT, TIMEOUT

KEYS = 25_000
ROUNDS = 3  # every key written three times: a merge drops two thirds
PAUSE = 0.05  # between the two signals of "SIGINT twice"


def _value(i: int) -> bytes:
    return b"r%d-%07d-" % (ROUNDS - 1, i) + b"v" * 200


@pytest.fixture(scope="module")
def pristine(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_store(tmp_path_factory.mktemp("offline") / "store")


def make_store(path: Path) -> Path:
    """~30 MB in 2 MiB files, with their hints, at `path`."""
    with bitcask.open(path, max_file_size=2 * 1024 * 1024) as db:
        for r in range(ROUNDS):
            for start in range(0, KEYS, 5000):
                db.write_batch(
                    [
                        ("put", b"k%07d" % i, b"r%d-%07d-" % (r, i) + b"v" * 200)
                        for i in range(start, start + 5000)
                    ]
                )
    return path


def _every_key_answers(path: Path) -> None:
    with bitcask.open(path) as db:  # for writing: the interrupted command let the lock go
        got = db.get_many(b"k%07d" % i for i in range(KEYS))
        wrong = [i for i, v in enumerate(got) if v != _value(i)]
        assert not wrong, f"{len(wrong)} keys answer otherwise, first k{wrong[0]:07d}"
        assert len(list(db.keys(b""))) == KEYS


def _reading(pid: int, path: Path) -> bool:
    """Whether the process has the store's files mapped: the command is at work."""
    try:
        return str(path) in Path(f"/proc/{pid}/maps").read_text()
    except OSError:
        return False


def _done(path: Path, command: str) -> float:
    """How far the command got, 0..1, from what it wrote so far (check writes nothing)."""
    if command == "merge":  # its output, against the live records' size
        sizes = [f.stat().st_size for f in (path / "merge").glob("*.data")]
        return sum(sizes) / (KEYS * len(_value(0))) if sizes else -1.0
    if command == "repair":  # hints rebuilt, one per data file, in file order
        return len(list(path.glob("*.hint"))) / len(list(path.glob("*.data")))
    return 0.0


def _interrupt(path: Path, command: str, sigs: tuple[int, ...], at: float) -> tuple[int, str]:
    """Run `command DIR`; once it has done `at` of its work, send `sigs`."""
    proc = subprocess.Popen(
        [sys.executable, "-m", "repl.cli", command, str(path)],
        cwd=ROOT,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        deadline = time.monotonic() + TIMEOUT
        while proc.poll() is None and not (_reading(proc.pid, path) and _done(path, command) >= at):
            assert time.monotonic() < deadline, f"{command} never got to {at:.0%}"
            time.sleep(0.002)
        for i, sig in enumerate(sigs):
            if i:
                time.sleep(PAUSE)
            proc.send_signal(sig)
        _, err = proc.communicate(timeout=TIMEOUT)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(10)
    return proc.returncode, err


INT, TERM = signal.SIGINT, signal.SIGTERM
# the signal at a point of the run given by what the command has written so far:
# bounded by progress, not by a delay a loaded or a fast machine would get wrong
CASES = [
    pytest.param("merge", (INT,), 0.0, id="merge-int-start"),
    pytest.param("merge", (TERM,), 0.3, id="merge-term-a-third"),
    pytest.param("merge", (INT, INT), 0.6, id="merge-int-twice-past-half"),
    pytest.param("repair", (INT,), 0.4, id="repair-int-part-way"),
    pytest.param("repair", (TERM, TERM), 0.0, id="repair-term-twice-start"),
    pytest.param("check", (TERM,), 0.0, id="check-term"),
]


@pytest.mark.parametrize(("command", "sigs", "at"), CASES)
def test_an_interrupted_offline_command_leaves_the_store_whole(
    pristine: Path, tmp_path: Path, command: str, sigs: tuple[int, ...], at: float
) -> None:
    path = tmp_path / "store"
    shutil.copytree(pristine, path)
    if command == "repair":  # every hint to rebuild: the repair has work in every file
        for hint in path.glob("*.hint"):
            hint.unlink()
    before = sorted(os.listdir(path))
    code, err = _interrupt(path, command, sigs, at)
    assert code == 128 + sigs[0], err
    assert "Traceback" not in err
    lines = err.splitlines()
    assert len(lines) == 1, err
    line = lines[0]
    if command == "merge":
        # stopped (its output deleted) or, when the signal came at the very end, done
        assert line in (
            f"merge of {path} interrupted: the store is as it was (run it again)",
        ) or line.startswith(f"merge of {path} interrupted after it had finished: "), line
        if "as it was" in line:
            assert set(before) <= set(os.listdir(path))  # plus the new, empty active file
    elif command == "repair":
        assert line.startswith(f"repair of {path} interrupted"), line
        assert line.endswith("run it again") or "after it had finished" in line, line
    else:
        assert line == f"check of {path} interrupted: nothing was changed (it only reads)"
        assert sorted(os.listdir(path)) == before
    assert not (path / "merge").exists()
    assert not [n for n in os.listdir(path) if n.startswith(".") or "repair" in n]
    _every_key_answers(path)
    again = subprocess.run(
        [sys.executable, "-m", "repl.cli", command, str(path)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=TIMEOUT,
    )
    assert again.returncode == 0, again.stderr
    checked = bitcask.check(path)
    assert checked.ok and not checked.missing_hints, checked


def test_the_lines_for_a_stop_that_came_too_late_and_for_a_stop_in_time(tmp_path: Path) -> None:
    # the race the processes above rarely hit: the signal after the last record
    from repl._offline import _MergeStopper, _RepairStopper

    path = tmp_path / "small"
    with bitcask.open(path) as db:
        db.put(b"a", b"1")
        db.put(b"a", b"2")
    merge = _MergeStopper()
    done = merge(str(path), lambda _done, _total: None)
    merge.stop()  # after the end: changes nothing
    assert merge.line("merge", str(path), done, None).startswith(
        f"merge of {path} interrupted after it had finished: "
    )
    stopped = _MergeStopper()
    stopped.stop()  # before the store opened: the merge never starts
    with pytest.raises(bitcask.StoreClosedError) as err:
        stopped(str(path), lambda _done, _total: None)
    assert stopped.line("merge", str(path), None, err.value) == (
        f"merge of {path} interrupted: the store is as it was (run it again)"
    )
    repair = _RepairStopper()
    repair.stop()
    report = repair(str(path))
    assert report.not_examined and not report.hints_rebuilt
    assert repair.line("repair", str(path), report, None).endswith("; run it again")
    with bitcask.open(path) as db:
        assert db.get(b"a") == b"2"
