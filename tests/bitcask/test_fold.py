"""The fold of small files: a store opened once per run, or backed up often, keeps a
bounded number of files, and every key keeps its answer through the folds.

Every open, backup and merge seals the active file however little it holds; without
the fold, 2,000 runs of open, put, close left 4,000 files (bitcask/merge.py).
"""

from __future__ import annotations

import os
import time
from pathlib import Path

import pytest

import bitcask
from bitcask import merge
from bitcask._datafile import list_data_files

MAX_FILE = 64 * 1024  # small files are those under 8 KiB
BIG = b"B" * 2000  # the first run's values: its file is not small


def _expected_after_runs(runs: int) -> dict[bytes, bytes | None]:
    # What _run(i) for i < runs leaves: the model every key is checked against.
    model: dict[bytes, bytes | None] = {b"big%02d" % j: BIG for j in range(20)}
    for i in range(1, runs):
        model[b"run%03d" % i] = b"v%d" % i
        model[b"shared"] = b"s%d" % i
        if i % 7 == 0:
            model[b"big%02d" % (i // 7)] = None  # deleted: its value is in the big file
        if i % 11 == 0:
            model[b"run%03d" % (i - 1)] = None
    return model


def _run(db: bitcask.Bitcask, i: int) -> None:
    # One run of a script: a few writes, some overwrites and deletes.
    if i == 0:
        for j in range(20):
            db.put(b"big%02d" % j, BIG)
        return
    db.put(b"run%03d" % i, b"v%d" % i)
    db.put(b"shared", b"s%d" % i)
    if i % 7 == 0:
        assert db.delete(b"big%02d" % (i // 7))
    if i % 11 == 0:
        assert db.delete(b"run%03d" % (i - 1))


def _check(db: bitcask.Bitcask, model: dict[bytes, bytes | None]) -> None:
    answers = {key: db.get(key) for key in model}
    assert answers == model
    assert len(db) == sum(v is not None for v in model.values())


def _open(path: Path, **kw: object) -> bitcask.Bitcask:
    return bitcask.open(path, sync="never", max_file_size=MAX_FILE, **kw)  # type: ignore[arg-type]


def test_a_store_opened_once_per_run_keeps_few_files_and_every_answer(tmp_path: Path) -> None:
    runs = 80
    most = 0
    for i in range(runs):
        with _open(tmp_path) as db:
            most = max(most, len(list_data_files(str(tmp_path))))
            _run(db, i)
    # Without the fold: one file per run (80). With it: at most the 15 small files
    # below the threshold, the big file, this run's, and a fold's output and cut.
    assert most <= merge.SMALL_FILES_FOLD + 4, most
    model = _expected_after_runs(runs)
    with _open(tmp_path) as db:
        _check(db, model)
        assert db.merges.count >= 1 or len(list_data_files(str(tmp_path))) < 20
    # The scan path agrees (no hints): deletes of values in the big file stay deletes.
    for name in os.listdir(tmp_path):
        if name.endswith(".hint"):
            os.unlink(tmp_path / name)
    with bitcask.open(tmp_path, readonly=True) as db:
        _check(db, model)
    with _open(tmp_path) as db:
        _check(db, model)
        db.merge()
        _check(db, model)
    with _open(tmp_path) as db:
        _check(db, model)


def test_merge_trigger_zero_turns_the_fold_off(tmp_path: Path) -> None:
    runs = 30
    for i in range(runs):
        with _open(tmp_path, merge_trigger=0) as db:
            _run(db, i)
    assert len(list_data_files(str(tmp_path))) == runs
    with _open(tmp_path, merge_trigger=0) as db:
        _check(db, _expected_after_runs(runs))


def test_larger_small_files_are_folded_in_the_background(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Over FOLD_AT_OPEN_BYTES the open does not wait: the worker folds them.
    runs = 24
    with monkeypatch.context() as m:
        m.setattr(merge, "FOLD_AT_OPEN_BYTES", 0)
        for i in range(runs):
            with _open(tmp_path, merge_trigger=0) as db:  # no fold while building
                _run(db, i)
        before = len(list_data_files(str(tmp_path)))
        assert before == runs
        with _open(tmp_path) as db:
            deadline = time.monotonic() + 30
            while db.merges.count == 0 and time.monotonic() < deadline:
                _check(db, _expected_after_runs(runs))  # reads go on meanwhile
                time.sleep(0.01)
            assert db.merges.count == 1, db.merges.last_error
            _check(db, _expected_after_runs(runs))
    assert len(list_data_files(str(tmp_path))) < before - merge.SMALL_FILES_FOLD + 3
    with _open(tmp_path) as db:
        _check(db, _expected_after_runs(runs))


def test_backups_of_a_quiet_store_do_not_pile_up_files(tmp_path: Path) -> None:
    # Each backup seals the active file; the rotation's hook folds the small ones.
    data = tmp_path / "data"
    model = _expected_after_runs(1)
    most = 0
    with _open(data) as db:
        _run(db, 0)
        for i in range(60):
            db.put(b"tick", b"%d" % i)
            model[b"tick"] = b"%d" % i
            db.backup(tmp_path / f"b{i}")
            most = max(most, len(list_data_files(str(data))))
        deadline = time.monotonic() + 30
        while db.merges.running and time.monotonic() < deadline:
            time.sleep(0.01)
        _check(db, model)
        assert db.merges.last_error is None
    assert most <= 2 * merge.SMALL_FILES_FOLD + 4, most
    with _open(data) as db:
        _check(db, model)
    with bitcask.open(tmp_path / "b59", readonly=True) as copy:
        _check(copy, model)


def test_an_interrupted_fold_at_open_leaves_the_store_as_it_was(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    runs = 20
    for i in range(runs):
        with _open(tmp_path, merge_trigger=0) as db:
            _run(db, i)
    files = list_data_files(str(tmp_path))

    def interrupted(phase: str) -> None:
        if phase == "copied":
            raise KeyboardInterrupt

    with monkeypatch.context() as m:
        m.setattr(merge, "crash_point", interrupted)
        with pytest.raises(KeyboardInterrupt):
            _open(tmp_path)
    # The lock was let go, nothing was lost, the files are those of before plus the
    # interrupted open's own (empty) active file; the next open folds.
    assert set(files) <= set(list_data_files(str(tmp_path)))
    assert not os.path.exists(tmp_path / merge.MERGE_DIR)
    with _open(tmp_path) as db:
        assert db.merges.count == 1
        _check(db, _expected_after_runs(runs))
    assert len(list_data_files(str(tmp_path))) < len(files)
