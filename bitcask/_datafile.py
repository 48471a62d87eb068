"""Data files: naming, the 16-byte file header, mapping, and the validating scanner.

Strategy: a data file is ``%010d.data`` = a 16-byte header then records back to
back. The scanner is the single definition of "what a data file says": recovery,
hint building, merge, check and repair all read records through ``scan`` and so
agree on which records count. It yields only records that apply: single records,
and the records of a batch once its COMMIT marker with the right count is read. It
never raises on bad data; it records what it skipped in a ``ScanIssues``.

One bad byte costs one record. A record that fails its check but whose framing
holds is yielded as a ``CORRUPT`` entry carrying the key its bytes name: whoever
loads it points that key at the bad record, so the key answers CorruptRecordError
instead of silently falling back to an older value (or coming back from a damaged
tombstone). The framing holds when a one-byte correction of a length field makes
the CRC match (a flipped length costs its record only), or when the stored lengths
lead to the next valid record (or the end) and are corroborated: the CRC locates a
one-byte error outside the length fields, or no valid record starts inside the
span they claim (a flipped length can land exactly on a later record; believing it
would swallow the valid records in between). See ``_framing.framing``.
Otherwise (a damaged length, or garbage) the scanner looks ahead for the next
offset where a whole record validates (CRC32 over a plausible header, key and
value: ``RESYNC_WINDOW`` bytes while the framing is tried, then on to the end of
the file, ``resync_past``) and resumes there, reporting the bytes in between; if
none is found, scanning stops and the rest of the file is reported as not loaded
("stop"): nothing valid follows. In the last file that rest is the torn tail.

Batches: a batch applies when a valid COMMIT closes it (the writer puts BEGIN,
records and COMMIT in one write, so a valid COMMIT means the batch was written
whole); its damaged records cost themselves only. A batch without a COMMIT (a torn
tail, or a BEGIN/plain record where the COMMIT should be) is dropped whole. A
damaged marker whose framing holds is recognised by its shape (empty key, 4-byte
value): a BEGIN when IN_BATCH records follow, a COMMIT when the batch is complete.

Unwritten tails: the active file is preallocated (bitcask/_active.py) and carries
``OPEN_FILE`` in its header until it is sealed. In such a file only, the all-zero
bytes after the last record are unwritten space, not damage: the scan ends there
(``ScanIssues.unwritten``) and never resynchronises into them; and a record that
fails its check with a zero CRC field is an append that never completed (the CRC is
stored last), so the scan stops there: the torn tail. In a file without the flag,
zero bytes are data like any other (a zeroed range is damage, reported).
"""

from __future__ import annotations

import mmap
import os
import struct
from collections.abc import Iterator
from dataclasses import dataclass, field

from ._framing import RESYNC_WINDOW, framing, resync_past, valid_at
from ._record import (
    BATCH_BEGIN,
    BATCH_COMMIT,
    HEADER,
    HEADER_SIZE,
    IN_BATCH,
    KNOWN_FLAGS,
    TOMBSTONE,
    U32,
    crc32,
)
from ._syndrome import probable_key
from .options import MAX_KEY_SIZE_LIMIT, MAX_VALUE_SIZE_LIMIT

__all__ = [
    "CORRUPT",
    "FILE_HEADER_SIZE",
    "OPEN_FILE",
    "UNSUPPORTED",
    "Rec",
    "ScanIssues",
    "data_name",
    "encode_file_header",
    "hint_name",
    "list_data_files",
    "map_file",
    "parse_file_header",
    "scan",
]

DATA_MAGIC = b"BCDF"
FORMAT_VERSION = 1
# Prefix of parse_file_header's reason for a file written by another format version.
UNSUPPORTED = "unsupported format version"
# magic, version u16, flags u16 (was "reserved"), file id u32, crc32 of the first 12 bytes
_FILE_HEADER = struct.Struct(">4sHHII")
FILE_HEADER_SIZE = _FILE_HEADER.size  # 16
# File header flag: the file is (or was, at a crash) the preallocated active file, so
# it may end in unwritten zero bytes. Cleared when the file is sealed (truncated).
OPEN_FILE = 0x0001
_ZEROS = bytes(1 << 16)

