"""A large value is copied once into its record, not twice.

`OpEncoder.record` built header + key + value (one copy of the value), then the CRC
+ that body (a second): a put of 64 MiB through a real server peaked at +192 MiB
(tracemalloc: the value and both copies), now +135 MiB (the frame's receive buffer
and the value). Values over LARGE_VALUE take `_large_record`: the same bytes, with
the CRC computed over the parts. Small values keep the old path (callgrind on
`bench.request_path --op put --depth 16`: 50,315 -> 50,316 instructions/request).
"""

from __future__ import annotations

import time
import tracemalloc
import zlib
from pathlib import Path

import pytest

import bitcask
from bitcask._encode import LARGE_VALUE, OpEncoder
from bitcask._record import BODY_HEADER, BODY_HEADER_NO_EXPIRY, CRC, IN_BATCH, TTL

MIB = 1 << 20


def _expected(key: bytes, value: bytes, exp: int, inner: int, ts: int) -> bytes:
    if exp:
        body = BODY_HEADER.pack(inner | TTL, ts, exp, len(key), len(value)) + key + value
    else:
        body = BODY_HEADER_NO_EXPIRY.pack(inner, ts, len(key), len(value)) + key + value
    return CRC.pack(zlib.crc32(body)) + body


@pytest.mark.parametrize("size", [0, 100, LARGE_VALUE, LARGE_VALUE + 1, 3 * LARGE_VALUE])
@pytest.mark.parametrize(("exp", "inner"), [(0, 0), (1_900_000_000_000, 0), (0, IN_BATCH)])
def test_records_are_the_same_bytes_either_way(size: int, exp: int, inner: int) -> None:
    enc = OpEncoder(1024, 4 * LARGE_VALUE, time.time)
    value = bytes(range(256)) * (size // 256) + b"z" * (size % 256)
    key, rec = enc.record(b"key", value, exp, inner, 1234567)
    assert (key, rec) == (b"key", _expected(b"key", value, exp, inner, 1234567))


def test_the_limit_still_holds_past_the_large_size() -> None:
    enc = OpEncoder(1024, LARGE_VALUE + 10, time.time)
    enc.record(b"k", b"v" * (LARGE_VALUE + 10), 0, 0, 1)
    with pytest.raises(bitcask.ValueTooLargeError):
        enc.record(b"k", b"v" * (LARGE_VALUE + 11), 0, 0, 1)
    small = OpEncoder(1024, 1000, time.time)  # a limit below LARGE_VALUE
    with pytest.raises(bitcask.ValueTooLargeError):
        small.record(b"k", b"v" * 1001, 0, 0, 1)


def test_a_large_put_copies_its_value_once(tmp_path: Path) -> None:
    value = b"\x5a" * (16 * MIB)
    with bitcask.open(tmp_path / "db", sync="never") as db:
        db.put(b"warm", b"x")
        tracemalloc.start()
        try:
            db.put(b"big", value, ttl=3600)
            peak = tracemalloc.get_traced_memory()[1]
        finally:
            tracemalloc.stop()
        assert peak < 1.5 * len(value)  # the record; was 2x: the body and the record
        assert db.get(b"big") == value
    with bitcask.open(tmp_path / "db", readonly=True) as db:
        assert db.get(b"big") == value
