"""Security of the store's files: a link planted in the data directory is never written
through (docs/security.md, "Files").

Whoever can write the data directory owns the store; but the server often runs as a
user (root, a service account) who can write far more than the store, and every
open, seal and repair wrote where a link pointed: a torn tail was cut (and the file
header rewritten) in the file a link named, the LOCK file was truncated to a pid, a
hint's temporary file overwrote its target. Each now refuses a link (O_NOFOLLOW):
the open fails with ELOOP, or the hint is not written (its data file is scanned).
"""

from __future__ import annotations

import errno
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

import bitcask
from server.cli import EXIT_STORE

VICTIM = b"root:x:0:0:precious\n"


def _store(path: Path, n: int = 40) -> None:
    with bitcask.open(path, sync="never", max_file_size=4096) as db:
        for i in range(n):
            db.put(b"k%d" % i, b"v" * 50)


def _victim(tmp_path: Path, content: bytes = VICTIM) -> Path:
    victim = tmp_path / "victim"
    victim.write_bytes(content)
    return victim


def test_lock_file_link_is_refused(tmp_path: Path) -> None:
    # Was: the open truncated the linked file and wrote the pid into it.
    data = tmp_path / "data"
    _store(data)
    victim = _victim(tmp_path)
    (data / "LOCK").unlink()
    (data / "LOCK").symlink_to(victim)
    with pytest.raises(OSError) as err:
        bitcask.open(data, sync="never")
    assert err.value.errno == errno.ELOOP
    assert victim.read_bytes() == VICTIM


@pytest.mark.parametrize("torn", [b"", b"GARBAGE-TAIL"], ids=["not-a-data-file", "torn-tail"])
def test_last_data_file_link_is_never_cut(tmp_path: Path, torn: bytes) -> None:
    # Was: recovery cut the linked file's "torn tail": a text file (bad magic) lost all
    # but its first 16 bytes, and a copy of a data file lost what followed its records.
    data = tmp_path / "data"
    _store(data)
    last = sorted(data.glob("*.data"))[-1]
    content = (last.read_bytes() + torn) if torn else VICTIM
    victim = _victim(tmp_path, content)
    planted = data / f"{int(last.stem) + 1:010d}.data"
    planted.symlink_to(victim)
    with pytest.raises(OSError) as err:
        bitcask.open(data, sync="never")
    assert err.value.errno == errno.ELOOP
    assert victim.read_bytes() == content


def test_hint_temporary_file_link_is_not_written_through(tmp_path: Path) -> None:
    # Was: sealing a file wrote its hint into whatever `NNNNNNNNNN.hint.tmp` linked to.
    data = tmp_path / "data"
    victim = _victim(tmp_path)
    with bitcask.open(data, sync="never", max_file_size=4096) as db:
        active = max(int(p.stem) for p in data.glob("*.data"))
        (data / f"{active:010d}.hint.tmp").symlink_to(victim)
        for i in range(200):  # past a rotation: the file is sealed, its hint written
            db.put(b"k%d" % i, b"v" * 50)
        assert max(int(p.stem) for p in data.glob("*.data")) > active
    assert victim.read_bytes() == VICTIM
    (data / f"{active:010d}.hint.tmp").unlink(missing_ok=True)
    with bitcask.open(data, sync="never", readonly=True) as db:  # every key is there
        assert all(db.get(b"k%d" % i) == b"v" * 50 for i in range(200))


def test_repair_never_writes_through_a_link(tmp_path: Path) -> None:
    # repair rewrites a damaged file aside and renames it over the link (found sound;
    # its temporary file, `NNNNNNNNNN.data.repair`, is opened O_NOFOLLOW as well)
    data = tmp_path / "data"
    _store(data)
    first = sorted(data.glob("*.data"))[0]
    content = first.read_bytes() + b"GARBAGE-TAIL"
    victim = _victim(tmp_path, content)
    first.unlink()
    first.symlink_to(victim)
    shutil.rmtree(data / "quarantine", ignore_errors=True)
    (data / f"{first.stem}.hint").unlink(missing_ok=True)
    other = tmp_path / "other"
    other.write_bytes(VICTIM)
    os.symlink(other, data / f"{first.name}.repair")  # the rewrite's temporary name
    report = bitcask.repair(data)
    assert report.truncated and not first.is_symlink(), "the link was replaced by a file"
    assert victim.read_bytes() == content and other.read_bytes() == VICTIM


def test_server_names_the_link_it_refused(tmp_path: Path) -> None:
    # Was: "cannot open the store at DIR: Too many levels of symbolic links", naming
    # neither the file nor why.
    data = tmp_path / "data"
    _store(data)
    (data / "LOCK").unlink()
    (data / "LOCK").symlink_to(_victim(tmp_path))
    proc = subprocess.run(
        [sys.executable, "-m", "server", "--data", str(data), "--port", "0", "--http-port", "0"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == EXIT_STORE, proc.stderr
    assert f"{data / 'LOCK'} is a symbolic link" in proc.stderr
    assert (tmp_path / "victim").read_bytes() == VICTIM
