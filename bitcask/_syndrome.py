"""CRC-32 syndromes: where a damaged record's one wrong byte lies.

Strategy: CRC-32 is linear over GF(2). The syndrome of a record (the CRC computed
over its bytes xor the CRC stored in it) depends only on the error, not on the
data: a one-byte error ``x`` followed by ``m`` bytes leaves the syndrome
Z^m(_T[x]), where Z is the register step for a zero byte. Walking a syndrome back
through Z^-1 therefore finds the byte a single-byte error lies in (and its value).
The scanner (``_datafile``) uses this to tell a damaged value from a damaged
length field (``one_byte_error``) and to name the key a damaged record belongs to
(``probable_key``); docs/format.md, "Reading records", states both rules.
"""

from __future__ import annotations

import functools
import mmap
from zlib import crc32

from ._record import HEADER_SIZE

__all__ = ["one_byte_error", "probable_key"]

# CRC-32 is linear: the syndrome (computed xor stored CRC) of a one-byte error x
# followed by m bytes is Z^m(_T[x]), where Z is the register step for a zero byte,
# Z(r) = r >> 8 ^ _T[r & 0xFF]. Z is a bijection (the top bytes of _T are distinct),
# so walking the syndrome back through Z^-1 finds where such an error lies.
_T = [crc32(bytes([x])) ^ crc32(b"\0") for x in range(256)]
_T_ERROR = {t: x for x, t in enumerate(_T) if x}
_T_BY_TOP = {t >> 24: x for x, t in enumerate(_T)}
# Records larger than this are not searched for a one-byte error (pure-Python walk).
_LOCATE_LIMIT = 1 << 20


def one_byte_error(buf: bytes | mmap.mmap, pos: int, nxt: int, crc: int) -> int | None:
    """File offset of the one byte whose flip explains the record's CRC mismatch
    (the CRC field itself included), or None if no single byte does."""
    syndrome = crc32(buf[pos + 4 : nxt]) ^ crc
    for i in range(4):  # the stored CRC is the damaged part (big-endian u32)
        if syndrome and not syndrome & ~(0xFF << 8 * (3 - i)):
            return pos + i
    if not syndrome or nxt - pos > _LOCATE_LIMIT:
        return None
    r = syndrome
    for m in range(nxt - pos - 4):
        if r in _T_ERROR:
            return nxt - 1 - m
        r = _back(r)
    return None


def _back(r: int) -> int:
    """Z^-1(r): the syndrome walked back over one byte."""
    x = _T_BY_TOP[r >> 24]
    return ((r ^ _T[x]) << 8 | x) & 0xFFFFFFFF


def probable_key(buf: bytes | mmap.mmap, pos: int, kl: int, end: int, crc: int) -> bytes:
    """The key a damaged record (framing intact) most probably belongs to.

    The key as read, unless the CRC says one byte of the key itself was flipped:
    CRC-32 is linear, so the syndrome (computed CRC xor stored CRC) of a single-byte
    error ``x`` that lies ``m`` bytes before the end equals ``crc32(x, 0*m) xor
    crc32(0*(m+1))`` = Z^m(_T[x]), whatever precedes it. Walking the syndrome back
    (Z^-1) to each key byte finds such an error and undoes it (the first key byte
    that explains it), so a flip that turns ``key:0077`` into ``key:0067`` blames
    ``key:0077``, not the innocent ``key:0067``. The walk jumps over the value in
    O(log) steps (``_unwind``): its cost is the key's length, not the record's.
    (A false match needs a 32-bit coincidence among 255 x key_len candidates.)
    """
    ks = pos + HEADER_SIZE
    key = bytes(buf[ks : ks + kl])
    syndrome = crc32(buf[pos + 4 : end]) ^ crc
    if not syndrome or not kl:
        return key
    r = _unwind(syndrome, end - ks - kl)  # at the key's last byte
    found = None
    for i in range(kl - 1, -1, -1):
        x = _T_ERROR.get(r)
        if x is not None:
            found = i, x
        r = _back(r)
    if found is None:
        return key
    i, x = found
    return key[:i] + bytes([key[i] ^ x]) + key[i + 1 :]


def _unwind(r: int, m: int) -> int:
    """Z^-m(r): the syndrome ``r`` walked back over ``m`` bytes."""
    tables = _unwind_tables()
    k = 0
    while m:
        if m & 1:
            r = _apply(tables[k], r)
        m >>= 1
        k += 1
    return r


def _apply(tables: tuple[list[int], ...], r: int) -> int:
    t0, t1, t2, t3 = tables
    return t0[r & 0xFF] ^ t1[r >> 8 & 0xFF] ^ t2[r >> 16 & 0xFF] ^ t3[r >> 24]


@functools.cache
def _unwind_tables() -> list[tuple[list[int], ...]]:
    """Z^-(2^k) for k < 32 as four byte tables each (Z is linear over GF(2)); built
    once, on the first damaged record (a few ms)."""

    def tables_of(images: list[int]) -> tuple[list[int], ...]:
        out = []
        for byte in range(4):
            t = [0] * 256
            for v in range(1, 256):
                low = v & -v
                t[v] = t[v ^ low] ^ images[8 * byte + low.bit_length() - 1]
            out.append(t)
        return tuple(out)

    images = [_back(1 << j) for j in range(32)]
    levels = [tables_of(images)]
    for _ in range(31):
        last = levels[-1]
        images = [_apply(last, _apply(last, 1 << j)) for j in range(32)]
        levels.append(tables_of(images))
    return levels
