"""An independent reader of a bitcask store directory, written from docs/format.md alone.

Strategy: this module deliberately shares no code with `bitcask/` (it imports only the
standard library) so that it proves the document is enough to read a store. It follows
the document's loading rules literally:

- data files `NNNNNNNNNN.data` are applied in ascending id order; a file shorter than
  its header, or whose intact header (magic + header_crc) names another version, is
  not loaded;
- a file's hint is used when its CRC, magic, version, file id, exact section sizes and
  `data_size` all check; otherwise the data file is scanned;
- a scan reads records from offset 16, buffers batches between BEGIN and COMMIT, stops
  at an OPEN_FILE file's all-zero tail (or at a stored CRC of 0 there), and treats an
  invalid record whose framing holds (plausible, followed by a valid record or the end
  of the file) as a corrupt record that still claims its key (rule 4, the simple case:
  the stored lengths are believed), and resynchronises past anything else (rule 5);
- `merge/` is applied as a writer open would (a valid MANIFEST finishes the swap, an
  invalid or missing one means the inputs are authoritative), or ignored (`readonly`).

It implements rule 5's resynchronisation and the batch-marker rules, but not the
one-byte corrections of rule 4 (a mended length field, a blamed key byte): the
cross-checks damage values, markers and whole records, never a length or key byte.
"""

from __future__ import annotations

import json
import re
import struct
import zlib
from dataclasses import dataclass
from pathlib import Path

FILE_HEADER = struct.Struct(">4sHHII")  # magic, version, flags, file_id, header_crc
RECORD_HEADER = struct.Struct(">IBQQII")  # crc, flags, timestamp, expiry, key_len, val_len
HINT_HEADER = struct.Struct("<4sHHIIIIQ")  # magic, version, reserved, id, n, n_exp, n_tomb, size

OPEN_FILE = 0x0001
TOMBSTONE, TTL, BATCH_BEGIN, BATCH_COMMIT, IN_BATCH = 0x01, 0x02, 0x04, 0x08, 0x10
RESERVED_FLAGS = 0xE0
MAX_KEY_LEN = 1 << 20
MAX_VAL_LEN = 1 << 31

DATA_NAME = re.compile(r"^(\d{10})\.data$")


class CorruptKey(Exception):
    """The key's latest record failed its check: reading it is CORRUPT_RECORD."""


@dataclass(frozen=True)
class Location:
    file_id: int
    offset: int
    size: int
    expiry_ms: int  # 0 = never
    corrupt: bool = False


@dataclass(frozen=True)
class Record:
    offset: int
    size: int
    valid: bool
    flags: int
    expiry_ms: int
    key: bytes
    value: bytes


@dataclass
class FileResult:
    """What one data file contributes, in application order."""

    file_id: int
    loaded: bool
    used_hint: bool
    header_ok: bool
    ops: list[tuple[bytes, Location | None]]  # None = tombstone


def data_files(directory: Path) -> list[tuple[int, Path]]:
    found = []
    for path in directory.iterdir():
        m = DATA_NAME.match(path.name)
        if m and path.is_file():
            found.append((int(m.group(1)), path))
    return sorted(found)


def parse_header(buf: bytes, file_id: int) -> tuple[bool, bool, int]:
    """(load the file?, header fully valid?, flags when magic and CRC hold else 0)."""
    if len(buf) < FILE_HEADER.size:
        return False, False, 0
    magic, version, flags, fid, crc = FILE_HEADER.unpack_from(buf, 0)
    intact = magic == b"BCDF" and crc == zlib.crc32(buf[:12])
    if intact and version != 1:
        return False, False, 0
    if not intact:
        return True, False, 0
    return True, fid == file_id, flags  # a wrong id is reported; OPEN_FILE still counts


def read_record(buf: bytes, offset: int) -> Record | None:
    """The record at `offset`, or None when fewer than a header's bytes or implausible."""
    if len(buf) - offset < RECORD_HEADER.size:
        return None
    crc, flags, _ts, expiry, klen, vlen = RECORD_HEADER.unpack_from(buf, offset)
    size = RECORD_HEADER.size + klen + vlen
    if klen > MAX_KEY_LEN or vlen >= MAX_VAL_LEN or offset + size > len(buf):
        return None
    valid = crc == zlib.crc32(buf[offset + 4 : offset + size]) and not flags & RESERVED_FLAGS
    key_at = offset + RECORD_HEADER.size
    key = bytes(buf[key_at : key_at + klen])
    value = bytes(buf[key_at + klen : offset + size])
    return Record(offset, size, valid, flags, expiry, key, value)


