"""Merge step 2: copy the live records of the inputs into output files in ``merge/``.

Strategy (invariants; the whole merge is in bitcask/merge.py):
- Runs in the merging thread without the write lock: the inputs are sealed, so
  their bytes never change, and the keydir is read one ``dict.get`` at a time.
- A value is copied when its keydir entry still equals its location and it has not
  expired by ``now_ms``. A tombstone is kept only when a file older than it stays
  outside the merge (``oldest_outside``) and its key is absent from the keydir (an
  older value may sit in that file); otherwise it is dropped. An expired value, or
  one active expiry already reclaimed, whose older versions may sit outside is
  replaced by a tombstone naming its file, so it still shadows them.
- A record copied out of a batch loses its batch flag: an output holds no batch
  markers, each record stands alone.
- An input in which the scan meets an unreadable record is left out whole: what
  was copied from it is rolled back (outputs discarded or rewound, data and hint
  journal alike), it counts as outside for every later input, and ``left_out``
  names it with the reason. A merge never makes data disappear.
- Outputs take the reserved ids in order and start a new one past
  ``max_file_size``; every output is closed by ``close`` whatever happens, so a
  failed merge holds no descriptor of a deleted file.
- The copy stops at its next record once the writer is closing or ``stopped`` is
  set (StoreClosedError); the caller deletes ``merge/``.
"""

from __future__ import annotations

import logging
import mmap
import os
from collections.abc import Callable
from typing import Protocol

from . import _io
from ._datafile import (
    CORRUPT,
    FILE_HEADER_SIZE,
    Rec,
    ScanIssues,
    data_name,
    encode_file_header,
    hint_name,
    scan,
)
from ._hint import HintJournal, write_hint
from ._keydir import FID_SHIFT
from ._record import HEADER, IN_BATCH, TOMBSTONE, TTL, encode, encode_tombstone
from ._writer import Writer
from .errors import StoreClosedError

__all__ = ["CHUNK", "Copy", "Output"]

log = logging.getLogger("bitcask")

CHUNK = 1 << 20  # an output's write buffer, and the progress step (4 of them)


class Halt(Protocol):
    """What the copy checks at every record beside the writer's ``closing``."""

    stopped: bool


