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
import threading
import weakref
from array import array
from collections.abc import Iterator

from ._record import HEADER_SIZE, crc32

__all__ = ["one_byte_error", "probable_key", "range_crc"]

# CRC-32 is linear: the syndrome (computed xor stored CRC) of a one-byte error x
# followed by m bytes is Z^m(_T[x]), where Z is the register step for a zero byte,
# Z(r) = r >> 8 ^ _T[r & 0xFF]. Z is a bijection (the top bytes of _T are distinct),
# so walking the syndrome back through Z^-1 finds where such an error lies.
_T = [crc32(bytes([x])) ^ crc32(b"\0") for x in range(256)]
_T_ERROR = {t: x for x, t in enumerate(_T) if x}
_T_BY_TOP = {t >> 24: x for x, t in enumerate(_T)}
# Records larger than this are not searched for a one-byte error (1/64 of a
# pure-Python step per byte: ``_hits``).
_LOCATE_LIMIT = 1 << 20
# Baby-step giant-step: the walk back goes _BLOCK bytes per step (one table jump,
# Z^-_BLOCK), and a table of Z^j(_T[x]) for j < _BLOCK (255 * _BLOCK entries, built
# once) says where in the block an error lies.
_BLOCK_BITS = 6
_BLOCK = 1 << _BLOCK_BITS