# (offset, size, flags, timestamp_us, expiry_ms, key, aux) where aux is the target
# file id of a tombstone and 0 otherwise.
Rec = tuple[int, int, int, int, int, bytes, int]

# Not a record flag (those fit a byte): the flags of a Rec that failed its check but
# whose framing holds. Its key is the key its bytes name; timestamp, expiry, aux are 0.
CORRUPT = 0x100


def data_name(file_id: int) -> str:
    """``0000000042.data``"""
    return f"{file_id:010d}.data"


def hint_name(file_id: int) -> str:
    """``0000000042.hint``"""
    return f"{file_id:010d}.hint"


def list_data_files(path: str) -> list[int]:
    """Ids of the data files in directory ``path``, ascending."""
    ids = []
    for name in os.listdir(path):
        if len(name) == 15 and name.endswith(".data") and name[:10].isdigit():
            ids.append(int(name[:10]))
    ids.sort()
    return ids


def encode_file_header(file_id: int, flags: int = 0) -> bytes:
    """The 16 bytes every data file starts with (``flags``: ``OPEN_FILE`` or 0)."""
    head = _FILE_HEADER.pack(DATA_MAGIC, FORMAT_VERSION, flags, file_id, 0)[:12]
    return head + U32.pack(crc32(head))


def is_open_file(buf: bytes | mmap.mmap) -> bool:
    """Whether ``buf`` starts with a valid file header flagged ``OPEN_FILE``."""
    if len(buf) < FILE_HEADER_SIZE or buf[:4] != DATA_MAGIC:
        return False
    head = buf[:12]
    return crc32(head) == U32.unpack_from(buf, 12)[0] and bool(head[7] & OPEN_FILE)


def zero_suffix(buf: bytes | mmap.mmap, start: int, end: int) -> int:
    """Where the run of zero bytes that ends ``buf[start:end]`` begins (``end``: none)."""
    z = end
    step = len(_ZEROS)
    while z > start:
        lo = max(start, z - step)
        rest = buf[lo:z].rstrip(b"\x00")
        if rest:
            return lo + len(rest)
        z = lo
    return z


def parse_file_header(buf: bytes | mmap.mmap, file_id: int) -> str | None:
    """Return None if ``buf`` starts with a valid header for ``file_id``, else why not."""
    if len(buf) < FILE_HEADER_SIZE:
        return "file shorter than its header"
    magic, version, _reserved, fid, crc = _FILE_HEADER.unpack_from(buf, 0)
    if magic != DATA_MAGIC:
        return f"bad magic {magic!r}"
    if crc32(buf[:12]) != crc:
        return "file header CRC mismatch"
    if version != FORMAT_VERSION:
        return f"{UNSUPPORTED} {version}"
    if fid != file_id:
        return f"header names file {fid}, file name says {file_id}"
    return None


def map_file(path: str) -> mmap.mmap | None:
    """Map ``path`` read-only; None for an empty file (mmap cannot map zero bytes).

    A file flagged ``OPEN_FILE`` is copied into anonymous memory instead: its writer
    (maybe another process) truncates its reserved tail when it seals it, and
    touching a mapped page past the new end of file raises SIGBUS, where a read
    only comes back short (the bytes it lacks read as an unwritten tail).
    """
    fd = os.open(path, os.O_RDONLY)
    try:
        size = os.fstat(fd).st_size
        if size == 0:
            return None
        if is_open_file(os.pread(fd, FILE_HEADER_SIZE, 0)):
            copy = mmap.mmap(-1, size)
            with open(fd, "rb", buffering=0, closefd=False) as f:
                f.readinto(copy)
            return copy
        return mmap.mmap(fd, 0, access=mmap.ACCESS_READ)
    finally:
        os.close(fd)


