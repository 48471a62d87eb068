"""The floor plus what a checked record costs: bench/rawlog.py with a CRC and a mapping.

Strategy: bench/rawlog.py's log, changed only where every record of a checked,
crash-safe format must pay: each record carries a u64 timestamp and a CRC32 over its
header, key and value (verified on every get and by the reopen scan), and records are
copied into a shared mapping of a preallocated file instead of one ``os.write`` each
(as bitcask/_active.py does; a put survives SIGKILL once it returns). Nothing else of
the engine: no lock, no rotation, no hint file, no tombstones, no TTL, no per-file
live bytes. Its row in bench/embedded.py separates the cost of the record format
from the cost of the engine's bookkeeping.

    log = CheckedLog.open("/tmp/x.log")
    log.put(b"k", b"v"); assert log.get(b"k") == b"v"
    log.close()
"""

from __future__ import annotations

import mmap
import os
import struct
import time
from collections.abc import Iterable
from zlib import crc32

# crc:u32 | timestamp_us:u64 klen:u32 vlen:u32 | key | value; the CRC covers the rest
_CRC = struct.Struct(">I")
_BODY = struct.Struct(">QII")
_HSIZE = _CRC.size + _BODY.size
_GROW = 64 << 20  # the file is reserved and mapped this much at a time


class CheckedLog:
    """An append-only checked log in a mapping; index: key -> offset << 32 | size."""

    __slots__ = ("_cap", "_end", "_fd", "_index", "_mm", "path")

    def __init__(self, path: str, fd: int, index: dict[bytes, int], end: int) -> None:
        self.path = path
        self._fd = fd
        self._index = index
        self._end = end
        self._cap = 0
        self._mm: mmap.mmap | None = None
        self._reserve(end + 1)

    @classmethod
    def open(cls, path: str | os.PathLike[str]) -> CheckedLog:
        """Open (creating) the log; rebuild the index by a scan that checks every CRC."""
        p = os.fspath(path)
        fd = os.open(p, os.O_RDWR | os.O_CREAT, 0o644)
        index: dict[bytes, int] = {}
        with open(p, "rb") as f:
            data = f.read()
        unpack = _BODY.unpack_from
        pos, size = 0, len(data)
        while pos + _HSIZE <= size:
            _, klen, vlen = unpack(data, pos + 4)
            end = pos + _HSIZE + klen + vlen
            if end > size or crc32(data[pos + 4 : end]) != _CRC.unpack_from(data, pos)[0]:
                break  # the unwritten (zero) tail of the reservation, or a torn record
            index[data[pos + _HSIZE : pos + _HSIZE + klen]] = pos << 32 | (end - pos)
            pos = end
        return cls(p, fd, index, pos)

    def _reserve(self, need: int) -> None:
        cap = (need // _GROW + 1) * _GROW
        os.posix_fallocate(self._fd, 0, cap)
        if self._mm is not None:
            self._mm.close()
        self._mm = mmap.mmap(self._fd, cap)
        self._cap = cap

    def put(self, key: bytes, value: bytes) -> None:
        """Encode one record, copy it into the mapping, index it."""
        body = _BODY.pack(time.time_ns() // 1000, len(key), len(value)) + key + value
        rec = _CRC.pack(crc32(body)) + body
        off = self._end
        end = off + len(rec)
        if end > self._cap:
            self._reserve(end)
        self._mm[off:end] = rec  # type: ignore[index]
        self._end = end
        self._index[key] = off << 32 | len(rec)

    def put_many(self, pairs: Iterable[tuple[bytes, bytes]]) -> None:
        """Encode many records, copy them into the mapping in one step, index them."""
        pack = _BODY.pack
        crc = _CRC.pack
        stamp = time.time_ns() // 1000
        parts: list[bytes] = []
        index = self._index
        pos = self._end
        for key, value in pairs:
            body = pack(stamp, len(key), len(value)) + key + value
            rec = crc(crc32(body)) + body
            parts.append(rec)
            index[key] = pos << 32 | len(rec)
            pos += len(rec)
        if pos > self._cap:
            self._reserve(pos)
        self._mm[self._end : pos] = b"".join(parts)  # type: ignore[index]
        self._end = pos

    def get(self, key: bytes) -> bytes | None:
        """One dict lookup, one slice of the mapping, the CRC checked; None when absent."""
        loc = self._index.get(key)
        if loc is None:
            return None
        off = loc >> 32
        rec = self._mm[off : off + (loc & 0xFFFFFFFF)]  # type: ignore[index]
        if crc32(rec[4:]) != _CRC.unpack_from(rec)[0]:
            raise ValueError(f"corrupt record for {key!r}")
        return rec[_HSIZE + len(key) :]

    def __len__(self) -> int:
        return len(self._index)

    def close(self) -> None:
        """Unmap and close, trimming the reservation to the records (idempotent)."""
        if self._fd >= 0:
            if self._mm is not None:
                self._mm.close()
                self._mm = None
            os.ftruncate(self._fd, self._end)
            os.close(self._fd)
            self._fd = -1
