"""bench/checkedlog.py, the floor with a checked record format: what it reads back."""

from __future__ import annotations

from pathlib import Path

import pytest

from bench.checkedlog import CheckedLog


def test_puts_read_back_across_a_reopen_and_a_killed_writers_tail(tmp_path: Path) -> None:
    path = tmp_path / "data.log"
    log = CheckedLog.open(path)
    log.put(b"a", b"1")
    log.put_many([(b"b", b"2"), (b"a", b"3"), (b"c", b"")])
    assert [log.get(k) for k in (b"a", b"b", b"c", b"zz")] == [b"3", b"2", b"", None]
    # Not closed, as after a kill: the file is still its reservation, a zero tail
    # after the records, where the scan stops.
    assert path.stat().st_size > 100
    reopened = CheckedLog.open(path)
    assert len(reopened) == 3
    assert [reopened.get(k) for k in (b"a", b"b", b"c")] == [b"3", b"2", b""]
    reopened.close()
    log.close()


def test_a_flipped_byte_is_refused_on_get_and_ends_the_scan(tmp_path: Path) -> None:
    path = tmp_path / "data.log"
    log = CheckedLog.open(path)
    log.put(b"a", b"value-a")
    log.put(b"b", b"value-b")
    log.close()
    data = bytearray(path.read_bytes())
    data[-1] ^= 0x01  # b's value
    path.write_bytes(bytes(data))
    reopened = CheckedLog.open(path)
    assert reopened.get(b"a") == b"value-a"
    assert reopened.get(b"b") is None  # the scan stopped at the bad record
    reopened.close()
    log = CheckedLog.open(path)
    size = 20 + 1 + 7  # crc, timestamp, lengths; key; value
    log._index[b"b"] = (len(data) - size) << 32 | size  # the index a write left
    with pytest.raises(ValueError, match="corrupt record"):
        log.get(b"b")
    log.close()
