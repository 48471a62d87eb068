"""The pure-Python floor: a raw append log with an in-memory dict index.

Strategy: one file, records `klen:u32 vlen:u32 key value` appended with one
`os.write` per put (so, like the engine under any sync policy, a put survives a
SIGKILL of the process once it returns), read back with one `os.pread` per get.
No CRC, no header, no timestamp, no tombstones, no rotation, no hint file: the least
work a log-structured store can do in Python. Reopen scans the whole file.
Anything the engine does on top of this (checksums, flags, TTL, compact keydir)
has to fit in the margin between this floor and the engine's numbers.

    log = RawLog.open("/tmp/x.log")
    log.put(b"k", b"v"); assert log.get(b"k") == b"v"
    log.close()
"""

from __future__ import annotations

import os
import struct
from collections.abc import Iterable

_HEADER = struct.Struct(">II")
_HSIZE = _HEADER.size


class RawLog:
    """An append-only key/value log; index: key -> (value offset, value length)."""

    __slots__ = ("_end", "_fd", "_index", "path")

    def __init__(self, path: str, fd: int, index: dict[bytes, tuple[int, int]], end: int):
        self.path = path
        self._fd = fd
        self._index = index
        self._end = end

    @classmethod
    def open(cls, path: str | os.PathLike[str]) -> RawLog:
        """Open (creating) the log and rebuild the index by scanning it."""
        p = os.fspath(path)
        fd = os.open(p, os.O_RDWR | os.O_CREAT | os.O_APPEND, 0o644)
        index: dict[bytes, tuple[int, int]] = {}
        with open(p, "rb") as f:
            data = f.read()
        unpack = _HEADER.unpack_from
        pos, size = 0, len(data)
        while pos + _HSIZE <= size:
            klen, vlen = unpack(data, pos)
            kstart = pos + _HSIZE
            vstart = kstart + klen
            if vstart + vlen > size:
                break
            index[data[kstart:vstart]] = (vstart, vlen)
            pos = vstart + vlen
        return cls(p, fd, index, pos)

    def put(self, key: bytes, value: bytes) -> None:
        """Append one record with one os.write."""
        rec = _HEADER.pack(len(key), len(value)) + key + value
        os.write(self._fd, rec)
        voff = self._end + _HSIZE + len(key)
        self._end += len(rec)
        self._index[key] = (voff, len(value))

    def put_many(self, pairs: Iterable[tuple[bytes, bytes]]) -> None:
        """Append many records with a single os.write (the log's "batch")."""
        pack = _HEADER.pack
        parts: list[bytes] = []
        index = self._index
        pos = self._end
        for key, value in pairs:
            parts.append(pack(len(key), len(value)))
            parts.append(key)
            parts.append(value)
            index[key] = (pos + _HSIZE + len(key), len(value))
            pos += _HSIZE + len(key) + len(value)
        os.write(self._fd, b"".join(parts))
        self._end = pos

    def get(self, key: bytes) -> bytes | None:
        """One dict lookup and one os.pread; None when absent."""
        loc = self._index.get(key)
        if loc is None:
            return None
        return os.pread(self._fd, loc[1], loc[0])

    def sync(self) -> None:
        """fdatasync the log (what the engine does under sync="always")."""
        getattr(os, "fdatasync", os.fsync)(self._fd)

    def __len__(self) -> int:
        return len(self._index)

    def close(self) -> None:
        """Close the file descriptor (idempotent)."""
        if self._fd >= 0:
            os.close(self._fd)
            self._fd = -1
