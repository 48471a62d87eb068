"""Validating and encoding writes: what a write becomes before it takes the lock.

Strategy (invariants):
- One place turns what a caller passes (a put's key, value and ttl; a batch's ops)
  into records: ``OpEncoder.record`` for one value record, ``OpEncoder.ops`` for a
  batch's ops (every put through ``record``). The writer calls them outside its lock,
  so a refused write (a bad op, a key or value over its limit, a bad ttl) raises
  before anything is written, and the lock is held only to place, append and
  publish (bitcask/_writer.py).
- Pure: an encoder holds the size limits and the store's clock (TTLs), nothing it
  mutates; the record layout itself is bitcask/_record.py's.
- An ``Op`` (a read-modify-write op, bitcask/_rmw.py) among a batch's ops raises
  ``Planned``: the whole batch is then decided under the lock (bitcask/_planned.py).
"""

from __future__ import annotations

import math
import struct
from collections.abc import Callable, Sequence
from datetime import timedelta
from typing import Any

from ._planned import Planned
from ._record import BODY_HEADER, BODY_HEADER_NO_EXPIRY, CRC, TTL, as_bytes, crc32
from ._rmw import Op
from .errors import KeyTooLargeError, ValueTooLargeError

__all__ = ["MAX_EXPIRY_MS", "OpEncoder", "expiry_ms"]

# The latest expiry a record may carry, in ms since the epoch: a signed 64-bit
# integer, as Redis bounds its expiries (the field itself is u64).
MAX_EXPIRY_MS = (1 << 63) - 1
_pack_body = BODY_HEADER.pack
_pack_no_expiry = BODY_HEADER_NO_EXPIRY.pack
_pack_crc = CRC.pack
# BODY_HEADER_NO_EXPIRY in two steps, for a batch (``OpEncoder.ops``): its first 17
# bytes (flags, timestamp, the zero expiry) are the same for every plain put of the
# batch, packed once; each put packs them as bytes with its lengths. The same bytes.
_pack_batch_prefix = struct.Struct(">BQ8x").pack
_pack_with_prefix = struct.Struct(">17sII").pack


# A value longer than this is encoded by ``_large_record``: copied once into its
# record, not twice (header + key + value, then the CRC + that body). A put of 64 MiB
# held the value and both copies at once: +193 MiB peak in the server, now +135 (the
# frame's receive buffer and the value). Below it the two small copies are cheaper
# than ``_large_record``'s three CRC calls and its join.
LARGE_VALUE = 64 * 1024


def _large_record(key: bytes, value: bytes, exp: int, inner: int, ts: int) -> bytes:
    """``OpEncoder.record``'s record of a large value, the same bytes, one copy."""
    kl, vl = len(key), len(value)
    if exp:
        head = _pack_body(inner | TTL, ts, exp, kl, vl) + key
    else:
        head = _pack_no_expiry(inner, ts, kl, vl) + key
    return b"".join((_pack_crc(crc32(value, crc32(head))), head, value))


# Every malformed batch op, one sentence: the shapes there are (a put with no value
# used to say "unknown batch op ('put', b'a')", as if "put" were unknown).
_BAD_OP = (
    "a batch op is ('put', key, value[, ttl]) or ('delete', key), not {!r}"
    " (a batch is a list of them)"
)


def expiry_ms(clock: Callable[[], float], ttl: object) -> int:
    """The expiry (ms since the epoch) of a record written now with ``ttl`` seconds
    (an int, a float or a ``datetime.timedelta``).

    Raises:
        TypeError / ValueError: ``ttl`` is not a positive finite number, or too far,
            or the clock reads so far before 1970 that the expiry would too.
    """
    if isinstance(ttl, timedelta):  # what redis-py's ex= takes, and datetime users have
        ttl = ttl.total_seconds()
    elif isinstance(ttl, bool) or not isinstance(ttl, int | float):
        raise TypeError(f"ttl must be a number of seconds or a timedelta, not {ttl!r}")
    if not (ttl > 0 and math.isfinite(ttl)):
        raise ValueError(f"ttl must be a positive number of seconds, not {ttl!r}")
    now = clock()
    exp = int((now + ttl) * 1000) or 1
    if exp < 0:
        # The u64 field holds no expiry before 1970 (Redis too refuses SET EX here:
        # now + ttl <= 0 is an "invalid expire time"); struct.error used to escape.
        raise ValueError(
            f"ttl {ttl!r} puts the expiry before 1970: the clock reads {now!r} s since"
            " the epoch; set the system clock"
        )
    if exp > MAX_EXPIRY_MS:
        raise ValueError(
            f"ttl {ttl!r} puts the expiry past the largest one stored ({MAX_EXPIRY_MS} ms)"
        )
    return exp


