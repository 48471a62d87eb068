"""Helpers of test_corruption.py: a small real store, and a reader of its files.

The reader is written from docs/format.md, not from the engine's code (only its
constants are shared), so the tests damage the bytes the spec says are there:
data file = 16-byte header, then records of a 29-byte header + key + value; hint =
32-byte little-endian header, columns, CRC-32 at the end.
"""

from __future__ import annotations

import shutil
import struct
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

import bitcask
from bitcask._datafile import FILE_HEADER_SIZE, data_name, list_data_files
from bitcask._record import HEADER, HEADER_SIZE

__all__ = [
    "EXPECTED",
    "HINT_HEAD",
    "MAX_FILE",
    "Pristine",
    "Rec",
    "build",
    "clone",
    "contents",
    "flip",
    "hint_offset",
    "newest",
    "records",
]

MAX_FILE = 2048
N_KEYS = 80


@dataclass(frozen=True)
class Rec:
    """One record as docs/format.md lays it out."""

    offset: int
    size: int
    flags: int
    key: bytes
    value: bytes


def records(path: Path) -> list[Rec]:
    """Walk a data file: 16-byte file header, then 29-byte record headers + key + value."""
    buf = path.read_bytes()
    out: list[Rec] = []
    pos = FILE_HEADER_SIZE
    while pos + HEADER_SIZE <= len(buf):
        _crc, flags, _ts, _exp, klen, vlen = HEADER.unpack_from(buf, pos)
        size = HEADER_SIZE + klen + vlen
        kpos = pos + HEADER_SIZE
        out.append(Rec(pos, size, flags, buf[kpos : kpos + klen], buf[kpos + klen : pos + size]))
        pos += size
    assert pos == len(buf), f"{path.name}: {len(buf) - pos} stray bytes at the end"
    return out


def value_of(i: int) -> bytes:
    return b"value-%04d-" % i + bytes((i * 7 + j) % 251 for j in range(24 + i % 17))


EXPECTED = {b"key:%04d" % i: value_of(i) for i in range(N_KEYS)}


def newest(path: Path) -> Path:
    return path / data_name(list_data_files(str(path))[-1])


def build(path: Path, last: str = "none") -> dict[bytes, bytes | None]:
    """A store of N_KEYS unique keys across several files, then one `last` op.

    Returns the expected contents after the last op.
    """
    want: dict[bytes, bytes | None] = dict(EXPECTED)
    with bitcask.open(path, sync="never", max_file_size=MAX_FILE) as db:
        for k, v in EXPECTED.items():
            db.put(k, v)
        if last == "new":
            db.put(b"last", b"L" * 40)
            want[b"last"] = b"L" * 40
        elif last == "overwrite":
            db.put(b"key:0003", b"newer value")
            want[b"key:0003"] = b"newer value"
        elif last == "delete":
            assert db.delete(b"key:0003")
            want[b"key:0003"] = None
        elif last == "batch":
            db.write_batch(
                [
                    ("put", b"b-new-1", b"one", None),
                    ("put", b"key:0004", b"four, rewritten", None),
                    ("delete", b"key:0005"),
                    ("put", b"b-new-2", b"two" * 10, 60.0),
                ]
            )
            want.update({b"b-new-1": b"one", b"key:0004": b"four, rewritten", b"key:0005": None})
            want[b"b-new-2"] = b"two" * 10
    assert len(list_data_files(str(path))) >= 4, "the store should span several files"
    return want


def contents(db: bitcask.Bitcask, keys: Iterable[bytes]) -> dict[bytes, bytes | None]:
    return {k: db.get(k) for k in keys}


Pristine = dict[str, tuple[Path, dict[bytes, bytes | None]]]


def clone(src: Path, dst: Path) -> Path:
    shutil.copytree(src, dst)
    return dst


def flip(path: Path, offset: int) -> None:
    with open(path, "r+b") as f:
        f.seek(offset)
        byte = f.read(1)
        f.seek(offset)
        f.write(bytes([byte[0] ^ 0xFF]))


# Hint layout (docs/format.md, little-endian): 32-byte header "BCHT" | version u16 |
# reserved u16 | file_id u32 | n_entries u32 | n_expiring u32 | n_tombs u32 |
# data_size u64; then key_lens u32 x n, keys, locs u64 x n, ..., crc32 u32 at the end.
HINT_HEAD = struct.Struct("<4sHHIIIIQ")


def hint_offset(blob: bytes, spot: str) -> int:
    n = HINT_HEAD.unpack_from(blob, 0)[4]
    key_lens = struct.unpack_from(f"<{n}I", blob, HINT_HEAD.size)
    keys_at = HINT_HEAD.size + 4 * n
    locs_at = keys_at + sum(key_lens)
    return {
        "magic": 0,
        "file_id": 8,
        "n_entries": 12,
        "data_size": 24,
        "key_len": HINT_HEAD.size,
        "key": keys_at + 5,
        "loc": locs_at + 8 + 4,  # the second entry's offset field
        "crc": len(blob) - 1,
    }[spot]