def zero_tail_start(buf: bytes) -> int:
    """The offset from which every byte of `buf` is zero (len(buf) if the last is not)."""
    return len(buf.rstrip(b"\x00"))


def resync(buf: bytes, offset: int, end: int) -> int | None:
    """Rule 5: the first offset after `offset` (up to the file's end) where a valid record
    starts."""
    for at in range(offset + 1, end):
        rec = read_record(buf, at)
        if rec is not None and rec.valid:
            return at
    return None


def scan(buf: bytes, file_id: int, open_file: bool) -> list[tuple[bytes, Location | None]]:
    """Apply a data file's records (docs/format.md "Reading records" and "Batches")."""
    end = len(buf)
    if open_file:
        # The unwritten tail starts at the first record boundary from which all is zero:
        # scanning stops at any boundary at or past the last non-zero byte.
        end_of_data = zero_tail_start(buf)
    else:
        end_of_data = end
    ops: list[tuple[bytes, Location | None]] = []
    batch: list[tuple[bytes, Location | None]] | None = None
    batch_count = -1  # -1: BEGIN lost, count unknown
    skipped_in_batch = False
    offset = FILE_HEADER.size
    while offset < end:
        if open_file and offset >= end_of_data:
            break
        rec = read_record(buf, offset)
        if rec is not None and not rec.valid:
            stored_crc = struct.unpack_from(">I", buf, offset)[0]
            if open_file and stored_crc == 0:
                break  # an interrupted CRC-last copy: nothing after it was acknowledged
            nxt = read_record(buf, offset + rec.size)
            if not (offset + rec.size == end or (nxt is not None and nxt.valid)):
                rec = None  # the framing does not hold: rule 5
        if rec is None:
            at = resync(buf, offset, end_of_data)
            if at is None:
                break  # rules 1, 2, 5: the rest of the file is not loaded
            skipped_in_batch = skipped_in_batch or batch is not None
            offset = at
            continue
        if not rec.valid:
            # Rule 4: the record costs itself. A damaged marker is recognised by place.
            nxt = read_record(buf, offset + rec.size)
            if rec.key == b"" and len(rec.value) == 4:
                if batch is None and nxt is not None and nxt.valid and nxt.flags & IN_BATCH:
                    batch, batch_count, skipped_in_batch = [], -1, False
                    offset += rec.size
                    continue
                if batch is not None and len(batch) == batch_count:
                    ops.extend(batch)
                    batch = None
                    offset += rec.size
                    continue
            loc = Location(file_id, offset, rec.size, 0, corrupt=True)
            (batch if batch is not None else ops).append((rec.key, loc))
            offset += rec.size
            continue
        if rec.flags & BATCH_BEGIN:
            batch, batch_count = [], struct.unpack(">I", rec.value)[0]
            skipped_in_batch = False
        elif rec.flags & BATCH_COMMIT:
            count = struct.unpack(">I", rec.value)[0]
            matches = batch_count in (count, -1)
            if batch is not None and matches and (skipped_in_batch or count == len(batch)):
                ops.extend(batch)
            batch = None
        else:
            if rec.flags & IN_BATCH:
                if batch is None:
                    batch, batch_count, skipped_in_batch = [], -1, False
            elif batch is not None:
                batch = None  # a plain record where the COMMIT should be: drop the batch
            if rec.flags & TOMBSTONE:
                entry: tuple[bytes, Location | None] = (rec.key, None)
            else:
                entry = (rec.key, Location(file_id, offset, rec.size, rec.expiry_ms))
            (batch if batch is not None else ops).append(entry)
        offset += rec.size
    return ops


