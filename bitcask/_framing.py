"""Framing of a damaged record: where it ends, or where the next valid record starts.

Strategy: the scanner (``_datafile.scan``) calls ``framing`` for a record that
fails its check. It returns the record's extent when the framing holds (rule 4 of
docs/format.md, "Reading records"), else the offset ``resync`` found: the first
offset after it where a whole valid record starts (``valid_at``: rule 3), within
``RESYNC_WINDOW`` bytes. Every step costs a bounded number of probes per damaged
record: the stored lengths are checked first (one probe of the next record), a
flipped length is tried against the first valid record after it (one resync) and
the end of the file, and the one-byte length search probes only candidate ends
past that record whose byte 21 is zero. A resync skips a zeroed range in one
search and CRCs a probe's claimed range at a cost independent of its length
(``range_crc``).
"""

from __future__ import annotations

import mmap
import re
from collections.abc import Iterator
from zlib import crc32

from ._record import HEADER, HEADER_SIZE, KNOWN_FLAGS
from ._syndrome import one_byte_error, range_crc
from .options import MAX_KEY_SIZE_LIMIT, MAX_VALUE_SIZE_LIMIT

__all__ = ["RESYNC_WINDOW", "framing", "resync", "resync_past", "valid_at"]

# After an unreadable record, look this far ahead for the next record that validates.
RESYNC_WINDOW = 4 << 20
# Cheap pre-filter for a record start: flags <= 0x1f, key_len < 2**20 + 2**16 (so
# every key_len <= 2**20), value_len < 2**31.
# (It looks 26 bytes ahead: a window's last 25 offsets are not examined.)
_CANDIDATE = re.compile(rb"(?=.{4}[\x00-\x1f].{16}\x00[\x00-\x10].{2}[\x00-\x7f])", re.DOTALL)

_LOOKAHEAD = 26
_ZERO_HEADER = bytes(HEADER_SIZE)
_NONZERO = re.compile(rb"[^\x00]")


def resync(buf: bytes | mmap.mmap, pos: int, end: int, before: int | None = None) -> int | None:
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
            if valid_at(buf, q, end):
                return q
        else:
            return None
    return None


def resync_past(buf: bytes | mmap.mmap, limit: int, end: int, before: int) -> int | None:
    """Offset of the first record that validates (and starts before ``before``) from
    the end of a window that ``resync`` searched in vain (its ``limit``) on.

    A window of garbage is no evidence that nothing valid follows: 5 MiB of damage
    in the middle of a file hid every record after it, and a writer open cut them
    off as a torn tail (docs/format.md, rule 5). The scanner calls this once where
    it would stop and resumes past what it finds, so each byte is searched once.
    """
    # resync examined every start up to _LOOKAHEAD bytes before its limit.
    return resync(buf, limit - _LOOKAHEAD - 1, end, before)


def framing(
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
        and (nxt == end or valid_at(buf, nxt, end))
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
    first = resync(buf, pos, end, limit)
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
        inside = nxt > limit and resync(buf, pos, end, before=nxt) is not None
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
            if valid_at(buf, n2, end) and _crc_mended(buf, pos, crc, at, x, n2):
                f2 = rest + ((x ^ old) << shift)
                return (f2, vl) if in_key else (kl, f2)
    return None


# Offset of key_len in a record header (key_len 21-24, value_len 25-28).
_LENGTHS = HEADER_SIZE - 8


def valid_at(buf: bytes | mmap.mmap, pos: int, end: int) -> bool:
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