@dataclass
class ScanIssues:
    """What a scan skipped. Offsets are byte offsets in the data file."""

    # (offset, bytes, reason) of each skipped record or dropped batch
    skipped: list[tuple[int, int, str]] = field(default_factory=list)
    corrupt_records: int = 0
    dropped_batches: int = 0
    # Offset where scanning stopped on unreadable bytes (None: read to the end).
    stop: int | None = None
    stop_reason: str = ""
    # Offset of a BATCH_BEGIN whose COMMIT never came before the end (or the stop).
    open_batch: int | None = None
    # Offset of the end of the last applied record or committed batch.
    valid_end: int = 0
    # Offset where the unwritten zero tail of an OPEN_FILE begins (None: there is none).
    unwritten: int | None = None

    @property
    def tail_start(self) -> int | None:
        """Where a torn tail begins (the last file is truncated here), or None."""
        cut = [x for x in (self.stop, self.open_batch) if x is not None]
        return min(cut) if cut else None


class _Batch:
    """A batch being read: its records wait for the COMMIT marker (a plain class: a
    dataclass's generated methods were 3 exec() compilations at every import)."""

    __slots__ = ("count", "lost", "recs", "start")

    def __init__(self, start: int, count: int, lost: bool = False) -> None:
        # offset of its BEGIN marker (or of its first record if BEGIN was damaged)
        self.start = start
        self.count = count  # the count BEGIN announced; -1 when BEGIN was unreadable
        self.recs: list[Rec] = []
        self.lost = lost  # framing inside it was destroyed: some records are unknown


