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
would swallow the valid records in between). See ``_framing``.
Otherwise (a damaged length, or garbage) the scanner looks ahead up to
``RESYNC_WINDOW`` bytes for the next offset where a whole record validates (CRC32
over a plausible header, key and value) and resumes there, reporting the bytes in
between; if none is found, scanning stops and the rest of the file is reported as
not loaded ("stop"). In the last file that rest is the torn tail.

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
import re
import struct
from collections.abc import Iterator
from dataclasses import dataclass, field
from zlib import crc32

from ._record import (
    BATCH_BEGIN,
    BATCH_COMMIT,
    HEADER,
    HEADER_SIZE,
    IN_BATCH,
    KNOWN_FLAGS,
    TOMBSTONE,
    U32,
)
from ._syndrome import one_byte_error, probable_key, range_crc
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


# After an unreadable record, look this far ahead for the next record that validates.
RESYNC_WINDOW = 4 << 20
# Cheap pre-filter for a record start: flags <= 0x1f, key_len < 2**20 + 2**16 (so
# every key_len <= 2**20), value_len < 2**31.
# (It looks 26 bytes ahead: a window's last 25 offsets are not examined.)
_CANDIDATE = re.compile(rb"(?=.{4}[\x00-\x1f].{16}\x00[\x00-\x10].{2}[\x00-\x7f])", re.DOTALL)

_LOOKAHEAD = 26
_ZERO_HEADER = bytes(HEADER_SIZE)
_NONZERO = re.compile(rb"[^\x00]")


def _resync(buf: bytes | mmap.mmap, pos: int, end: int, before: int | None = None) -> int | None:
    """Offset of the first record after ``pos`` that validates (within the window,
    and starting before ``before`` when given)."""
    limit = min(end, pos + RESYNC_WINDOW if before is None else before)
    # The pattern reads the buffer in place (slicing the window copied up to 4 MiB
    # per call); ``limit`` bounds its look-ahead exactly as the slice's end did.
    start = pos + 1
    while start < limit:
        for m in _CANDIDATE.finditer(buf, start, limit):
            q = m.start()
            if not buf[q] and buf[q : q + HEADER_SIZE] == _ZERO_HEADER:
                # A zeroed range (a common kind of damage) matches the pattern at
                # every offset and never validates (crc32 of zeros is not 0):
                # skip to the last offsets whose header reaches a non-zero byte.
                z = _NONZERO.search(buf, q + HEADER_SIZE, limit)
                start = max(q + 1, (limit if z is None else z.start()) - HEADER_SIZE + 1)
                break
            if _valid_at(buf, q, end):
                return q
        else:
            return None
    return None


def _framing(
    buf: bytes | mmap.mmap, pos: int, end: int, crc: int, kl: int, vl: int, limit: int
) -> tuple[tuple[int, int, bool] | None, int | None]:
    """((key_len, value_len, mended), None) of a record at ``pos`` that fails its
    check, when its extent is known; (None, where the caller resumes) when its
    framing is destroyed: the first valid record before ``limit`` (``_resync``,
    found here once), or None (the caller stops).

    1. The stored lengths are plausible, lead to the end or to a valid record, and
       the CRC matches them (only a reserved flag is wrong) or places a one-byte
       error outside the length fields: the stored lengths. (The cheap explanation,
       tried first: one probe. Rule 2 could also match only by a 32-bit CRC
       coincidence, as the located error already explains the mismatch.)
    2. A one-byte error in a length field whose correction makes the CRC match (and
       leads to the end or to a valid record): the corrected lengths, ``mended``.
    3. Otherwise the stored lengths, when they are plausible, lead to the end or to
       a valid record, and no valid record starts inside the span they claim. (A
       flipped length can land exactly on a later record; the valid records it
       would swallow show that the length, not the record's contents, is what was
       hit.)
    """
    nxt = pos + HEADER_SIZE + kl + vl
    stored = (
        kl <= MAX_KEY_SIZE_LIMIT
        and vl <= MAX_VALUE_SIZE_LIMIT
        and nxt <= end
        and (nxt == end or _valid_at(buf, nxt, end))
    )
    if stored:
        if crc32(buf[pos + 4 : nxt]) == crc:  # only a reserved flag is wrong
            return (kl, vl, False), None
        bad = one_byte_error(buf, pos, nxt, crc)
        if bad is not None and not _LENGTHS <= bad - pos < HEADER_SIZE:
            return (kl, vl, False), None
    # A flipped length: the record really ends at the first valid record after it
    # (or at the end of the file), found by one forward resync, and the correction
    # that makes it end there makes the CRC match. No valid record starts before
    # that one, so the full search below only probes ends past it (a value that
    # holds records, or damage beyond one byte).
    first = _resync(buf, pos, end, limit)
    for n2 in (end,) if first is None else (first, end):
        mended = _mend_to(buf, pos, crc, kl, vl, n2)
        if mended is not None:
            return (mended[0], mended[1], True), None
    # The resync examined every start up to _LOOKAHEAD bytes before its limit.
    floor = first if first is not None else limit - _LOOKAHEAD
    mended = _mend_length(buf, pos, end, crc, kl, vl, floor)
    if mended is not None:
        return (mended[0], mended[1], True), None
    if not stored:
        return None, first
    # A valid record inside the span the stored lengths claim?
    if first is not None:
        inside = first <= nxt - _LOOKAHEAD
    else:
        inside = nxt > limit and _resync(buf, pos, end, before=nxt) is not None
    return (None, first) if inside else ((kl, vl, False), None)


