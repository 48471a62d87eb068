"""The write path's encoder (bitcask/_encode.py) and the active file's entry.

The encoder must produce exactly the bytes of ``_record.encode`` (the layout's one
definition) whichever packing shortcut it takes; the file table must publish an
entry whose mapping covers its published length after every append, across the
growths of the active file (the one-compare republish in bitcask/_files.py).
"""

from __future__ import annotations

from pathlib import Path

import pytest

import bitcask
from bitcask._encode import MAX_EXPIRY_MS, OpEncoder, expiry_ms
from bitcask._planned import Planned
from bitcask._record import (
    BODY_HEADER,
    BODY_HEADER_NO_EXPIRY,
    IN_BATCH,
    TOMBSTONE,
    TTL,
    encode,
)
from bitcask._rmw import Incr
from bitcask.errors import KeyTooLargeError, ValueTooLargeError


def _encoder(max_key: int = 64, max_value: int = 1024) -> OpEncoder:
    return OpEncoder(max_key, max_value, lambda: 1_000.0)


@pytest.mark.parametrize("inner", [0, IN_BATCH])
@pytest.mark.parametrize("exp", [0, 1, 1_764_000_000_000, MAX_EXPIRY_MS])
def test_record_is_the_layouts_encoding(inner: int, exp: int) -> None:
    ts = 1_764_000_000_123_456
    key, rec = _encoder().record("ключ", b"value", exp, inner, ts)
    assert key == "ключ".encode()
    flags = inner | TTL if exp else inner
    assert rec == encode(flags, ts, exp, key, b"value")


@pytest.mark.parametrize("flags", [0, IN_BATCH, TOMBSTONE])
def test_header_without_expiry_is_the_header_with_a_zero_expiry(flags: int) -> None:
    for stamp, klen, vlen in ((0, 0, 0), (1_764_000_000_000_000, 255, 1 << 31), (2**64 - 1, 1, 2)):
        assert BODY_HEADER_NO_EXPIRY.pack(flags, stamp, klen, vlen) == BODY_HEADER.pack(
            flags, stamp, 0, klen, vlen
        )


def test_record_refuses_what_the_limits_refuse() -> None:
    enc = _encoder(max_key=4, max_value=8)
    assert enc.record(b"kkkk", b"v" * 8, 0, 0, 1)[0] == b"kkkk"
    with pytest.raises(KeyTooLargeError):
        enc.record(b"kkkkk", b"v", 0, 0, 1)
    with pytest.raises(ValueTooLargeError):
        enc.record(b"k", b"v" * 9, 0, 0, 1)
    with pytest.raises(TypeError):
        enc.record(b"k", 5, 0, 0, 1)  # type: ignore[arg-type]


def test_ops_encodes_puts_deletes_and_planned_expiries() -> None:
    enc = _encoder()
    keys, recs, exps = enc.ops(
        [("put", b"a", b"1"), ("put", "b", b"2", 10), ("delete", b"c"), ("put_at", b"d", b"4", 77)],
        IN_BATCH,
        5,
    )
    assert keys == [b"a", b"b", b"c", b"d"]
    assert exps == [0, 1_010_000, -1, 77]
    assert recs[0] == encode(IN_BATCH, 5, 0, b"a", b"1")
    assert recs[1] == encode(IN_BATCH | TTL, 5, 1_010_000, b"b", b"2")
    assert recs[2] == b""  # a tombstone is encoded once its target file is known
    assert recs[3] == encode(IN_BATCH | TTL, 5, 77, b"d", b"4")
    assert not recs[0][4] & TOMBSTONE


