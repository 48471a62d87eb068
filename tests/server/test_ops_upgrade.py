"""A store holding a data file of another format version (a newer release wrote it, and
the operator rolled back): docs/format.md says such a file is not loaded, is reported,
and is never merged.

The report: with the file's hint present (every sealed file has one) the server loaded
the file's keys from the hint without reading its header: `keys=100` and an empty
recovery report, values served out of a file whose record layout this release does not
know, and the file open to merging. Without the hint it was reported as documented.
"""

from __future__ import annotations

import struct
import zlib
from pathlib import Path

import bitcask
from tests.server.wire import Conn
from tests.serverproc import ServerProcess


def future_version_store(path: Path) -> tuple[set[bytes], set[bytes]]:
    """Sealed files with hints; the first file's header then names format version 2.

    Returns the keys of the first file and those of the others.
    """
    with bitcask.open(path, max_file_size=4096, merge_trigger=0) as db:
        for i in range(100):
            db.put(b"k%03d" % i, b"v" * 100)
    first = path / "0000000001.data"
    assert (path / "0000000001.hint").exists()
    with bitcask.open(path, readonly=True) as db:
        everything = set(db.keys())
    raw = bytearray(first.read_bytes())
    raw[4:6] = struct.pack(">H", 2)
    raw[12:16] = struct.pack(">I", zlib.crc32(bytes(raw[:12])))  # an intact v2 header
    first.write_bytes(raw)
    (path / "0000000001.hint").rename(path / "hidden")
    with bitcask.open(path, readonly=True) as db:
        rest = set(db.keys())
    (path / "hidden").rename(path / "0000000001.hint")
    assert rest and rest < everything
    return everything - rest, rest


def test_a_hinted_file_of_another_version_is_not_loaded(tmp_path: Path) -> None:
    data = tmp_path / "data"
    in_v2, rest = future_version_store(data)
    srv = ServerProcess(data=data).start()
    try:
        log = srv.log()
        assert "0000000001.data: not loaded" in log and "unsupported format version 2" in log
        assert f"keys={len(rest)} " in log
        with Conn(srv.port) as c:
            for key in sorted(in_v2)[:5]:
                assert c.call("get", key) is None
            assert c.call("get", sorted(rest)[0]) == b"v" * 100
    finally:
        assert srv.stop() == 0
    with bitcask.open(data) as db:
        db.merge()
    assert (data / "0000000001.data").exists(), "a file of another version is never merged"


def test_a_readonly_open_reports_it_too(tmp_path: Path) -> None:
    data = tmp_path / "data"
    _, rest = future_version_store(data)
    with bitcask.open(data, readonly=True) as db:
        assert set(db.keys()) == rest
        assert db.stats()["recovery"]["events"] == [
            f"0000000001.data: not loaded, {(data / '0000000001.data').stat().st_size} bytes, "
            "unsupported format version 2"
        ]


def test_damage_found_at_start_is_a_warning(tmp_path: Path) -> None:
    # the recovery report was only in the INFO start-up line: a journal at
    # --log-level warning never said that a file was left unloaded
    data = tmp_path / "data"
    future_version_store(data)
    srv = ServerProcess(data=data, extra=["--log-level", "warning"]).start()
    try:
        log = srv.wait_for_log("the store holds damage")
        lines = [line for line in log.splitlines() if "WARNING" in line]
        assert len(lines) == 1, srv.log()
        assert "the store holds damage: 0 corrupt records" in lines[0]
        assert "0000000001.data: not loaded" in lines[0] and "run bitcask check" in lines[0]
    finally:
        assert srv.stop() == 0
