"""Hint files: a compact summary of one data file for fast loading at open.

Strategy: a hint describes the final state of each key *within its data file* (the
last applied record for the key there: a live location or a tombstone). Loading
files in id order and applying each file's tombstones then its entries rebuilds the
keydir exactly as scanning would. The layout is columnar so loading is a handful of
C-level calls (array.frombytes, struct.unpack, map, zip, dict.update) rather than a
Python loop per key. All integers little-endian (arrays load natively on
little-endian hosts)::

    header (32 bytes): magic "BCHT" | version u16 | reserved u16 | file_id u32 |
                       n_entries u32 | n_expiring u32 | n_tombs u32 | data_size u64
    key_lens   u32 x n_entries
    keys       concatenated key bytes
    locs       u64 x n_entries     (offset << 32) | record_size
    timestamps u64 x n_entries     microseconds
    exp_index  u32 x n_expiring    index into the entries
    exp_ms     u64 x n_expiring    expiry, ms since the epoch
    tomb_lens  u32 x n_tombs
    tomb_keys  concatenated key bytes
    tomb_files u32 x n_tombs       file id of the value each tombstone deletes
    crc32      u32                 over every byte before it

``data_size`` is the size of the data file the hint was built from; a hint whose
data file has a different size (truncated, repaired), or with an entry that ends past
the data file's end, is ignored (``hint_distrust``: the one rule, shared by the open
and ``bitcask check``).
"""

from __future__ import annotations

import functools
import operator
import struct
import sys
from array import array
from collections.abc import Iterable
from itertools import chain, takewhile

from . import _io
from ._datafile import Rec
from ._keydir import FID_SHIFT
from ._record import TOMBSTONE, crc32, shown_key

__all__ = [
    "HintData",
    "HintJournal",
    "build_hint",
    "decode_hint",
    "hint_distrust",
    "read_hint",
    "record_bytes",
    "write_hint",
]

HINT_MAGIC = b"BCHT"
HINT_VERSION = 1
_HEAD = struct.Struct("<4sHHIIIIQ")
_CRC = struct.Struct("<I")
_BIG = sys.byteorder == "big"


class HintData:
    """A decoded hint file: parallel lists of keys and in-file locations (a plain
    class: a dataclass's generated methods were 3 exec() compilations at every import,
    and nothing compares or prints one)."""

    __slots__ = (
        "data_size",
        "exp_index",
        "exp_ms",
        "file_id",
        "keys",
        "locs",
        "tomb_files",
        "tomb_keys",
    )

    def __init__(
        self,
        file_id: int,
        keys: list[bytes],
        locs: array[int],  # (offset << 32) | size, u64
        exp_index: array[int],
        exp_ms: array[int],
        tomb_keys: list[bytes],
        tomb_files: array[int],
        data_size: int,
    ) -> None:
        self.file_id = file_id
        self.keys = keys
        self.locs = locs
        self.exp_index = exp_index
        self.exp_ms = exp_ms
        self.tomb_keys = tomb_keys
        self.tomb_files = tomb_files
        self.data_size = data_size


def _arr(code: str, values: Iterable[int] | bytes) -> bytes:
    # ``values`` as bytes: the host's machine values already (array's frombytes).
    a = array(code, values)
    if _BIG:
        a.byteswap()
    return a.tobytes()


def build_hint(file_id: int, data_size: int, records: Iterable[Rec]) -> bytes:
    """Encode the hint for a data file from its applied records (in file order)."""
    last: dict[bytes, Rec] = {}
    for rec in records:
        last.pop(rec[5], None)
        last[rec[5]] = rec
    live = [r for r in last.values() if not r[2] & TOMBSTONE]
    tombs = [r for r in last.values() if r[2] & TOMBSTONE]
    return _encode(
        file_id,
        data_size,
        [r[5] for r in live],
        [(r[0] << 32) | r[1] for r in live],
        [r[3] for r in live],
        [(i, r[4]) for i, r in enumerate(live) if r[4]],
        [r[5] for r in tombs],
        [r[6] for r in tombs],
    )