@pytest.mark.parametrize("inner", [0, IN_BATCH])
@pytest.mark.parametrize("ts", [0, 5, 1_764_000_000_123_456, 2**64 - 1])
def test_ops_inline_puts_are_records_bytes(inner: int, ts: int) -> None:
    # ops() encodes a plain put (a 4-tuple of bytes, no ttl, a value up to
    # LARGE_VALUE) inline with the batch's header prefix: the same bytes as record(),
    # at every size around its limits, beside every op it leaves to record().
    enc = OpEncoder(64, 1 << 17, lambda: 1_000.0)
    large = 64 * 1024
    values = [b"", b"v", bytes(range(256)) * 4, b"x" * large, b"y" * (large + 1)]
    ops: list[object] = [("put", b"k%d" % i, v, None) for i, v in enumerate(values)]
    ops += [
        ("put", b"", b"e", None),
        ("put", b"K" * 64, b"max key", None),
        ("put", "str key", b"s", None),
        ("put", b"str value", "v", None),
        ("put", b"bytearray", bytearray(b"ba"), None),
        ["put", b"list", b"l", None],
        ("put", b"three", b"3"),
        ("put", b"ttl", b"t", 5),
    ]
    keys, recs, exps = enc.ops(ops, inner, ts)  # type: ignore[arg-type]
    for key, rec, exp, op in zip(keys, recs, exps, ops, strict=True):
        want_key, want = enc.record(op[1], op[2], exp, inner, ts)  # type: ignore[index]
        assert (key, rec) == (want_key, want)
        assert key.__class__ is bytes and rec.__class__ is bytes
    assert exps == [0] * (len(ops) - 1) + [1_005_000]


def test_ops_inline_puts_refuse_what_record_refuses() -> None:
    enc = _encoder(max_key=4, max_value=8)
    assert enc.ops([("put", b"kkkk", b"v" * 8, None)], 0, 1)[0] == [b"kkkk"]
    with pytest.raises(KeyTooLargeError):
        enc.ops([("put", b"a", b"1", None), ("put", b"kkkkk", b"v", None)], 0, 1)
    with pytest.raises(ValueTooLargeError):
        enc.ops([("put", b"a", b"1", None), ("put", b"k", b"v" * 9, None)], 0, 1)
    with pytest.raises(TypeError):
        enc.ops([("put", b"k", 5, None)], 0, 1)
    with pytest.raises(ValueError):
        enc.ops([("put", b"k", b"v", 0)], 0, 1)  # a ttl of 0 is refused, not "none"
    with pytest.raises(ValueError):
        enc.ops([("get", b"k", b"v", None)], 0, 1)


def test_ops_refuses_bad_ops_and_hands_ops_to_the_planner() -> None:
    enc = _encoder()
    for bad in (
        ["put"],
        [("merge", b"k", b"v")],
        [("delete", b"k", b"v")],
        [b"put"],
        [("put", b"k", b"v", None, None)],
        [("delete", b"k", b"v", None)],
        [("put", b"k")],
        [()],
    ):
        with pytest.raises(ValueError):
            enc.ops(bad, 0, 1)  # type: ignore[arg-type]
    with pytest.raises(Planned):
        enc.ops([("put", b"a", b"1"), Incr(b"n", 1)], 0, 1)  # type: ignore[list-item]


def test_expiry_bounds() -> None:
    assert expiry_ms(lambda: 1.0, 2) == 3_000
    with pytest.raises(ValueError):
        expiry_ms(lambda: 1.0, 0)
    with pytest.raises(ValueError):
        expiry_ms(lambda: 1.0, MAX_EXPIRY_MS)
    with pytest.raises(TypeError):
        expiry_ms(lambda: 1.0, True)


def test_active_entry_covers_what_it_publishes_across_growths(tmp_path: Path) -> None:
    # 3,000 records of ~160 bytes: past the first reservation (64 KiB) and several
    # republish steps, so the active file grows into new mappings more than once.
    with bitcask.open(tmp_path, sync="never") as db:
        files = db.files
        fid = files.active_id
        seen = files.entries[fid][0]  # held: a dropped mapping's id could be reused
        changes = 0
        for i in range(3_000):
            db.put(b"key:%06d" % i, b"v" * 120)
            mm, published, _reader = files.entries[fid]
            assert mm is not None and published <= len(mm) and published <= files.offset
            if mm is not seen:
                seen = mm
                changes += 1
        assert files.active_id == fid and changes >= 3  # 64 KiB -> 128 -> 256 -> 512
        for i in range(0, 3_000, 7):
            assert db.get(b"key:%06d" % i) == b"v" * 120


def test_hot_objects_keep_their_shared_key_layout(tmp_path: Path) -> None:
    # CPython 3.11 keeps at most 30 attributes in an instance's shared-key layout;
    # past that every attribute read of the object is a dict lookup. The writer and
    # the file table are read on every put (bitcask/_writer.py, Writer.__init__:
    # 21,190 instructions per put at 29 writer attributes, 22,877 at 30).
    with bitcask.open(tmp_path, sync="never") as db:
        db.put(b"k", b"v")
        for obj in (db.writer, db.files):
            assert len(vars(obj)) < 30, type(obj).__name__
