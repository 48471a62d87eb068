"""The read path's record check: get and get_many refuse a location that is not the key's.

Strategy: a real store; the keydir (engine-internal, the one thing a hint or a bug
could get wrong) is pointed at records that pass their CRC but are not the key's
latest value: another key's record of the same size, a record of a longer key
that starts with the requested one, the key's own tombstone, a record whose
key_len runs past its end (CRC recomputed: no writer makes one), plus a flipped
value byte and a location past the end of the active file. Each read must raise
CorruptRecordError from get, db[key] and get_many alike, on both read paths
(the active file's unmapped tail, read with pread, and a mapped file after a
reopen), and every other key must still answer its value. An empty value,
whose value slice is empty as the bad key_len's is, still answers b"".
"""

from __future__ import annotations

import os
import struct
import zlib
from pathlib import Path

import pytest

import bitcask
from bitcask._datafile import data_name
from bitcask._keydir import FID_SHIFT, OFF_MASK, OFF_SHIFT, SIZE_MASK, pack

VALUES = {
    b"k1": b"one-value!",
    b"k2": b"two-value!",  # the same size as k1's record
    b"k1x": b"longer-key",
    b"d": b"deleted",
    b"e": b"",
    b"z": b"last",
}


def where(loc: int) -> tuple[int, int, int]:
    return loc >> FID_SHIFT, (loc >> OFF_SHIFT) & OFF_MASK, loc & SIZE_MASK


def build(path: Path) -> dict[str, int]:
    """The store, and the locations the cases point the keydir at."""
    with bitcask.open(path, sync="never") as db:
        for key, value in VALUES.items():
            db.put(key, value)
        fid, off, size = where(db.keydir.map[b"z"])  # the last record written
        db.delete(b"d")
        tomb = pack(fid, off + size, 29 + 1 + 4)  # right after it, in the same file
        with open(os.path.join(db.path, data_name(fid)), "rb") as f:
            rec = os.pread(f.fileno(), 29 + 1 + 4, off + size)
        assert rec[4] == 1 and rec[29:30] == b"d"  # a valid tombstone of d
        assert struct.unpack_from(">I", rec) == (zlib.crc32(rec[4:]),)
        db.put(b"bad", b"")
        # key_len 9 where the record holds 3 key bytes and no value: CRC made valid
        bfid, boff, bsize = where(db.keydir.map[b"bad"])
        fpath = os.path.join(db.path, data_name(bfid))
        with open(fpath, "r+b") as f:
            rec = bytearray(os.pread(f.fileno(), bsize, boff))
            assert struct.unpack_from(">I", rec, 21) == (3,) and bsize == 29 + 3
            rec[21:25] = struct.pack(">I", 9)
            rec[0:4] = struct.pack(">I", zlib.crc32(bytes(rec[4:])))
            os.pwrite(f.fileno(), bytes(rec), boff)
        locs = {k.decode(): db.keydir.map[k] for k in (b"k1", b"k2", b"k1x", b"z", b"bad")}
        locs["tomb"] = tomb
    return locs


# (case, reopen): the tombstone and the bad key_len are written once, in a file
# that is mapped after the reopen; the others are written again in the new active
# file's tail (pread) when reopen is False.
# A location past the end of a sealed file is refused at open (the hint is not
# used: the file's size disagrees), so past_eof is the active file's only.
CASES = [
    (case, reopen) for case in ("other_key", "longer_key", "flipped") for reopen in (False, True)
] + [("tombstone", True), ("key_len_past_end", True), ("past_eof", False)]


@pytest.mark.parametrize(("case", "reopen"), CASES)
def test_a_location_that_is_not_the_keys_is_refused(
    tmp_path: Path, case: str, reopen: bool
) -> None:
    path = tmp_path / "db"
    locs = build(path)
    with bitcask.open(path, sync="never") as db:
        if not reopen:  # the records again, at the tail of a fresh active file
            for key, value in VALUES.items():
                db.put(key, value)
            locs = {k.decode(): db.keydir.map[k] for k in (b"k1", b"k2", b"k1x", b"z")} | {
                "tomb": locs["tomb"],
                "bad": locs["bad"],
            }
        fid, off, size = where(locs["k1"])
        mapped = db.files.entries[fid][1]
        assert (off + size <= mapped) == reopen  # the read path this case is about
        target, loc = {
            "other_key": (b"k1", locs["k2"]),
            "longer_key": (b"k1", locs["k1x"]),
            "tombstone": (b"d", locs["tomb"]),
            "key_len_past_end": (b"bad", locs["bad"]),
            "flipped": (b"k1", locs["k1"]),
            "past_eof": (b"z", pack(where(locs["z"])[0], where(locs["z"])[1], 4096)),
        }[case]
        if case == "flipped":
            tfid, toff, tsize = where(loc)
            with open(os.path.join(db.path, data_name(tfid)), "r+b") as f:
                last = os.pread(f.fileno(), 1, toff + tsize - 1)
                os.pwrite(f.fileno(), bytes([last[0] ^ 1]), toff + tsize - 1)
        db.keydir.map[target] = loc
        with pytest.raises(bitcask.CorruptRecordError, match=r"fails its check|truncated"):
            db.get(target)
        with pytest.raises(bitcask.CorruptRecordError):
            db[target]
        with pytest.raises(bitcask.CorruptRecordError):
            db.get_many([b"k2", target])
        # every other key answers as before, through both read methods
        want: dict[bytes, bytes | None] = {**VALUES, b"d": None if reopen else VALUES[b"d"]}
        rest = {k: v for k, v in want.items() if k != target}
        assert {k: db.get(k) for k in rest} == rest
        assert db.get_many(list(rest)) == list(rest.values())
        assert db.get(b"e") == b"" and db.get_many([b"e"]) == [b""]