def one_byte_error(buf: bytes | mmap.mmap, pos: int, nxt: int, crc: int) -> int | None:
    """File offset of the one byte whose flip explains the record's CRC mismatch
    (the CRC field itself included), or None if no single byte does."""
    syndrome = crc32(buf[pos + 4 : nxt]) ^ crc
    for i in range(4):  # the stored CRC is the damaged part (big-endian u32)
        if syndrome and not syndrome & ~(0xFF << 8 * (3 - i)):
            return pos + i
    if not syndrome or nxt - pos > _LOCATE_LIMIT:
        return None
    for m, _x in _hits(syndrome, 0, nxt - pos - 4):
        return nxt - 1 - m
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
    O(log) steps (``_unwind``) and over the key in blocks (``_hits``).
    (A false match needs a 32-bit coincidence among 255 x key_len candidates.)
    """
    ks = pos + HEADER_SIZE
    key = bytes(buf[ks : ks + kl])
    syndrome = crc32(buf[pos + 4 : end]) ^ crc
    if not syndrome or not kl:
        return key
    vl = end - ks - kl
    found = None
    for m, x in _hits(syndrome, vl, vl + kl):  # the key's last byte first
        found = kl - 1 - (m - vl), x
    if found is None:
        return key
    i, x = found
    return key[:i] + bytes([key[i] ^ x]) + key[i + 1 :]


def _hits(syndrome: int, start: int, stop: int) -> Iterator[tuple[int, int]]:
    """(m, x), m ascending in [start, stop): the one-byte errors ``x`` lying ``m``
    bytes before the end of the record that explain ``syndrome`` (Z^-m(syndrome) =
    _T[x]; at most one x per m)."""
    baby, more = _baby_steps()
    giant = _jump_tables(backward=True)[_BLOCK_BITS]
    r = _unwind(syndrome, start)
    for b in range(start, stop, _BLOCK):
        code = baby.get(r)
        if code is not None:
            for c in (code, *more.get(r, ())):
                m = b + (c >> 8)
                if m < stop:
                    yield m, c & 0xFF
        r = _apply(giant, r)


@functools.cache
def _baby_steps() -> tuple[dict[int, int], dict[int, list[int]]]:
    """Z^j(_T[x]) -> j << 8 | x for j < _BLOCK, the smallest j of each value; the
    others (two errors that leave one syndrome within a block: none are known) in
    the second dict."""
    baby: dict[int, int] = {}
    more: dict[int, list[int]] = {}
    values = _T[1:]
    for j in range(_BLOCK):
        for x, v in enumerate(values, 1):
            if v in baby:
                more.setdefault(v, []).append(j << 8 | x)
            else:
                baby[v] = j << 8 | x
        values = [v >> 8 ^ _T[v & 0xFF] for v in values]
    return baby, more


def _unwind(r: int, m: int) -> int:
    """Z^-m(r): the syndrome ``r`` walked back over ``m`` bytes."""
    return _jump(_jump_tables(backward=True), r, m)


def _jump(tables: list[tuple[list[int], ...]], r: int, m: int) -> int:
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
def _jump_tables(backward: bool) -> list[tuple[list[int], ...]]:
    """Z^-(2^k) (or Z^(2^k)) for k < 32 as four byte tables each (Z is linear over
    GF(2)); built once, when first needed (a few ms)."""

    images = [_back(1 << j) if backward else _zero_step(1 << j) for j in range(32)]
    levels = [_tables_of(images)]
    for _ in range(31):
        last = levels[-1]
        images = [_apply(last, _apply(last, 1 << j)) for j in range(32)]
        levels.append(_tables_of(images))
    return levels


def _tables_of(images: list[int]) -> tuple[list[int], ...]:
    """The linear map taking bit j to ``images[j]``, as four byte tables (``_apply``)."""
    out = []
    for byte in range(4):
        t = [0] * 256
        for v in range(1, 256):
            low = v & -v
            t[v] = t[v ^ low] ^ images[8 * byte + low.bit_length() - 1]
        out.append(t)
    return tuple(out)


def _zero_step(r: int) -> int:
    """Z(r): the CRC register after one zero byte (without zlib's inversions)."""
    return r >> 8 ^ _T[r & 0xFF]


# range_crc: raw registers (zlib's without the inversions) of buf[_BASE:x] for every
# x = _BASE + a multiple of _CHECKPOINT, for the last mapped buffer asked about
# (weakly held). A data file's records below the end a scan reads never change
# (appends go past it, a rewritten file is a new mapping; only the 16-byte file
# header is rewritten in place, when a writer seals its file: hence _BASE), and
# only registers below that end are kept.
_BASE = 16
_CHECKPOINT = 1 << 10  # crc32 of < 1 KiB at either end of a range
_DIRECT = 1 << 12  # ranges shorter than this are CRC'd directly (the jump costs as much)
assert _DIRECT >= 2 * _CHECKPOINT  # a longer range spans a whole block (range_crc)
_M = 0xFFFFFFFF
_prefixes: tuple[weakref.ref[mmap.mmap], array[int]] | None = None
_prefixes_lock = threading.Lock()


def range_crc(buf: bytes | mmap.mmap, a: int, b: int) -> int:
    """``crc32(buf[a:b])``, at a cost independent of ``b - a`` for a long range of a
    mapped file. With a1 the first checkpoint at or after ``a``, b0 the last at or
    before ``b``, and R the prefix registers (raw CRC of ``buf[_BASE:x]``) stored at
    checkpoints: the register after ``buf[a:a1]`` (crc32 of < 1 KiB) is carried over
    the whole blocks to b0, X = Z^(b0-a1)(Y ^ R(a1)) ^ R(b0) (CRC-32 is affine: the
    bytes' own part of R(b0) is R(b0) ^ Z^(b0-a1)(R(a1))), then on over ``buf[b0:b]``
    (< 1 KiB). A resync probes records at offsets that are not record starts; the
    lengths read there claim up to the rest of the file, and CRCs over them cost
    the scan of a 64 MiB file hours."""
    if b - a < _DIRECT or a < _BASE or not isinstance(buf, mmap.mmap):
        return crc32(buf[a:b])
    ia = -((_BASE - a) // _CHECKPOINT)  # a1 = _BASE + ia * _CHECKPOINT >= a
    ib = (b - _BASE) // _CHECKPOINT  # b0 <= b; b - a >= 2 * _CHECKPOINT, so ia < ib
    regs = _registers(buf, ib)
    y = crc32(buf[a : _BASE + ia * _CHECKPOINT]) ^ _M
    x = _over_blocks(y ^ regs[ia], ib - ia) ^ regs[ib]
    return crc32(buf[_BASE + ib * _CHECKPOINT : b], x ^ _M)


def _registers(buf: mmap.mmap, i: int) -> array[int]:
    """The prefix registers of ``buf``, at least up to checkpoint ``i``."""
    global _prefixes
    state = _prefixes  # registers once stored never change: read them without the lock
    if state is not None and i < len(state[1]) and state[0]() is buf:
        return state[1]
    with _prefixes_lock:
        state = _prefixes
        if state is None or state[0]() is not buf:
            state = _prefixes = (weakref.ref(buf), array("I", [0]))  # 4 MB per GiB
        regs = state[1]
        while len(regs) <= i:
            j = len(regs) - 1
            at = _BASE + j * _CHECKPOINT
            regs.append(_raw(regs[j], buf[at : at + _CHECKPOINT]))
        return regs


# _over_blocks: a jump over k whole checkpoint blocks applies one table per non-zero
# hex digit of k (at most 3 below 4 MiB, 5 below 1 GiB), not one per set bit of the
# byte count (about 12 for a random 24-bit length): a resync over records cut
# mid-header probes ~25,000 ranges of 4 KiB or more per MiB, and the jump was most of
# their cost. Ranges are below 2**32 bytes (a record's lengths): k < 16**_BLOCK_DIGITS.
_BLOCK_DIGITS = 6


@functools.cache
def _block_tables() -> list[list[tuple[list[int], ...]]]:
    """Z^(_CHECKPOINT * d * 16**i) for i < _BLOCK_DIGITS, 0 < d < 16 (index d - 1),
    as byte tables; built once, when a long range is first asked about."""
    levels = _jump_tables(backward=False)
    base = _tables_of([_jump(levels, 1 << j, _CHECKPOINT) for j in range(32)])
    rows = []
    for _ in range(_BLOCK_DIGITS):
        images = [1 << j for j in range(32)]
        row = []
        for _d in range(15):
            images = [_apply(base, v) for v in images]
            row.append(_tables_of(images))
        rows.append(row)
        base = _tables_of([_apply(base, v) for v in images])  # the 16th step: next digit
    return rows


def _over_blocks(r: int, k: int) -> int:
    """Z^(k * _CHECKPOINT)(r): the raw CRC register ``r`` after k blocks of zeros."""
    rows = _block_tables()
    i = 0
    while k:
        d = k & 15
        if d:
            t0, t1, t2, t3 = rows[i][d - 1]
            r = t0[r & 0xFF] ^ t1[r >> 8 & 0xFF] ^ t2[r >> 16 & 0xFF] ^ t3[r >> 24]
        k >>= 4
        i += 1
    return r


def _raw(reg: int, data: bytes) -> int:
    return crc32(data, reg ^ _M) ^ _M