class OpEncoder:
    """Validates and encodes writes against a store's limits.

    Args:
        max_key: the largest key, in bytes (max_key_size).
        max_value: the largest value, in bytes (max_value_size).
        clock: wall-clock seconds (a ttl becomes an expiry from it).
        held: whether the store holds a key (the keydir's ``__contains__``): a key
            past ``max_key`` that it holds, written under a larger max_key_size, may
            still be deleted.
    """

    __slots__ = ("_large", "clock", "held", "max_key", "max_value")

    def __init__(
        self,
        max_key: int,
        max_value: int,
        clock: Callable[[], float],
        held: Callable[[bytes], bool] = lambda key: False,
    ) -> None:
        self.max_key = max_key
        self.max_value = max_value
        self.clock = clock
        self.held = held
        # Past this, a value is refused or encoded by ``_large_record`` (one compare on
        # the common path either way: the one the limit check always made).
        self._large = min(max_value, LARGE_VALUE)

    def record(
        self, key: bytes | str, value: bytes | str, exp: int, inner: int, ts: int
    ) -> tuple[bytes, bytes]:
        """Validate and encode one value record: (key as bytes, record).

        ``exp`` is the expiry in ms (0: none), ``inner`` IN_BATCH for a record inside
        markers, ``ts`` the timestamp in µs.

        Raises:
            TypeError: key or value is neither bytes nor str.
            KeyTooLargeError / ValueTooLargeError: over the limits.
        """
        if key.__class__ is not bytes:
            key = as_bytes(key, "key")
        if value.__class__ is not bytes:
            value = as_bytes(value, "value")
        kl = len(key)
        vl = len(value)
        if kl > self.max_key:
            raise KeyTooLargeError(f"key of {kl} bytes exceeds max_key_size {self.max_key}")
        if vl > self._large:
            if vl > self.max_value:
                raise ValueTooLargeError(
                    f"value of {vl} bytes exceeds max_value_size {self.max_value}"
                )
            return key, _large_record(key, value, exp, inner, ts)
        if exp:
            body = _pack_body(inner | TTL, ts, exp, kl, vl) + key + value
        else:
            body = _pack_no_expiry(inner, ts, kl, vl) + key + value
        return key, _pack_crc(crc32(body)) + body

    def key(self, key: bytes | str) -> bytes:
        """Validate a key alone (a delete's): the key as bytes.

        A key over max_key_size that the store holds (written before the limit was
        lowered) passes: it can be deleted, it can never be written again. Those
        keys made delete(), pop(), popitem() and clear() raise KeyTooLargeError.

        Raises:
            TypeError: key is neither bytes nor str.
            KeyTooLargeError: over max_key_size, and not a key the store holds.
        """
        if key.__class__ is not bytes:
            key = as_bytes(key, "key")
        if len(key) > self.max_key and not self.held(key):
            raise KeyTooLargeError(f"key of {len(key)} bytes exceeds max_key_size {self.max_key}")
        return key

    def ops(
        self, ops: Sequence[Sequence[Any]], inner: int, ts: int
    ) -> tuple[list[bytes], list[bytes], list[int]]:
        """Validate and encode a batch's ``ops``: keys, records and expiries.

        A delete's record is b"" (its tombstone is encoded once its target is known)
        and its expiry -1; a put's expiry is 0 when it has none. Raises on the first
        bad op (nothing is written), ``Planned`` on an ``Op``.
        """
        record = self.record
        clock = self.clock
        keys: list[bytes] = []
        recs: list[bytes] = []
        other: dict[int, int] = {}  # op index -> expiry, for every op but a plain put's 0
        append_key = keys.append
        append_rec = recs.append
        # A plain put (bytes, no ttl, not large) is encoded here, inline, with the
        # batch's header prefix packed once: ``record`` minus its call, its type
        # checks and a u64 pack of the timestamp per op (struct packs a big-endian
        # u64 through _PyLong_AsByteArray: ~200 instructions). The same bytes as
        # ``record`` (tests/bitcask/test_writer_encode.py). callgrind, 10 x ops() of
        # 1,000 puts of 100 B, PYTHONHASHSEED=0: 7,272 -> 5,797 instructions per op;
        # then 5,296 -> 4,943 by unpacking a tuple without len() first and listing
        # only the expiries that are not 0 (``other``; measured with zlib-ng's CRC,
        # which the engine does not use: the CRC's share is the same on both sides).
        prefix = _pack_batch_prefix(inner, ts)
        max_key = self.max_key
        large = self._large
        for op in ops:
            if op.__class__ is tuple:
                try:
                    kind, key, value, ttl = op
                except ValueError:  # not 4 items: the general path below
                    kind = ttl = None
                if (
                    ttl is None
                    and kind == "put"
                    and key.__class__ is bytes
                    and value.__class__ is bytes
                ):
                    kl = len(key)
                    vl = len(value)
                    if kl <= max_key and vl <= large:
                        body = _pack_with_prefix(prefix, kl, vl) + key + value
                        append_key(key)
                        append_rec(_pack_crc(crc32(body)) + body)
                        continue
            if op.__class__ is not tuple and not isinstance(op, list):
                if isinstance(op, Op):
                    raise Planned
                raise ValueError(_BAD_OP.format(op))
            n = len(op)
            if n == 4:
                kind, key, value, ttl = op
            elif n == 3:
                kind, key, value = op
                ttl = None
            elif n == 2:
                kind, key = op
            else:
                raise ValueError(_BAD_OP.format(op))
            if kind == "put" and n != 2:
                exp = 0 if ttl is None else expiry_ms(clock, ttl)
            elif kind == "put_at" and n == 4:
                exp = ttl or 0  # planned writes carry the expiry itself, in ms
            elif kind == "delete" and n == 2:
                other[len(keys)] = -1
                append_key(self.key(key))
                append_rec(b"")
                continue
            else:
                raise ValueError(_BAD_OP.format(op))
            key, rec = record(key, value, exp, inner, ts)
            if exp:
                other[len(keys)] = exp
            append_key(key)
            append_rec(rec)
        exps = [0] * len(keys)
        for i, exp in other.items():
            exps[i] = exp
        return keys, recs, exps