def scan(buf: bytes | mmap.mmap, start: int, end: int, issues: ScanIssues) -> Iterator[Rec]:
    """Yield the records of ``buf[start:end]`` that apply, in file order.

    A record that fails its check but whose framing holds is yielded as a
    ``CORRUPT`` entry naming its probable key (see the module docstring).
    ``issues`` is filled in as the scan goes (complete once the iterator is exhausted).
    """
    unpack = HEADER.unpack_from
    end = min(end, len(buf))  # a file cut shorter than expected reads as a torn tail
    pos = start
    issues.valid_end = start
    batch: _Batch | None = None
    # No record starts inside an OPEN_FILE's zero tail (an all-zero header never
    # validates): scanning ends where it begins.
    open_file = bool(start) and is_open_file(buf)
    zeros = zero_suffix(buf, start, end) if open_file else end
    while pos < end:
        if pos >= zeros:
            issues.unwritten = pos
            break
        if end - pos < HEADER_SIZE:
            issues.stop, issues.stop_reason = pos, "torn record header"
            break
        crc, flags, ts, exp, kl, vl = unpack(buf, pos)
        size = HEADER_SIZE + kl + vl
        nxt = pos + size
        plausible = kl <= MAX_KEY_SIZE_LIMIT and vl <= MAX_VALUE_SIZE_LIMIT and nxt <= end
        ks = pos + HEADER_SIZE
        if not plausible or crc32(buf[pos + 4 : nxt]) != crc or flags & ~KNOWN_FLAGS:
            if open_file and crc == 0:
                # An append whose CRC was never stored (bitcask/_active.py writes it
                # last): it did not complete, and nothing after it was written.
                issues.stop, issues.stop_reason = pos, "append not completed"
                break
            limit = min(zeros, pos + RESYNC_WINDOW)
            framed, skip_to = framing(buf, pos, end, crc, kl, vl, limit)
            if framed is None and skip_to is None and limit < zeros:
                skip_to = resync_past(buf, limit, end, zeros)
            if framed is not None:
                # The framing holds: exactly this record is lost.
                kl, vl, mended = framed
                size = HEADER_SIZE + kl + vl
                nxt = pos + size
                issues.corrupt_records += 1
                if kl == 0 and vl == 4 and batch is not None and len(batch.recs) == batch.count:
                    # The COMMIT of a batch whose every record is here (a BEGIN only
                    # follows a COMMIT): the batch was written whole, so it applies.
                    issues.skipped.append((pos, size, "batch marker CRC mismatch; batch applied"))
                    yield from batch.recs
                    batch = None
                    issues.valid_end = nxt
                elif kl == 0 and vl == 4 and batch is None and _in_batch_at(buf, nxt, end):
                    # A BEGIN: the records after it still wait for their COMMIT.
                    issues.skipped.append((pos, size, "batch marker CRC mismatch"))
                    batch = _Batch(pos, -1)
                else:
                    issues.skipped.append((pos, size, "CRC mismatch; key marked corrupt"))
                    # A mended length proves the rest (the CRC matched): the key is as read.
                    key = (
                        bytes(buf[ks : ks + kl]) if mended else probable_key(buf, pos, kl, nxt, crc)
                    )
                    rec = (pos, size, CORRUPT, 0, 0, key, 0)
                    if batch is not None:
                        batch.recs.append(rec)
                    else:
                        yield rec
                        issues.valid_end = nxt
                pos = nxt
                continue
            if skip_to is None:
                issues.stop = pos
                issues.stop_reason = "torn record" if not plausible else "CRC mismatch"
                break
            issues.corrupt_records += 1
            issues.skipped.append(
                (pos, skip_to - pos, "unreadable bytes, resynchronised at the next valid record")
            )
            if batch is not None:
                batch.lost = True
            pos = skip_to
            continue
        if flags & (BATCH_BEGIN | BATCH_COMMIT | IN_BATCH):
            if flags & BATCH_BEGIN:
                if batch is not None:
                    _drop(issues, batch.start, pos, "batch not committed")
                batch = _Batch(pos, U32.unpack_from(buf, ks + kl)[0] if vl == 4 else -2)
            elif flags & BATCH_COMMIT:
                count = U32.unpack_from(buf, ks + kl)[0] if vl == 4 else -2
                if batch is None:
                    _drop(issues, pos, nxt, "batch marker outside a batch")
                elif batch.count in (count, -1) and (batch.lost or count == len(batch.recs)):
                    # A valid COMMIT: the batch was written whole. Records that fail
                    # their check cost themselves only (CORRUPT entries, or lost bytes
                    # already reported), never their valid neighbours.
                    yield from batch.recs
                    issues.valid_end = nxt
                else:
                    _drop(issues, batch.start, nxt, "batch count mismatch")
                batch = None
            else:
                aux = U32.unpack_from(buf, ks + kl)[0] if flags & TOMBSTONE and vl == 4 else 0
                rec = (pos, size, flags, ts, exp, buf[ks : ks + kl], aux)
                if batch is None:  # its BEGIN was lost in unreadable bytes
                    batch = _Batch(pos, -1, lost=True)
                batch.recs.append(rec)
            pos = nxt
            continue
        if batch is not None:
            _drop(issues, batch.start, pos, "batch not committed")
            batch = None
        aux = U32.unpack_from(buf, ks + kl)[0] if flags & TOMBSTONE and vl == 4 else 0
        yield (pos, size, flags, ts, exp, buf[ks : ks + kl], aux)
        pos = nxt
        issues.valid_end = nxt
    if issues.stop is not None and zeros < end:
        issues.unwritten = max(zeros, issues.stop)
    if batch is not None:
        issues.open_batch = batch.start
        stop = issues.stop if issues.stop is not None else issues.unwritten or end
        _drop(issues, batch.start, stop, "batch not committed")


def _drop(issues: ScanIssues, start: int, end: int, why: str) -> None:
    issues.dropped_batches += 1
    issues.skipped.append((start, end - start, why))


def _in_batch_at(buf: bytes | mmap.mmap, pos: int, end: int) -> bool:
    """Whether a valid record flagged IN_BATCH starts at ``pos``."""
    return valid_at(buf, pos, end) and bool(buf[pos + 4] & IN_BATCH)