def _length_bytes(kl: int, vl: int) -> Iterator[tuple[int, bool, int, int]]:
    """(header offset, in key_len, shift, the field's other length) of each length byte
    a one-byte correction may touch, in search order: key_len then value_len, each
    big-endian, skipping a field whose other field is implausible."""
    for at in range(_LENGTHS, HEADER_SIZE):
        in_key = at < _LENGTHS + 4
        other = vl if in_key else kl
        if other <= (MAX_VALUE_SIZE_LIMIT if in_key else MAX_KEY_SIZE_LIMIT):
            yield at, in_key, 8 * (3 - (at - _LENGTHS) % 4), other


def _crc_mended(buf: bytes | mmap.mmap, pos: int, crc: int, at: int, x: int, n2: int) -> bool:
    """Whether the record at ``pos``, header byte ``at`` xor ``x``, ending at ``n2``,
    matches ``crc``."""
    head = bytearray(buf[pos + 4 : pos + HEADER_SIZE])
    head[at - 4] ^= x
    return crc32(buf[pos + HEADER_SIZE : n2], crc32(head)) == crc


def _mend_to(
    buf: bytes | mmap.mmap, pos: int, crc: int, kl: int, vl: int, n2: int
) -> tuple[int, int] | None:
    """The lengths once the one-byte length correction that makes the record end at
    ``n2`` is made, when there is one and it makes the CRC match (at most one
    correction per length byte, so at most 8 CRCs)."""
    delta = n2 - (pos + HEADER_SIZE + kl + vl)
    for at, in_key, shift, _other in _length_bytes(kl, vl):
        own = kl if in_key else vl
        if delta % (1 << shift):
            continue
        old = own >> shift & 0xFF
        y = old + (delta >> shift)
        f2 = own + delta
        if y == old or not 0 <= y <= 255:
            continue
        if f2 > (MAX_KEY_SIZE_LIMIT if in_key else MAX_VALUE_SIZE_LIMIT):
            continue
        if _crc_mended(buf, pos, crc, at, old ^ y, n2):
            return (f2, vl) if in_key else (kl, f2)
    return None


def _mend_length(
    buf: bytes | mmap.mmap, pos: int, end: int, crc: int, kl: int, vl: int, floor: int
) -> tuple[int, int] | None:
    """The lengths once a one-byte error in key_len or val_len is corrected, when the
    correction makes the CRC match and the record then is followed by a valid record
    starting at ``floor`` or later; the first such correction in (byte, xor value)
    order. (The caller has tried the end of the file, and knows that no valid record
    starts between ``pos`` and ``floor``.)

    A valid record has a zero byte 21 (key_len <= 2**20): the bytes at offset 21 of
    one length byte's 255 candidate ends are read in one strided slice, and only the
    candidates where it is zero are probed (``_valid_at``), not all 255.
    """
    base = pos + HEADER_SIZE
    for at, in_key, shift, other in _length_bytes(kl, vl):
        own = kl if in_key else vl
        old = own >> shift & 0xFF
        rest = own - (old << shift)  # the field with this byte zeroed
        # The corrected field is rest + (y << shift), y = old ^ x: within its limit,
        # the record followed by a whole record header within the file.
        cap = min(
            MAX_KEY_SIZE_LIMIT if in_key else MAX_VALUE_SIZE_LIMIT,
            end - HEADER_SIZE - base - other,
        )
        if cap < rest:
            continue
        step = 1 << shift
        first = base + other + rest  # the end the record has with y = 0
        lo = max(0, -((first - floor) // step))  # the first y ending at floor or later
        top = min(255, (cap - rest) >> shift)
        if lo > top:
            continue
        tops = buf[first + lo * step + 21 : first + top * step + 22 : step]
        ys = []
        i = tops.find(0)
        while i >= 0:
            if lo + i != old:
                ys.append(lo + i)
            i = tops.find(0, i + 1)
        for x in sorted(y ^ old for y in ys):
            n2 = first + ((x ^ old) << shift)
            if _valid_at(buf, n2, end) and _crc_mended(buf, pos, crc, at, x, n2):
                f2 = rest + ((x ^ old) << shift)
                return (f2, vl) if in_key else (kl, f2)
    return None


# Offset of key_len in a record header (key_len 21-24, value_len 25-28).
_LENGTHS = HEADER_SIZE - 8


def _valid_at(buf: bytes | mmap.mmap, pos: int, end: int) -> bool:
    """Whether a valid record starts at ``pos``: plausible, no reserved flag, and its
    CRC matches (rule 3 of docs/format.md; every such record matches ``_CANDIDATE``)."""
    if end - pos < HEADER_SIZE:
        return False
    crc, flags, _ts, _exp, kl, vl = HEADER.unpack_from(buf, pos)
    nxt = pos + HEADER_SIZE + kl + vl
    return (
        nxt <= end
        and kl <= MAX_KEY_SIZE_LIMIT
        and vl <= MAX_VALUE_SIZE_LIMIT
        and not flags & ~KNOWN_FLAGS
        and range_crc(buf, pos + 4, nxt) == int(crc)
    )


@dataclass
class _Batch:
    """A batch being read: its records wait for the COMMIT marker."""

    start: int  # offset of its BEGIN marker (or of its first record if BEGIN was damaged)
    count: int  # the count BEGIN announced; -1 when BEGIN was unreadable
    recs: list[Rec] = field(default_factory=list)
    lost: bool = False  # framing inside it was destroyed: some records are unknown


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
            framed, skip_to = _framing(buf, pos, end, crc, kl, vl, min(zeros, pos + RESYNC_WINDOW))
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
    return _valid_at(buf, pos, end) and bool(buf[pos + 4] & IN_BATCH)