class Output:
    """The output file being filled in ``merge/``."""

    def __init__(self, mdir: str, fid: int) -> None:
        self.fid = fid
        self.path = os.path.join(mdir, data_name(fid))
        self.fd = os.open(self.path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
        self.buf = bytearray(encode_file_header(fid))
        self.size = FILE_HEADER_SIZE
        # Its hint entries, with their keydir locations (the repoint reads them):
        # about 60 bytes a record, where a tuple per record and a second one per
        # copied key took about 350 (a merge of 1,000,000 keys peaked 590 MiB above
        # the store's own memory).
        self.journal = HintJournal()

    def add(self, raw: bytes, rec: Rec) -> None:
        loc = (self.fid << FID_SHIFT) | (self.size << 32) | len(raw)
        _off, _size, flags, ts, exp, key, aux = rec
        if flags & TOMBSTONE:
            self.journal.add_tombstone(key, loc, ts, aux)
        else:
            self.journal.add(key, loc, ts, exp)
        self.buf += raw
        self.size += len(raw)
        if len(self.buf) >= CHUNK:
            self.flush()

    def rewind(self, size: int, nrecs: int) -> None:
        """Forget everything added after the output was ``size`` bytes and ``nrecs`` records."""
        flushed = self.size - len(self.buf)
        if size >= flushed:
            del self.buf[size - flushed :]
        else:
            self.buf.clear()
            os.ftruncate(self.fd, size)
            os.lseek(self.fd, size, os.SEEK_SET)
        self.size = size
        self.journal.truncate(nrecs)

    def discard(self) -> None:
        """Close and delete this output (nothing of it was kept)."""
        self.close()
        os.unlink(self.path)

    def close(self) -> None:
        """Close the descriptor (idempotent). A merge that fails closes every output:
        a descriptor left open would hold the deleted file's blocks until exit."""
        if self.fd >= 0:
            fd, self.fd = self.fd, -1
            os.close(fd)

    def flush(self) -> None:
        if self.buf:
            _io.write(self.fd, bytes(self.buf))
            self.buf.clear()

    def finish(self, mdir: str) -> None:
        self.flush()
        _io.fsync(self.fd)
        self.close()
        write_hint(os.path.join(mdir, hint_name(self.fid)), self.journal.build(self.fid, self.size))


class Copy:
    """Step 2 of one merge: its outputs, what it found expired, its counts and the
    inputs it left out. ``run`` fills them; ``close`` closes every output."""

    def __init__(self, mdir: str, out_ids: list[int], max_size: int) -> None:
        self.mdir = mdir
        self.out_ids = out_ids
        self.max_size = max_size
        self.outputs: list[Output] = []
        # (key, location) of values found expired: the repoint forgets them
        self.expired: list[tuple[bytes, int]] = []
        self.stats = {"copied": 0, "dropped": 0, "tombs": 0, "expired": 0}
        self.left_out: list[tuple[int, str]] = []  # (file id, why)

    def run(
        self,
        inputs: list[int],
        maps: dict[int, mmap.mmap | None],
        sizes: dict[int, int],
        oldest_outside: int | None,
        *,
        kmap: dict[bytes, int],
        now_ms: int,
        writer: Writer,
        halt: Halt,
        progress: Callable[[int, int], None] | None,
    ) -> None:
        """Copy ``inputs`` in id order (``oldest_outside``: the oldest file the merge
        does not take, or None); see the module docstring."""
        outputs, expired, out_ids = self.outputs, self.expired, self.out_ids
        stats = self.stats
        total = sum(sizes[fid] for fid in inputs)
        done = 0
        max_size = self.max_size
        out: Output | None = None
        for fid in inputs:
            mm = maps[fid]
            older_outside = oldest_outside is not None and oldest_outside < fid
            base = fid << FID_SHIFT
            issues = ScanIssues()
            last_report = 0
            # Where to roll back to if this file turns out to hold unreadable records.
            mark = (
                len(outputs),
                out.size if out is not None else 0,
                len(out.journal.keys) if out is not None else 0,
                len(expired),
                dict(stats),
            )
            for rec in scan(mm if mm is not None else b"", FILE_HEADER_SIZE, sizes[fid], issues):
                if writer.closing or halt.stopped:
                    raise StoreClosedError("store closed during merge")
                off, size, flags, ts, exp, key, aux = rec
                if flags & CORRUPT or issues.skipped:
                    break  # this file is left out whole: see below
                raw: bytes | None = None
                if flags & TOMBSTONE:
                    if older_outside and key not in kmap:
                        raw = mm[off : off + size] if mm is not None else b""
                        stats["tombs"] += 1
                else:
                    loc = base | (off << 32) | size
                    if kmap.get(key) != loc:
                        if older_outside and exp and key not in kmap:
                            # reclaimed by active expiry (bitcask/_expiry.py), maybe
                            # after now_ms was taken: it still shadows an older value
                            # that may sit outside S (if a tombstone deleted it instead,
                            # this one is redundant, never wrong)
                            raw = encode_tombstone(key, fid, ts)
                            rec = (off, len(raw), TOMBSTONE, ts, 0, key, fid)
                            stats["tombs"] += 1
                    elif exp and exp <= now_ms:
                        stats["expired"] += 1
                        expired.append((key, loc))
                        if older_outside:
                            raw = encode_tombstone(key, fid, ts)
                            rec = (off, len(raw), TOMBSTONE, ts, 0, key, fid)
                            stats["tombs"] += 1
                    else:
                        raw = mm[off : off + size] if mm is not None else b""
                if raw is None:
                    stats["dropped"] += 1
                    continue
                if rec[2] & IN_BATCH:  # a record copied as it is (not one made a tombstone)
                    value = raw[HEADER.size + len(key) :]
                    raw = encode(flags & (TOMBSTONE | TTL), ts, exp, key, value)
                    rec = (off, len(raw), flags & (TOMBSTONE | TTL), ts, exp, key, aux)
                if out is None or (
                    out.size + len(raw) > max_size
                    and out.size > FILE_HEADER_SIZE
                    and len(outputs) < len(out_ids)
                ):
                    out = Output(self.mdir, out_ids[len(outputs)])
                    outputs.append(out)
                out.add(raw, rec)
                if not rec[2] & TOMBSTONE:
                    stats["copied"] += 1
                if progress is not None and off - last_report >= CHUNK * 4:
                    last_report = off
                    progress(done + off, total)
            if issues.skipped or issues.stop is not None:
                n_out, out_size, out_recs, n_expired, counts = mark
                stats.update(counts)
                for o in outputs[n_out:]:
                    o.discard()
                del outputs[n_out:], expired[n_expired:]
                out = outputs[-1] if outputs else None
                if out is not None:
                    out.rewind(out_size, out_recs)
                why = (
                    "; ".join(f"offset {o}, {n} bytes: {r}" for o, n, r in issues.skipped[:3])
                    or f"offset {issues.stop}: {issues.stop_reason}"
                )
                self.left_out.append((fid, why))
                log.error(
                    "merge left %s out: it holds unreadable records (%s)", data_name(fid), why
                )
                if oldest_outside is None or fid < oldest_outside:
                    oldest_outside = fid  # its keys may still need later tombstones
            done += sizes[fid]
            if progress is not None:
                progress(done, total)

    def close(self) -> None:
        """Close the outputs a failure left open (``Output.finish`` closed the others)."""
        for o in self.outputs:
            o.close()
