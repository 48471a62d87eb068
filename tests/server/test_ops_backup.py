"""docs/operations.md's backup and restore, followed as written against a real server.

The report: a backup copied to another volume by a `cp` that stopped half-way (two of
four data files, or one cut short) passed `bitcask check` (OK, exit 0): every record
left is valid, and the server then started on 35,000 of the backup's 60,000 keys. The
Kubernetes restore runs exactly `cp -a "$src"/. /data/` then `bitcask check /data`.
`check` now compares the data files with the backup's `backup.json`.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import os
import shutil
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest

import bitcask
from client import BackupError, ClientError, connect
from tests.serverproc import ServerProcess

Factory = Callable[..., ServerProcess]
WAIT = 60.0


def cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "repl.cli", *args], capture_output=True, text=True, timeout=WAIT
    )


@pytest.fixture
def backup(server_factory: Factory, tmp_path: Path) -> Path:
    """An online backup of 3,000 keys spread over several data files."""
    srv = server_factory(extra=["--max-file-size", "65536", "--merge-trigger", "0"])

    async def fill() -> None:
        async with connect("127.0.0.1", srv.port) as c:
            for start in range(0, 3000, 100):
                await c.mput({b"k%05d" % i: b"v" * 100 for i in range(start, start + 100)})

    asyncio.run(fill())
    dest = tmp_path / "backup"
    made = cli("--port", str(srv.port), "backup", str(dest))
    assert made.returncode == 0, made.stderr
    assert len(list(dest.glob("*.data"))) >= 4
    return dest


def test_a_whole_backup_checks_against_its_manifest(backup: Path) -> None:
    result = cli("check", str(backup))
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout.rstrip().endswith("0 missing hints, backup.json checked")


def test_a_half_copied_backup_fails_check(backup: Path, tmp_path: Path) -> None:
    # what an interrupted `cp -a backup/. /data/` leaves: the manifest, the first files
    # whole, one cut short (at a record boundary, so no record is torn), the rest absent
    copy = tmp_path / "copy"
    copy.mkdir()
    shutil.copy(backup / "backup.json", copy)
    data = sorted(backup.glob("*.data"))
    for p in data[:2]:
        shutil.copy(p, copy)
        shutil.copy(p.with_suffix(".hint"), copy)
    cut = _record_boundary(data[2])
    (copy / data[2].name).write_bytes(data[2].read_bytes()[:cut])
    result = cli("check", str(copy))
    assert result.returncode == 1, result.stdout + result.stderr
    out = result.stdout
    assert "PROBLEMS" in out and "backup.json checked" in out
    size = data[2].stat().st_size
    assert f"{data[2].name}: offset 0, {cut} bytes: {cut} bytes, backup.json says {size}" in out
    for p in data[3:]:
        assert f"{p.name}: offset 0, 0 bytes: missing: backup.json lists" in out, out
    # the same problems through the engine's API
    report = bitcask.check(copy)
    assert not report.ok and report.backup_manifest == "checked"


def test_a_changed_or_foreign_data_file_fails_check(backup: Path, tmp_path: Path) -> None:
    copy = tmp_path / "copy"
    shutil.copytree(backup, copy)
    first = sorted(copy.glob("*.data"))[0]
    raw = bytearray(first.read_bytes())
    raw[-5] ^= 0xFF  # a value byte of the last record: same size, other bytes
    first.write_bytes(raw)
    # a data file the backup never had, numbered below its cut (left from an old store)
    shutil.copy(first, copy / "0000000000.data")
    report = bitcask.check(copy)
    reasons = {(p.file, p.reason) for p in report.problems}
    assert (first.name, "CRC-32 differs from backup.json") in reasons, reasons
    assert ("0000000000.data", "not in backup.json: not part of the backup") in reasons


def test_a_restored_store_that_took_writes_is_not_held_to_the_manifest(
    backup: Path, tmp_path: Path
) -> None:
    restored = tmp_path / "restored"
    shutil.copytree(backup, restored)
    with bitcask.open(restored) as db:  # a server on the restored copy: writes, a merge
        db.put(b"new", b"value")
        db.merge()
    report = bitcask.check(restored)
    assert report.ok and report.backup_manifest == "written since", report
    assert "backup.json" not in str(report)


def test_an_unreadable_manifest_is_a_problem(backup: Path) -> None:
    (backup / "backup.json").write_text("{not json")
    report = bitcask.check(backup)
    assert not report.ok
    assert report.problems[-1].file == "backup.json"
    assert report.problems[-1].reason.startswith("unreadable manifest")


def _record_boundary(path: Path) -> int:
    """The end of a record about half-way through data file `path`."""
    from bitcask._datafile import FILE_HEADER_SIZE, ScanIssues, map_file, scan

    mm = map_file(str(path))
    assert mm is not None
    recs = list(scan(mm, FILE_HEADER_SIZE, len(mm), ScanIssues()))
    off, size = recs[len(recs) // 2][:2]
    return int(off + size)


@pytest.mark.skipif(os.geteuid() != 0, reason="mounting a small tmpfs needs root (the CI is root)")
@pytest.mark.parametrize("exists", [False, True], ids=["new-dir", "empty-dir"])
def test_an_embedded_backup_onto_a_full_disk_leaves_no_part(tmp_path: Path, exists: bool) -> None:
    # db.backup() on a disk that filled after a few files left those files, whose
    # records are all valid: a copy cut between two files passed `bitcask check`
    store = tmp_path / "store"
    with bitcask.open(store, max_file_size=65536, sync="never") as db:
        for i in range(3000):
            db.put(b"k%05d" % i, b"v" * 200)
    small = tmp_path / "small"
    small.mkdir()
    mounted = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=256k", "tmpfs", str(small)], capture_output=True
    )
    assert mounted.returncode == 0, mounted.stderr
    try:
        dest = small / "backup"
        if exists:
            dest.mkdir()
        with bitcask.open(store) as db:
            with pytest.raises(OSError) as exc:
                db.backup(dest)
            assert exc.value.errno == errno.ENOSPC
            db.put(b"after", b"still writable")
        assert list(small.iterdir()) == ([dest] if exists else [])
        if exists:
            assert list(dest.iterdir()) == []
    finally:
        subprocess.run(["umount", "-l", str(small)], check=False)


@pytest.mark.skipif(os.geteuid() != 0, reason="mounting a small tmpfs needs root (the CI is root)")
def test_a_backup_on_a_full_disk_fails_alone(tmp_path: Path) -> None:
    # The nightly backup on a disk that was full but whose active data file still had
    # room: the cut could not create the next file, and that made the whole store
    # read-only (every write READONLY until space came back) though writes had worked.
    vol = tmp_path / "vol"
    vol.mkdir()
    mounted = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=4m", "tmpfs", str(vol)], capture_output=True
    )
    assert mounted.returncode == 0, mounted.stderr
    srv = ServerProcess(data=vol / "data")
    try:
        srv.start()

        async def scenario() -> None:
            async with connect("127.0.0.1", srv.port) as c:
                await c.put(b"before", b"1")
                filler = vol / "fill"
                # the rest of the volume, to the last block
                with contextlib.suppress(OSError), filler.open("wb") as f:
                    while True:
                        f.write(b"\0" * 65536)
                        f.flush()
                await c.put(b"full", b"the active file still has room")
                with pytest.raises(BackupError, match="nothing changed"):
                    await c.backup(tmp_path / "backup")
                with pytest.raises(ClientError, match="nothing changed"):
                    await c.merge()
                await c.put(b"after", b"still writable")
                assert await c.get(b"full") == b"the active file still has room"

        asyncio.run(scenario())
        assert not (tmp_path / "backup").exists()
        assert "cannot start a new data file" in srv.log()
        assert "read-only" not in srv.log()
        assert srv.stop() == 0, srv.log()
    finally:
        srv.kill()
        subprocess.run(["umount", "-l", str(vol)], check=False)