def load_hint(
    path: Path, file_id: int, data_size: int
) -> list[tuple[bytes, Location | None]] | None:
    """The hint's operations (tombstones first, then entries), or None if it is unusable."""
    try:
        buf = path.read_bytes()
    except FileNotFoundError:
        return None
    if len(buf) < HINT_HEADER.size + 4:
        return None
    if struct.unpack_from("<I", buf, len(buf) - 4)[0] != zlib.crc32(buf[:-4]):
        return None
    magic, version, _reserved, fid, n, n_exp, n_tomb, size = HINT_HEADER.unpack_from(buf, 0)
    if magic != b"BCHT" or version != 1 or fid != file_id or size != data_size:
        return None
    pos = HINT_HEADER.size

    def take(fmt: str, count: int) -> tuple[int, ...]:
        nonlocal pos
        width = struct.calcsize("<" + fmt)
        if pos + width * count > len(buf) - 4:
            raise ValueError("section does not fit")
        out = struct.unpack_from(f"<{count}{fmt}", buf, pos)
        pos += width * count
        return out

    def take_bytes(lens: tuple[int, ...]) -> list[bytes]:
        nonlocal pos
        out = []
        for length in lens:
            out.append(bytes(buf[pos : pos + length]))
            pos += length
        if pos > len(buf) - 4:
            raise ValueError("keys do not fit")
        return out

    try:
        key_lens = take("I", n)
        keys = take_bytes(key_lens)
        locs = take("Q", n)
        take("Q", n)  # timestamps: not needed to load
        exp_index = take("I", n_exp)
        exp_ms = take("Q", n_exp)
        tomb_lens = take("I", n_tomb)
        tomb_keys = take_bytes(tomb_lens)
        take("I", n_tomb)  # tomb_files
    except ValueError:
        return None
    if pos != len(buf) - 4:
        return None
    expiries = dict(zip(exp_index, exp_ms, strict=True))
    ops: list[tuple[bytes, Location | None]] = [(k, None) for k in tomb_keys]
    for i, (key, loc) in enumerate(zip(keys, locs, strict=True)):
        ops.append((key, Location(file_id, loc >> 32, loc & 0xFFFFFFFF, expiries.get(i, 0))))
    return ops


def read_file(path: Path, file_id: int, use_hints: bool = True) -> FileResult:
    buf = path.read_bytes()
    load, header_ok, flags = parse_header(buf, file_id)
    if not load:
        return FileResult(file_id, False, False, False, [])
    if use_hints:
        ops = load_hint(path.with_suffix(".hint"), file_id, len(buf))
        if ops is not None:
            return FileResult(file_id, True, True, header_ok, ops)
    open_file = bool(flags & OPEN_FILE)
    return FileResult(file_id, True, False, header_ok, scan(buf, file_id, open_file))


def read_manifest(merge_dir: Path) -> dict[str, list[int]] | None:
    """The merge MANIFEST's inputs and outputs when it is valid, else None."""
    try:
        text = (merge_dir / "MANIFEST").read_bytes()
    except FileNotFoundError:
        return None
    lines = text.split(b"\n")
    if len(lines) != 3 or lines[2] != b"" or len(lines[1]) != 8:
        return None
    if lines[1] != b"%08x" % zlib.crc32(lines[0]):
        return None
    doc = json.loads(lines[0])
    if doc.get("version") != 1:
        return None
    return {"inputs": list(doc["inputs"]), "outputs": list(doc["outputs"])}


class Store:
    """A store directory as docs/format.md says a reader sees it."""

    def __init__(self, directory: Path, *, use_hints: bool = True, readonly: bool = False):
        self.directory = directory
        files = {fid: path for fid, path in data_files(directory)}
        merge_dir = directory / "merge"
        if not readonly and merge_dir.is_dir():
            manifest = read_manifest(merge_dir)
            if manifest is not None:
                # Finishing the swap: outputs still in merge/ count, inputs do not.
                for fid in manifest["outputs"]:
                    staged = merge_dir / f"{fid:010d}.data"
                    if fid not in files and staged.exists():
                        files[fid] = staged
                for fid in manifest["inputs"]:
                    files.pop(fid, None)
        self.files: dict[int, FileResult] = {}
        self.keydir: dict[bytes, Location] = {}
        self.paths = files
        for fid in sorted(files):
            result = read_file(files[fid], fid, use_hints)
            self.files[fid] = result
            for key, loc in result.ops:
                if loc is None:
                    self.keydir.pop(key, None)
                else:
                    self.keydir[key] = loc

    def live(self, now_ms: int) -> dict[bytes, Location]:
        """Keys visible at `now_ms`: expired when now_ms >= expiry."""
        return {k: v for k, v in self.keydir.items() if not v.expiry_ms or now_ms < v.expiry_ms}

    def value(self, key: bytes) -> bytes:
        """The value of `key`'s latest record, checked as a read checks it."""
        loc = self.keydir[key]
        if loc.corrupt:
            raise CorruptKey(key)
        with self.paths[loc.file_id].open("rb") as f:
            f.seek(loc.offset)
            buf = f.read(loc.size)
        rec = read_record(buf, 0)
        if rec is None or not rec.valid or rec.key != key or rec.flags & TOMBSTONE:
            raise CorruptKey(key)
        return rec.value
