"""Leftovers that are not damage: `check` lists them as notes, open and repair delete them.

A repair killed (SIGKILL, in a child process) between writing a file's clean copy
(`<data file>.repair`) and renaming it over the file left the copy behind, and a hint
whose data file was removed (by hand) stayed forever: `check` said OK and named
neither. Worse, such a hint took the number of the next data file a writer created,
and a check beside that writer called the healthy store damaged (a bad hint). Now
check lists both as notes (`ok` is unchanged by them) saying what to do, and a writer
open or a repair deletes them (`RepairReport.removed`).
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import bitcask
from bitcask._datafile import FILE_HEADER_SIZE

KILL_AT_RENAME = """
import os, signal, sys
import bitcask
real = os.replace
def replace(src, dst, *args, **kwargs):
    if str(src).endswith(".repair"):  # the clean copy is written, not renamed yet
        os.kill(os.getpid(), signal.SIGKILL)
    return real(src, dst, *args, **kwargs)
os.replace = replace
bitcask.repair(sys.argv[1])
"""


def _store(path: Path) -> None:
    with bitcask.open(path, max_file_size=4096) as db:
        for i in range(100):
            db.put(b"k%03d" % i, b"v" * 100)


def test_a_killed_repairs_copy_is_a_note_and_goes_at_the_next_repair(tmp_path: Path) -> None:
    store = tmp_path / "db"
    _store(store)
    first = store / "0000000001.data"
    with open(first, "r+b") as f:  # one damaged record: repair rewrites this file
        f.seek(FILE_HEADER_SIZE + 40)
        byte = f.read(1)
        f.seek(FILE_HEADER_SIZE + 40)
        f.write(bytes([byte[0] ^ 0xFF]))
    done = subprocess.run(
        [sys.executable, "-c", KILL_AT_RENAME, str(store)], timeout=60, check=False
    )
    assert done.returncode == -signal.SIGKILL
    copy = store / "0000000001.data.repair"
    assert copy.exists()

    report = bitcask.check(store)
    assert len(report.problems) == 1  # the damage, still there
    assert report.notes == (
        "0000000001.data.repair: a copy left by a repair that was stopped before its"
        " rename (not damage; 0000000001.data is the file in use): the next writer open"
        " or `bitcask repair` deletes it, or delete it by hand while no repair runs",
    )
    assert report.to_dict()["notes"] == list(report.notes)
    text = str(report)
    assert text.splitlines()[0].endswith(", 1 notes")
    assert "  note: 0000000001.data.repair: a copy left by a repair" in text

    repaired = bitcask.repair(store)
    assert repaired.removed == ("0000000001.data.repair",)
    assert "  removed leftover 0000000001.data.repair" in str(repaired)
    assert not copy.exists()
    after = bitcask.check(store)
    assert after.ok and after.notes == ()


def test_a_hint_without_its_data_file_is_a_note(tmp_path: Path) -> None:
    store = tmp_path / "db"
    _store(store)
    os.remove(store / "0000000002.data")  # removed by hand
    report = bitcask.check(store)
    assert report.ok  # not damage
    assert report.notes == (
        "0000000002.hint: a hint whose data file 0000000002.data is gone (removed by"
        " hand, or by a merge not finished yet; not damage, nothing reads it): the next"
        " writer open or `bitcask repair` deletes it, or delete it by hand",
    )
    repaired = bitcask.repair(store)
    assert repaired.removed == ("0000000002.hint",) and repaired.changed
    assert not (store / "0000000002.hint").exists()
    assert bitcask.check(store).notes == ()


def test_a_writer_open_deletes_an_orphan_hint_before_its_number_is_reused(
    tmp_path: Path,
) -> None:
    store = tmp_path / "db"
    _store(store)
    last = max(int(p.name[:10]) for p in store.glob("*.data"))
    os.remove(store / f"{last:010d}.data")  # the newest: its number comes back
    assert bitcask.check(store).ok
    with bitcask.open(store, max_file_size=4096) as db:
        db.put(b"new", b"x")
        beside = bitcask.check(store)  # beside the running writer
        # was: PROBLEMS, "hint covers 1336 bytes, data file has 4096" (the stale hint)
        assert beside.ok, str(beside)
        assert beside.notes == ()
        assert db.get(b"new") == b"x"
