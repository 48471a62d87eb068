"""`bitcask check DIR` beside a running server, as docs/operations.md allows.

The report: `bitcask check /data` while the server merged (every few seconds under a
steady write load) failed about one run in four with
`(error) 127.0.0.1:7379: No such file or directory`, exit 2: a data file listed at the
start was deleted by the merge before check reached it, and the CLI described the
OSError as a connection failure to a server check never talks to.
"""

from __future__ import annotations

import importlib
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

import bitcask

# the module (bitcask.check, the name, is the function it re-exports)
check_module = importlib.import_module("bitcask.check")

WAIT = 60.0


def make_store(path: Path, files: int = 4) -> None:
    with bitcask.open(path, max_file_size=4096, merge_trigger=0) as db:
        i = 0
        while len(list(path.glob("*.data"))) <= files:
            db.put(b"k%05d" % i, b"v" * 100)
            i += 1


def test_a_file_merged_away_during_check_is_skipped(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    store = tmp_path / "store"
    make_store(store)
    victim = sorted(store.glob("*.data"))[1]
    real_map = check_module.map_file

    def merge_deletes_it_first(path: str) -> Any:
        # what a server's merge does between check's listing and its turn on the file
        if path == str(victim) and victim.exists():
            victim.unlink()
            victim.with_suffix(".hint").unlink()
        return real_map(path)

    monkeypatch.setattr(check_module, "map_file", merge_deletes_it_first)
    report = bitcask.check(store)
    assert report.ok, report
    assert report.missing_hints == ()
    assert report.files == len(list(store.glob("*.data")))


def test_a_hint_merged_away_after_its_data_file_was_read(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    store = tmp_path / "store"
    make_store(store)
    victim = sorted(store.glob("*.data"))[1]
    real_map = check_module.map_file

    def merge_deletes_it_after(path: str) -> Any:
        mm = real_map(path)
        if path == str(victim):
            victim.unlink()
            victim.with_suffix(".hint").unlink()
        return mm

    monkeypatch.setattr(check_module, "map_file", merge_deletes_it_after)
    report = bitcask.check(store)
    assert report.ok and report.missing_hints == (), report


def test_an_unreadable_file_is_named_not_the_server(tmp_path: Path) -> None:
    store = tmp_path / "store"
    make_store(store, files=1)
    (store / "0000000009.data").mkdir()  # os.open succeeds, reading it is EISDIR
    result = subprocess.run(
        [sys.executable, "-m", "repl.cli", "check", str(store)],
        capture_output=True,
        text=True,
        timeout=WAIT,
    )
    assert result.returncode == 2, result.stdout + result.stderr
    assert result.stderr == f"(error) check {store}: Is a directory\n"
    assert "7379" not in result.stderr
