"""Record encoding: the unit of every data file.

Strategy: a record is a fixed 29-byte big-endian header followed by the key and the
value. The CRC covers everything after itself (the rest of the header, the key and
the value), so a flipped bit anywhere in a record is caught, including in its flags
and lengths. Record kinds are flags, never magic values::

    +---------+-------+----------------+----------------+---------+---------+-----+-------+
    | crc32   | flags | timestamp (µs) | expiry (ms)    | key_len | val_len | key | value |
    | u32     | u8    | u64            | u64, 0 = none  | u32     | u32     |     |       |
    +---------+-------+----------------+----------------+---------+---------+-----+-------+
      0         4       5                13               21        25        29

Flags: TOMBSTONE (value = u32 id of the file holding the value it deletes), TTL
(expiry is set), BATCH_BEGIN (empty key, value = u32 op count), BATCH_COMMIT (empty
key, value = u32 op count), IN_BATCH (a record between the two markers).
"""

from __future__ import annotations

import struct
import time
from collections.abc import Iterable

# The engine's CRC-32, for every module (the read path and bitcask.check too): zlib's,
# as DESIGN.md keeps the engine on the standard library. zlib 1.2.13's spends ~3.9
# instructions a byte (callgrind): at 4 KiB values most of a write_batch op (16,083 of
# 27,500) and of a get. zlib-ng's crc32 (same values, carry-less multiplication) cut a
# 4,125-byte call 17,101 -> 3,309 instructions and a 100 B get 8,971 -> 8,501, but it
# is a third-party module, so it waits for a decision to allow an optional accelerator
# in the engine as protocol/ allows hiredis.
from zlib import crc32

__all__ = [
    "BATCH_BEGIN",
    "BATCH_COMMIT",
    "HEADER",
    "HEADER_SIZE",
    "IN_BATCH",
    "KNOWN_FLAGS",
    "TOMBSTONE",
    "TTL",
    "as_bytes",
    "as_count",
    "crc32",
    "encode",
    "encode_marker",
    "encode_tombstone",
    "shown_key",
    "timestamp_us",
]

TOMBSTONE = 0x01
TTL = 0x02
BATCH_BEGIN = 0x04
BATCH_COMMIT = 0x08
IN_BATCH = 0x10
KNOWN_FLAGS = TOMBSTONE | TTL | BATCH_BEGIN | BATCH_COMMIT | IN_BATCH

# crc, flags, timestamp_us, expiry_ms, key_len, value_len
HEADER = struct.Struct(">IBQQII")
HEADER_SIZE = HEADER.size  # 29
# The header without its CRC: what the CRC starts with.
BODY_HEADER = struct.Struct(">BQQII")
# BODY_HEADER of a record without expiry (flags, timestamp_us, key_len, value_len): the
# same bytes, its zero expiry_ms packed as pad bytes. Packing a big-endian u64 costs
# ~360 instructions even for 0 (bench/embedded.py put, callgrind: 21,190 -> 21,039
# instructions per put).
BODY_HEADER_NO_EXPIRY = struct.Struct(">BQ8xII")
CRC = struct.Struct(">I")
U32 = struct.Struct(">I")

assert HEADER_SIZE == 29

_time_ns = time.time_ns


def timestamp_us() -> int:
    """The timestamp of a record written now: the wall clock in µs since the epoch, as
    the u64 field holds it, 0 for a clock set before 1970 (a negative one failed every
    write with struct.error). Nothing orders records by it: the latest write is the
    one latest in the files, whatever the clock said (docs/format.md, "Time")."""
    ts = _time_ns() // 1000
    return ts if ts > 0 else 0


def as_bytes(obj: object, what: str) -> bytes:
    """``obj`` as bytes: str is UTF-8 encoded (strict); bytearray/memoryview copied.

    A str holding a lone surrogate (a file name or argv word decoded with
    surrogateescape, "\\udcff") has no UTF-8 bytes: ValueError saying so and what to
    pass instead, not the codec's UnicodeEncodeError."""
    if isinstance(obj, bytes):
        return obj
    if isinstance(obj, str):
        try:
            return obj.encode("utf-8")
        except UnicodeEncodeError as exc:
            raise ValueError(  # client/_args.py's to_bytes says the same
                f"{what} is a str with a lone surrogate ({obj[exc.start]!r} at index "
                f"{exc.start}), which has no UTF-8 bytes: pass bytes (os.fsencode(name) for "
                "a name decoded with surrogateescape)"
            ) from None
    if isinstance(obj, bytearray | memoryview):
        return bytes(obj)
    raise TypeError(f"{what} must be bytes or str, not {type(obj).__name__}")


def as_count(obj: object, what: str, low: int) -> int:
    """``obj`` as a count argument (scan's limit, expire_sample's): an int (not a
    bool) of at least ``low``; TypeError or ValueError naming ``what`` otherwise."""
    if obj.__class__ is not int and (isinstance(obj, bool) or not isinstance(obj, int)):
        raise TypeError(f"{what} must be an int, not {obj!r}")
    if obj < low:
        raise ValueError(f"{what} must be >= {low}")
    return obj


SHOWN_KEY_BYTES = 64


def shown_key(key: bytes) -> str:
    r"""A key as a message or a log line names it: its repr (every control byte
    escaped, so a key cannot forge a log line or drive a terminal), cut after
    SHOWN_KEY_BYTES bytes with its length: a 64 KiB key made a 262,000-character log
    line and error reply.

    Example:
        >>> print(shown_key(b"a\x1b]0;t\x07"))
        b'a\x1b]0;t\x07'
        >>> print(shown_key(b"k" * 100)[-16:])
        '... (100 bytes)
    """
    if len(key) <= SHOWN_KEY_BYTES:
        return repr(key)
    return f"{key[:SHOWN_KEY_BYTES]!r}... ({len(key)} bytes)"


def as_keys(keys: Iterable[object]) -> list[bytes]:
    """``keys`` (an iterable of keys) as a list of bytes; one key alone is refused, as
    iterating it would take each character (each int of bytes) for a key."""
    if isinstance(keys, str | bytes | bytearray | memoryview):
        raise TypeError(f"expected an iterable of keys, not one key ({keys!r}): wrap it in [ ]")
    return [k if k.__class__ is bytes else as_bytes(k, "key") for k in keys]


def encode(flags: int, timestamp_us: int, expiry_ms: int, key: bytes, value: bytes) -> bytes:
    """Return one whole record (header, key, value) ready to append."""
    head = BODY_HEADER.pack(flags, timestamp_us, expiry_ms, len(key), len(value))
    crc = crc32(value, crc32(key, crc32(head)))
    return b"".join((CRC.pack(crc), head, key, value))


def encode_tombstone(key: bytes, target_file: int, timestamp_us: int, flags: int = 0) -> bytes:
    """Return a tombstone for ``key`` whose value lives in file ``target_file``."""
    return encode(flags | TOMBSTONE, timestamp_us, 0, key, U32.pack(target_file))


def encode_marker(flag: int, count: int, timestamp_us: int) -> bytes:
    """Return a BATCH_BEGIN or BATCH_COMMIT marker for a batch of ``count`` records."""
    return encode(flag, timestamp_us, 0, b"", U32.pack(count))