def _encode(
    file_id: int,
    data_size: int,
    keys: list[bytes],
    locs: Iterable[int],
    stamps: Iterable[int] | bytes,
    exp: list[tuple[int, int]],
    tomb_keys: list[bytes],
    tomb_files: Iterable[int],
) -> bytes:
    # The one encoder of the layout above (build_hint and HintJournal.build).
    parts = [
        _HEAD.pack(
            HINT_MAGIC, HINT_VERSION, 0, file_id, len(keys), len(exp), len(tomb_keys), data_size
        ),
        _arr("I", map(len, keys)),
        b"".join(keys),
        _arr("Q", locs),
        _arr("Q", stamps),
        _arr("I", [i for i, _ in exp]),
        _arr("Q", [e for _, e in exp]),
        _arr("I", map(len, tomb_keys)),
        b"".join(tomb_keys),
        _arr("I", tomb_files),
    ]
    body = b"".join(parts)
    return body + _CRC.pack(crc32(body))


# The journal's timestamps are u64s, kept in an array of C unsigned longs where those
# are 8 bytes (Linux, macOS): array("Q") converts an int past 2**30 through
# _PyLong_AsByteArray, and append() converts twice (~510 instructions a put), "L"
# converts in a loop over its digits. callgrind, 4,000 puts of 100 B, PYTHONHASHSEED=0:
# 21,503 -> 21,202 instructions per put. The same bytes either way.
_STAMP = "L" if array("L").itemsize == 8 else "Q"

_SAMPLE = 64  # entries HintJournal.compact_tail looks at per look
_FIRST_LOOK = 1 << 15  # ... from this many entries (about 4 MB of journal) on


