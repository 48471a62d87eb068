"""Framing of a damaged record: where it ends, or where the next valid record starts.

Strategy: the scanner (``_datafile.scan``) calls ``framing`` for a record that
fails its check. It returns the record's extent when the framing holds (rule 4 of
docs/format.md, "Reading records"), else the offset ``resync`` found: the first
offset after it where a whole valid record starts (``valid_at``: rule 3), within
``RESYNC_WINDOW`` bytes. Every step costs a bounded number of probes per damaged
record: the stored lengths are checked first (one probe of the next record), a
flipped length is tried against the first valid record after it (one resync) and
the end of the file, and the one-byte length search probes only candidate ends
past that record whose byte 21 is zero. A resync probes only the offsets where a
header the rules allow could start (``candidates``: one pattern, derived from the
rules, run in C: 64 MiB of random bytes cost 0.26 s of CPU, was 3.5 s), skips a
zeroed range in one search, and CRCs a probe's claimed range at a cost independent of its length
(``range_crc``).
"""

from __future__ import annotations

import functools
import mmap
import re
import struct
from collections.abc import Iterator

from ._record import HEADER_SIZE, KNOWN_FLAGS, crc32
from ._syndrome import one_byte_error, range_crc
from .options import MAX_KEY_SIZE_LIMIT, MAX_VALUE_SIZE_LIMIT

__all__ = ["RESYNC_WINDOW", "framing", "resync", "resync_past", "valid_at"]

# After an unreadable record, look this far ahead for the next record that validates.
RESYNC_WINDOW = 4 << 20
# Offset of key_len in a record header (key_len 21-24, value_len 25-28).
_LENGTHS = HEADER_SIZE - 8
# A resync examines the starts whose first _LOOKAHEAD bytes lie before its limit (the
# span of the pattern it once used); its pattern reads a whole header, _REACH more.
_LOOKAHEAD = 26
_REACH = HEADER_SIZE - _LOOKAHEAD
_ZERO_HEADER = bytes(HEADER_SIZE)
# HEADER without the timestamp and expiry, which no rule reads: crc, flags, key_len,
# value_len (unpacking two u64 a probe never looks at cost ~10% of a probe).
_PROBE = struct.Struct(">IB16xII")
assert _PROBE.size == HEADER_SIZE
_NONZERO = re.compile(rb"[^\x00]")


def resync(buf: bytes | mmap.mmap, pos: int, end: int, before: int | None = None) -> int | None:
    """Offset of the first record after ``pos`` that validates (within the window,
    and starting before ``before`` when given)."""
    limit = min(end, pos + RESYNC_WINDOW if before is None else before)
    room = end - pos - 1 - HEADER_SIZE  # key_len + value_len of any record after pos
    if room < 0:
        return None
    # The pattern reads the buffer in place (slicing the window copied up to 4 MiB
    # per call); it matches at byte 21 of each candidate, so both bounds move by 21.
    find = candidates(room.bit_length()).finditer
    start = pos + 1
    while start < limit:
        for m in find(buf, start + _LENGTHS, limit + _REACH):
            q = m.start() - _LENGTHS
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


@functools.cache
def candidates(bits: int) -> re.Pattern[bytes]:
    """Where a record may start, as one pattern run in C: it matches at byte 21
    (key_len's first byte) of exactly the headers whose flags and lengths
    ``valid_at`` accepts, with both lengths below ``2**bits`` (the bytes left in
    the file); only those offsets are probed.

    Derived from the rules, not written beside them: the flags byte has no bit
    outside ``KNOWN_FLAGS``, key_len <= ``MAX_KEY_SIZE_LIMIT``, value_len <=
    ``MAX_VALUE_SIZE_LIMIT`` (tests/bitcask/test_resync_filter.py checks it never
    misses a record ``valid_at`` accepts). key_len < 2**24, so its first byte is
    zero: the search runs on that literal byte (a byte search in C; the pattern
    before opened with a look-ahead, tried at every offset: ~50 ns a byte); the flags
    byte 17 bytes before it is looked behind for, the lengths ahead.
    """
    cap = (1 << bits) - 1
    flags = b"".join(_byte(b) for b in range(256) if not b & ~KNOWN_FLAGS)
    key_len = min(MAX_KEY_SIZE_LIMIT, cap)
    assert key_len < 1 << 24, "the search runs on key_len's first byte being zero"
    value_len = _at_most(min(MAX_VALUE_SIZE_LIMIT, cap), 4)
    rest = _at_most(key_len, 3)
    pattern = b"%s(?<=[%s].{16}%s)(?=%s%s)" % (_byte(0), flags, _byte(0), rest, value_len)
    return re.compile(pattern, re.DOTALL)


def _at_most(n: int, width: int) -> bytes:
    """A pattern for the big-endian unsigned ints of ``width`` bytes that are <= ``n``."""
    low = (1 << 8 * (width - 1)) - 1  # the largest value of the bytes after the first
    top, rest = divmod(min(n, (1 << 8 * width) - 1), low + 1)
    if rest == low:
        return b"[%s-%s]%s" % (_byte(0), _byte(top), b"." * (width - 1))
    alts = [_byte(top) + _at_most(rest, width - 1)]
    if top:
        alts.insert(0, b"[%s-%s]%s" % (_byte(0), _byte(top - 1), b"." * (width - 1)))
    return b"(?:%s)" % b"|".join(alts)


def _byte(b: int) -> bytes:
    return b"\\x%02x" % b


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


def valid_at(buf: bytes | mmap.mmap, pos: int, end: int) -> bool:
    """Whether a valid record starts at ``pos``: plausible, no reserved flag, and its
    CRC matches (rule 3 of docs/format.md; ``candidates`` matches every such record)."""
    if end - pos < HEADER_SIZE:
        return False
    crc, flags, kl, vl = _PROBE.unpack_from(buf, pos)
    nxt = pos + HEADER_SIZE + kl + vl
    return (
        nxt <= end
        and kl <= MAX_KEY_SIZE_LIMIT
        and vl <= MAX_VALUE_SIZE_LIMIT
        and not flags & ~KNOWN_FLAGS
        and range_crc(buf, pos + 4, nxt) == crc
    )
