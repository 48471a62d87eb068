"""Every record of a data file starts below 4 GiB, the limit of a hint's offsets.

A hint stores each location as ``offset << 32 | size`` in a u64 (docs/format.md).
``max_file_size`` went up to 16 GiB, so a file that grew past 4 GiB could get no
hint: its seal, a merge's output and a backup raised OverflowError. The ceiling is
now 4 GiB; with rotation before a write and the 4 GiB cap on one write, that keeps
every offset of a file below 2**32.
"""

from __future__ import annotations

from pathlib import Path

import pytest

import bitcask
from bitcask import InvalidOptionsError
from bitcask._hint import HintJournal, decode_hint
from bitcask._keydir import pack
from bitcask.options import MAX_FILE_SIZE_LIMIT, GiB, Options


def test_max_file_size_stops_at_4_gib() -> None:
    assert 4 * GiB == MAX_FILE_SIZE_LIMIT
    assert Options(max_file_size=4 * GiB).max_file_size == 4 * GiB
    with pytest.raises(InvalidOptionsError, match="max_file_size"):
        Options(max_file_size=4 * GiB + 1)


def test_open_refuses_a_file_size_a_hint_could_not_describe(tmp_path: Path) -> None:
    with pytest.raises(InvalidOptionsError, match="max_file_size"):
        bitcask.open(tmp_path / "db", max_file_size=16 * GiB)
    assert not (tmp_path / "db").exists() or not any((tmp_path / "db").glob("*.data"))


def test_a_hint_holds_the_last_offset_below_the_ceiling() -> None:
    # the last record a 4 GiB file can hold starts below 2**32 and round-trips
    journal = HintJournal()
    first, last = 16, MAX_FILE_SIZE_LIMIT - 64
    journal.add(b"a", pack(7, first, 40), 1, 0)
    journal.add(b"b", pack(7, last, 64), 2, 0)
    hint = decode_hint(journal.build(7, MAX_FILE_SIZE_LIMIT), 7)
    assert hint.keys == [b"a", b"b"]
    assert list(hint.locs) == [first << 32 | 40, last << 32 | 64]