def _superseded(locs: list[int]) -> int:
    """How many of _SAMPLE entries spread over ``locs`` only the journal holds.

    A live entry's location object is shared with the keydir (the writer stores the
    same int in both); a superseded one's is referenced by ``locs`` alone. What
    "alone" reads as is measured on a fresh int held the same way (a list and the
    sample tuple), not assumed of the interpreter.
    """
    step = len(locs) // _SAMPLE
    picked = operator.itemgetter(*range(step // 2, step * _SAMPLE, step))(locs)
    probe = [(1 << 90) + len(locs)]  # a new int only this list holds
    alone = next(map(sys.getrefcount, tuple(probe)))
    return list(map(sys.getrefcount, picked)).count(alone)


class HintJournal:
    """The hint entries of the active file (or of a merge output), kept as its
    records are written.

    Sealing the file then encodes its hint from memory instead of scanning the file
    again (``close()`` used to rescan it, about 1.5 s per million records). One entry
    per record written, in file order: the key and its keydir location (objects
    shared with the keydir: two list slots) and the timestamp (an array), 24 bytes
    per record; plus sparse dicts for the expiry of TTL records and the target file
    of tombstones. ``build`` keeps each key's last entry, exactly as ``build_hint``
    over a scan of the same file does (a test checks the two agree byte for byte).

    An entry a later record of its key supersedes holds its key and location
    objects alone (the keydir has moved on): about 120 bytes a record, so a file of
    small overwrites (a hot counter) held 3-4 times its own size in memory until it
    was sealed (1,000,000 puts of 50 keys: +117 MB). ``compact_tail`` (the file
    table calls it every REMAP_STEP appended bytes) drops the entries of the tail
    since its last call that a later entry of the same key in that tail supersedes;
    what ``build`` returns is unchanged, as each key's last entry stays, in order.
    A working set of overwritten keys larger than a tail still kept one entry per
    overwrite (1,000,000 overwrites of 20,000 keys: 995,453 entries, +60 MB), and
    compacting each tail then cost a dict and a sort per entry for the few repeats
    it found. So a tail is compacted only when a quarter of it or more repeats; and
    when the journal has grown fourfold since its last whole pass (twofold since a
    look that found little), ``compact_tail`` looks at 64 entries spread over it:
    one whose location object only the journal still holds (the keydir has moved
    on) is superseded. When half of them or more are, the whole journal is
    compacted as a tail is. The look is one per doubling (free per record); a
    whole pass drops about three quarters of what it reads; the journal stays
    under about four entries per key of the file plus a tail (65,982 entries,
    +4 MB, in the example; callgrind: 25,787 -> 24,430 instructions per overwrite,
    as the tails that found few repeats are no longer sorted). The estimate only
    decides when: a pass is always exact, and a wrong estimate costs one pass that
    drops little.

    Crash story: the journal lives in memory only; a process that dies before the
    file is sealed leaves no hint, and the next open scans that file, as it always
    did. A hint is only ever trusted once its CRC and data size check out. An
    interrupt (Ctrl-C) inside ``compact_tail`` leaves ``intact`` False: the file's
    hint is then built by scanning it.
    """

    __slots__ = ("_done", "_look_at", "exps", "intact", "keys", "locs", "stamps", "tombs")

    def __init__(self) -> None:
        self.keys: list[bytes] = []
        self.locs: list[int] = []  # keydir locations: file id << 68 | offset << 32 | size
        self.stamps = array(_STAMP)  # timestamps, microseconds
        self.exps: dict[int, int] = {}  # entry index -> expiry ms (TTL records only)
        self.tombs: dict[int, int] = {}  # entry index -> target file (tombstones only)
        self._done = 0  # entries before this one were looked at by compact_tail
        self._look_at = _FIRST_LOOK  # entries at which compact_tail samples the whole
        self.intact = True  # False: a compact_tail was interrupted, do not build from this

    def add(self, key: bytes, loc: int, stamp: int, exp: int) -> None:
        """A value record of ``key`` at keydir location ``loc`` (``exp``: 0 or its expiry)."""
        if exp:
            self.exps[len(self.keys)] = exp
        self.keys.append(key)
        self.locs.append(loc)
        self.stamps.append(stamp)

    def add_tombstone(self, key: bytes, loc: int, stamp: int, target: int) -> None:
        """A tombstone of ``key`` at ``loc`` deleting its value in file ``target``."""
        self.tombs[len(self.keys)] = target
        self.keys.append(key)
        self.locs.append(loc)
        self.stamps.append(stamp)

    def extend(self, keys: list[bytes], locs: list[int], stamp: int) -> None:
        """Value records without expiry at ``locs``, all stamped ``stamp`` (one batch)."""
        self.keys += keys
        self.locs += locs
        # One conversion of ``stamp``, then copies: extend(repeat(stamp, n)) converted
        # it to a u64 once per entry (~280 instructions each in CPython 3.11's
        # PyLong_AsUnsignedLongLong). callgrind, write_batch of 1,000 x 100 B,
        # PYTHONHASHSEED=0: 11,666 -> 11,025 instructions per op (~640 a batched put).
        self.stamps += array(_STAMP, (stamp,)) * len(keys)

    def truncate(self, n: int) -> None:
        """Forget every entry after the first ``n`` (a merge rolling an input back)."""
        del self.keys[n:], self.locs[n:], self.stamps[n:]
        self._done = min(self._done, n)
        for sparse in (self.exps, self.tombs):
            for i in [i for i in sparse if i >= n]:
                del sparse[i]

    def compact_tail(self) -> None:
        """Drop the entries added since the last call that a later entry of the same
        key among them supersedes (caller: the writer, under its lock).

        O(entries added since the last call); nothing is copied unless a quarter of
        them or more repeat. Once the journal has grown enough since the last look,
        and a sample says at least half of it is superseded, the whole journal is
        the tail (class docstring).
        """
        keys = self.keys
        start, n = self._done, len(keys)
        if n >= self._look_at:
            if _superseded(self.locs) >= _SAMPLE // 2:
                start = 0
            self._look_at = 2 * n
        if n - start < 2:
            self._done = n
            return
        tail = keys[start:]
        distinct = len(set(tail))  # ~20 ns a key
        if distinct == len(tail) or (start and distinct * 4 > len(tail) * 3):
            self._done = n  # nothing or little to drop: a whole pass gets it
            return
        last = dict(zip(tail, range(start, n), strict=True))
        order = sorted(last.values())  # each key's last entry, in file order
        locs, stamps = self.locs, self.stamps
        new_keys = list(map(keys.__getitem__, order))
        new_locs = list(map(locs.__getitem__, order))
        new_stamps = array(_STAMP, map(stamps.__getitem__, order))
        # The sparse dicts' indices ascend in insertion order: their tail is their end.
        tails = [list(takewhile(start.__le__, reversed(d))) for d in (self.exps, self.tombs)]
        where = {old: start + j for j, old in enumerate(order)} if any(tails) else {}
        self.intact = False
        keys[start:] = new_keys
        locs[start:] = new_locs
        stamps[start:] = new_stamps
        for sparse, indices in zip((self.exps, self.tombs), tails, strict=True):
            moved = [(i, sparse.pop(i)) for i in reversed(indices)]
            for i, value in moved:
                if i in where:
                    sparse[where[i]] = value
        self._done = len(keys)
        self.intact = True
        if start == 0:
            self._look_at = max(_FIRST_LOOK, 4 * len(keys))

    def build(self, file_id: int, data_size: int) -> bytes:
        """The hint file of the sealed file ``file_id`` of ``data_size`` bytes."""
        keys = self.keys
        in_file = (1 << FID_SHIFT) - 1  # the hint keeps offset << 32 | size
        last = dict(zip(keys, range(len(keys)), strict=True))  # key -> its last entry
        tombs = self.tombs
        exps = self.exps
        if len(last) == len(keys) and not tombs:
            # Every entry is its key's last and a value (a load of new keys): all of them.
            return _encode(
                file_id,
                data_size,
                keys,
                map(in_file.__and__, self.locs),
                self.stamps.tobytes(),  # u64s, as "Q" holds them: copied, not converted
                sorted(exps.items()),
                [],
                [],
            )
        # each key's last entry, in the order of those last entries
        order = sorted(last.values())
        live = [i for i in order if i not in tombs] if tombs else order
        dead = [i for i in order if i in tombs] if tombs else []
        exp = [(j, exps[i]) for j, i in enumerate(live) if i in exps] if exps else []
        return _encode(
            file_id,
            data_size,
            list(map(keys.__getitem__, live)),
            map(in_file.__and__, map(self.locs.__getitem__, live)),
            map(self.stamps.__getitem__, live),
            exp,
            list(map(keys.__getitem__, dead)),
            map(tombs.__getitem__, dead),
        )


def write_hint(path: str, blob: bytes, *, install: bool = True) -> str:
    """Write ``blob`` to ``path + ".tmp"``, fsync it, and rename it to ``path``.

    With ``install=False`` the rename is left to the caller; returns the temp path.
    """
    return _io.replace_file(path, blob, install=install)


# Keys per struct.unpack when splitting a hint's key blob: one Struct of this many
# "<len>s" fields makes its bytes objects in one C call (a Struct of every key at
# once would hold a compiled field per key, ~32 MB at 1,000,000 keys).
_SPLIT = 1024


@functools.lru_cache(maxsize=16)
def _fixed_split(width: int) -> struct.Struct:
    return struct.Struct(f"{width}s" * _SPLIT)


class _Reader:
    __slots__ = ("buf", "pos")

    def __init__(self, buf: bytes, pos: int) -> None:
        self.buf = memoryview(buf)  # sections are views: nothing copied but the keys
        self.pos = pos

    def take(self, n: int) -> memoryview:
        end = self.pos + n
        if end > len(self.buf):
            raise ValueError("hint truncated")
        out = self.buf[self.pos : end]
        self.pos = end
        return out

    def ints(self, code: str, count: int) -> array[int]:
        a = array(code)
        a.frombytes(self.take(count * a.itemsize))
        if _BIG:
            a.byteswap()
        return a

    def keys(self, lens: array[int]) -> list[bytes]:
        # struct makes the key objects, _SPLIT per C call (1,000,000 keys, CPU time):
        # 16 bytes each 45 ms, was 160 ms (re.findall); 5-16 bytes 140 ms, was 300
        # ms (a slice object and a slice each).
        n = len(lens)
        width = lens[0] if n else 0
        if width and lens.count(width) == n:
            # Fixed-size keys (the common case): no format to build, no sum to take.
            blob = self.take(n * width)
            whole = n - n % _SPLIT
            keys = list(chain.from_iterable(_fixed_split(width).iter_unpack(blob[: whole * width])))
            keys += struct.unpack_from(f"{width}s" * (n - whole), blob, whole * width)
            return keys
        blob = self.take(sum(lens))
        field = {w: f"{w}s" for w in set(lens)}.__getitem__  # each length's struct field
        keys = []
        pos = 0
        for i in range(0, n, _SPLIT):
            part = struct.Struct("".join(map(field, lens[i : i + _SPLIT])))
            keys += part.unpack_from(blob, pos)
            pos += part.size
        return keys


def decode_hint(buf: bytes, file_id: int) -> HintData:
    """Decode a hint file's bytes.

    Raises:
        ValueError: bad magic, version, file id, CRC or a truncated section.
    """
    if len(buf) < _HEAD.size + 4:
        raise ValueError("hint shorter than its header")
    if crc32(memoryview(buf)[:-4]) != _CRC.unpack_from(buf, len(buf) - 4)[0]:
        raise ValueError("hint CRC mismatch")
    magic, version, _res, fid, n, n_exp, n_tomb, data_size = _HEAD.unpack_from(buf, 0)
    if magic != HINT_MAGIC:
        raise ValueError(f"bad hint magic {magic!r}")
    if version != HINT_VERSION:
        raise ValueError(f"unsupported hint version {version}")
    if fid != file_id:
        raise ValueError(f"hint names file {fid}, expected {file_id}")
    r = _Reader(buf, _HEAD.size)
    keys = r.keys(r.ints("I", n))
    locs = r.ints("Q", n)
    r.take(8 * n)  # timestamps: kept for tools, not needed to load
    exp_index = r.ints("I", n_exp)
    exp_ms = r.ints("Q", n_exp)
    tomb_keys = r.keys(r.ints("I", n_tomb))
    tomb_files = r.ints("I", n_tomb)
    if r.pos != len(buf) - 4:
        raise ValueError("hint has trailing bytes")
    if n_exp and max(exp_index) >= n:
        raise ValueError("hint expiry index out of range")
    return HintData(fid, keys, locs, exp_index, exp_ms, tomb_keys, tomb_files, data_size)


def record_bytes(hint: HintData) -> int:
    """The bytes of the records ``hint`` lists: the sum of its entries' sizes.

    The size is the low 32-bit word of each u64 location, so one C-level sum over
    those words of the array's memory does it, with no Python call per entry (the
    open's live-byte count: 16 ms -> 1.8 ms at 200,000 keys, bench/embedded.py's
    "reopen ms" column).
    """
    words = memoryview(hint.locs).cast("B").cast("I")
    return sum(words[1 if _BIG else 0 :: 2])


def hint_distrust(hint: HintData, data_size: int) -> str | None:
    """Why a decoded hint cannot stand in for its data file of ``data_size`` bytes.

    None: the open loads it. A hint whose CRC checks out can still describe other
    bytes than the file holds: built for another size (the file was cut or
    repaired), or, beside a file rewritten to the same size, with an entry past its
    end (get() of that key failed with AttributeError: a sealed file has no reader
    past its mapping). The record at the highest offset ends last (records never
    overlap): one C-level max (12 ms at 1,000,000 keys); the entry is named only on
    the failure path.
    """
    if hint.data_size != data_size:
        return f"hint covers {hint.data_size} bytes, data file has {data_size}"
    if hint.locs:
        last = max(hint.locs)
        off, size = last >> 32, last & 0xFFFFFFFF
        if off + size > data_size:
            key = hint.keys[hint.locs.index(last)]
            return (
                f"entry of key {shown_key(key)} (offset {off}, {size} bytes) ends past "
                f"the data file's end ({data_size} bytes)"
            )
    return None


def read_hint(path: str, file_id: int, data_size: int | None) -> HintData:
    """Read and decode the hint at ``path``; check it describes ``data_size`` bytes.

    Raises:
        OSError: the file cannot be read (missing).
        ValueError: the hint is bad or stale (``hint_distrust``).
    """
    with open(path, "rb") as f:
        buf = f.read()
    hint = decode_hint(buf, file_id)
    if data_size is not None:
        why = hint_distrust(hint, data_size)
        if why is not None:
            raise ValueError(why)
    return hint
