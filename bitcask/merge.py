"""Merge: rewrite live records into fresh files and drop the rest, online and crash-safe.

Strategy (invariants):
1. Under the write lock: seal every file by rotating; S = the files to merge (all
   sealed files, or a subset for tests); reserve ids ``next .. next+len(S)`` for the
   outputs and give the new active file the id after that range. Outputs therefore
   sort after every input and before every write made during the merge, so loading
   in id order stays history order. Ids are never reused (a reader may still hold
   an old location).
2. In the caller's thread, no lock: copy into ``merge/`` each record whose keydir
   entry still equals its location and has not expired. Tombstones are dropped when
   S covers every file older than them; otherwise kept when their key is absent
   from the keydir (an older value may still sit in a file outside S). An expired
   value whose older versions may sit outside S is replaced by a tombstone.
3. Hints for the outputs; fsync outputs, hints and the directory; map the outputs
   (nothing past the manifest may need a descriptor); then the completion marker
   ``merge/MANIFEST`` (inputs, outputs, CRC), fsynced.
4. Serve the outputs (their mappings) beside S, then point each copied key at its
   new location only if the keydir still holds the old one, and forget the keys
   found expired, a slice of ``_INSTALL_STEP`` keys per hold of the write lock:
   writes go on in between (a key they change keeps its new location), readers find
   a key in S or in an output, both mapped. Then, under the write lock: rename
   outputs into place, unlink S and their hints, remove the manifest and ``merge/``,
   drop S from the file table. Any failure past the manifest (an I/O error in the
   swap, an interrupt in the repoint) leaves the store refusing writes and merges
   until a reopen finishes it: the next merge would delete ``merge/``.

A merge never makes data disappear: an input file in which the scanner meets an
unreadable record (a CRC mismatch, unreadable bytes, a dropped batch) is left out
whole. What was copied from it is rolled back, it stays in place (so its keys keep
their answers, CorruptRecordError for the damaged one), it counts as "outside" for
the tombstone rule of every later input, it is never offered to a merge again in
this session, and the report (``left_out``) and the log name it. ``repair`` is the
explicit action that removes unreadable records.

At open, a valid manifest means "finish step 4 on disk" (idempotent); no manifest
means the merge never completed and ``merge/`` is deleted. Readers never lock:
they retry a lookup whose file vanished, and an unlinked file stays readable
through any mapping a reader still holds.
"""

from __future__ import annotations

import json
import logging
import mmap
import os
import shutil
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import asdict, dataclass
from typing import Any
from zlib import crc32

from . import _io
from ._datafile import (
    CORRUPT,
    FILE_HEADER_SIZE,
    Rec,
    ScanIssues,
    data_name,
    encode_file_header,
    hint_name,
    map_file,
    scan,
)
from ._files import FileTable, ensure_descriptors, fsync_dir
from ._hint import HintJournal, write_hint
from ._keydir import FID_SHIFT, SIZE_MASK, Keydir
from ._pins import Pins
from ._record import HEADER, IN_BATCH, TOMBSTONE, TTL, encode, encode_tombstone
from ._writer import Writer
from .errors import BitcaskError, MergeInProgressError, ReadOnlyError, StoreClosedError

__all__ = [
    "MERGE_DIR",
    "MergeReport",
    "Merges",
    "read_manifest",
    "recover_interrupted",
    "run_merge",
]

log = logging.getLogger("bitcask")

MERGE_DIR = "merge"
MANIFEST = "MANIFEST"
_CHUNK = 1 << 20


@dataclass(frozen=True)
class MergeReport:
    """What a merge did. Returned by ``Bitcask.merge()``."""

    inputs: tuple[int, ...]  # file ids merged (now deleted)
    outputs: tuple[int, ...]  # file ids written
    bytes_before: int  # total size of the inputs
    bytes_after: int  # total size of the outputs
    records_copied: int
    records_dropped: int  # overwritten, deleted or expired values, and dropped tombstones
    tombstones_kept: int
    expired_dropped: int
    seconds: float
    # (file id, why) of inputs left out whole because they hold unreadable records
    left_out: tuple[tuple[int, str], ...] = ()

    @property
    def reclaimed_bytes(self) -> int:
        return self.bytes_before - self.bytes_after

    def to_dict(self) -> dict[str, Any]:
        """A JSON-serialisable dict of every field plus ``reclaimed_bytes``."""
        d = asdict(self)
        d["inputs"] = list(self.inputs)
        d["outputs"] = list(self.outputs)
        d["left_out"] = [list(x) for x in self.left_out]
        d["reclaimed_bytes"] = self.reclaimed_bytes
        return d

    def __str__(self) -> str:
        head = (
            f"merge: {len(self.inputs)} files -> {len(self.outputs)}, "
            f"{self.bytes_before} -> {self.bytes_after} bytes, {self.records_copied} copied, "
            f"{self.records_dropped} dropped ({self.expired_dropped} expired), "
            f"{self.tombstones_kept} tombstones kept, {self.seconds:.3f}s"
        )
        lines = [f"left out {data_name(fid)}: {why}" for fid, why in self.left_out]
        return "\n  ".join((head, *lines))


class Merges:
    """Merge coordination of one open store, and the parts a merge works on.

    ``lock`` lets one merge, backup or snapshot cut run at a time; ``pins`` are the
    files snapshots keep from merges; ``running`` keeps a second auto-merge from
    being queued. ``maybe_auto`` is the writer's after-rotation hook.
    """

    def __init__(self, keydir: Keydir, files: FileTable, writer: Writer) -> None:
        self.keydir = keydir
        self.files = files
        self.writer = writer
        self.lock = threading.Lock()
        self.pins = Pins()
        self.running = False
        self.count = 0  # merges swapped in since open
        self.last_error: str | None = None
        # set by Bitcask.stop_merges (a closing server): merges stop at their next record
        self.stopped = False
        # Dead bytes the last merge had to leave (kept tombstones, files it could not
        # take) and the files it could not take: the auto-merge trigger counts only the
        # dead bytes past these while those files stay the same.
        self.left_dead = 0
        self.left_out: frozenset[int] = frozenset()

    def maybe_auto(self) -> None:
        """Queue an auto-merge when dead bytes pass the trigger (caller holds the write lock)."""
        opts = self.writer.options
        if not opts.merge_trigger or self.running:
            return
        disk = sum(self.files.sizes().values())
        dead = disk - sum(self.keydir.live.values())
        if self.left_dead and self._excluded() == self.left_out:
            # Not what the last merge left: rerunning it would reclaim none of that.
            # A merge per rotation rewrote the whole store while a snapshot pinned old
            # files (their tombstones must stay), reclaiming nothing each time.
            dead -= self.left_dead
        if dead >= opts.merge_min_dead_bytes and dead >= opts.merge_trigger * disk:
            self.running = True  # reset by run_merge; keeps a second trigger out
            self.writer.tasks.put(self._auto)

    def _excluded(self) -> frozenset[int]:
        # The files a merge may not take now (caller holds the write lock).
        return frozenset(self.pins.pinned() | self.files.unloadable)

    def note_left(self, outputs: list[int]) -> None:
        """After a merge's swap (caller holds the write lock): remember the dead bytes
        it left, in its outputs and in the files it could not take."""
        excluded = self._excluded()
        sizes, live = self.files.sealed, self.keydir.live
        self.left_dead = sum(
            sizes[fid] - live.get(fid, 0) for fid in excluded.union(outputs) if fid in sizes
        )
        self.left_out = excluded

    def _auto(self) -> None:
        try:
            run_merge(self, None)
        except MergeInProgressError:
            pass
        except Exception as exc:  # a background merge must not kill the worker
            self.last_error = f"{type(exc).__name__}: {exc}"
        finally:
            self.running = self.lock.locked()

    def release_lock(self) -> None:
        """Release ``lock`` taken by a snapshot or backup, and let auto-merges trigger again."""
        self.lock.release()
        # An auto-merge that found the lock held left ``running`` set (it reads the
        # lock's state on the way out). At worst this lets one more trigger through,
        # whose merge finds the lock taken and gives up.
        self.running = self.lock.locked()


def crash_point(phase: str) -> None:
    """Called after each merge phase; tests replace it to simulate a crash there."""


class _Output:
    """The output file being filled in ``merge/``."""

    def __init__(self, mdir: str, fid: int) -> None:
        self.fid = fid
        self.path = os.path.join(mdir, data_name(fid))
        self.fd = os.open(self.path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
        self.buf = bytearray(encode_file_header(fid))
        self.size = FILE_HEADER_SIZE
        # Its hint entries, with their keydir locations (``_repoint`` reads them):
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
        if len(self.buf) >= _CHUNK:
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


def run_merge(
    m: Merges, progress: Callable[[int, int], None] | None, files: Iterable[int] | None = None
) -> MergeReport:
    """Merge ``files`` (default: every file) of a store; see the module docstring."""
    if not m.lock.acquire(blocking=False):
        raise MergeInProgressError("a merge or backup is already running")
    writer, table = m.writer, m.files
    started = time.monotonic()
    mdir = os.path.join(writer.path, MERGE_DIR)
    created = False
    outputs: list[_Output] = []
    try:
        m.running = True
        with writer.lock:
            writer.check_writable()
            sealed_before = [*sorted(table.sealed), table.active_id]
            inputs = sealed_before if files is None else sorted(set(files))
            pinned = m.pins.pinned()  # a snapshot's files are skipped, never deleted
            inputs = [fid for fid in inputs if fid not in table.unloadable and fid not in pinned]
            unknown = set(inputs) - set(sealed_before)
            if unknown:
                raise BitcaskError(f"no such data files: {sorted(unknown)}")
            first_out = table.next_id
            writer.rotate(reserve=len(inputs) + 1, requested=True)
            sizes, maps = table.hand_out(inputs)
            ensure_descriptors(len(table.entries) + len(inputs) + 1)  # + the outputs
        for fid in [fid for fid in inputs if maps[fid] is None]:
            # Served by pread: no descriptor was free to map it when it was sealed.
            # Map it now or leave it out of this merge; never read it as empty.
            try:
                maps[fid] = map_file(os.path.join(writer.path, data_name(fid)))
            except OSError:
                pass
            if maps[fid] is None:
                inputs.remove(fid)
        outside = sorted(set(sealed_before) - set(inputs))
        oldest_outside = outside[0] if outside else None
        crash_point("reserved")
        shutil.rmtree(mdir, ignore_errors=True)
        os.mkdir(mdir)
        created = True
        out_ids = list(range(first_out, first_out + len(inputs) + 1))
        stats = {"copied": 0, "dropped": 0, "tombs": 0, "expired": 0}
        expired: list[tuple[bytes, int]] = []
        total = sum(sizes.values())
        done = 0
        kmap = m.keydir.map
        now_ms = int(writer.now_ms())
        max_size = writer.options.max_file_size
        out: _Output | None = None
        left_out: list[tuple[int, str]] = []
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
                if writer.closing or m.stopped:
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
                    out = _Output(mdir, out_ids[len(outputs)])
                    outputs.append(out)
                out.add(raw, rec)
                if not rec[2] & TOMBSTONE:
                    stats["copied"] += 1
                if progress is not None and off - last_report >= _CHUNK * 4:
                    last_report = off
                    progress(done + off, total)
            if issues.skipped or issues.stop is not None:
                n_out, out_size, out_recs, n_expired, stats = mark
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
                left_out.append((fid, why))
                log.error(
                    "merge left %s out: it holds unreadable records (%s)", data_name(fid), why
                )
                if oldest_outside is None or fid < oldest_outside:
                    oldest_outside = fid  # its keys may still need later tombstones
            done += sizes[fid]
            if progress is not None:
                progress(done, total)
        if left_out:
            dropped = {fid for fid, _ in left_out}
            inputs = [fid for fid in inputs if fid not in dropped]
            total = sum(sizes[fid] for fid in inputs)
            with writer.lock:
                table.unloadable |= dropped  # never offered to a merge again
        for o in outputs:
            o.finish(mdir)
        fsync_dir(mdir)
        # Mapped now (a mapping survives the rename): past the manifest nothing may
        # fail for want of a descriptor, or the swap would be done on disk only.
        out_maps = [map_file(o.path) for o in outputs]
        crash_point("copied")
        _write_manifest(mdir, inputs, [o.fid for o in outputs])
        crash_point("manifest")
        served = [(o.fid, o.size, mm) for o, mm in zip(outputs, out_maps, strict=True)]
        try:
            _repoint(m, served, [o.journal for o in outputs], set(inputs), expired)
            with writer.lock:
                _swap_files(writer.path, inputs, [o.fid for o in outputs], after_rename=crash_point)
                m.files.install(served, inputs)
                for fid in inputs:
                    m.keydir.live.pop(fid, None)
                m.count += 1
                m.note_left([o.fid for o in outputs])
        except _SimulatedCrash:
            raise
        except BaseException as exc:
            # The manifest stands: only a reopen may finish this swap (step 4). An
            # interrupt here (Ctrl-C) left writes on, and the next merge deleted
            # merge/ under keys already pointed at its outputs.
            with writer.lock:
                writer.fail_until_restart("merge swap failed", exc)
            raise
        report = MergeReport(
            inputs=tuple(inputs),
            outputs=tuple(o.fid for o in outputs),
            bytes_before=total,
            bytes_after=sum(o.size for o in outputs),
            records_copied=stats["copied"],
            records_dropped=stats["dropped"],
            tombstones_kept=stats["tombs"],
            expired_dropped=stats["expired"],
            seconds=time.monotonic() - started,
            left_out=tuple(left_out),
        )
        # One line per merge, by hand or automatic (an automatic one reports nowhere else)
        log.info("%s in %s", str(report).replace("\n  ", "; "), writer.path)
        return report
    except _SimulatedCrash:
        raise
    except BaseException as exc:
        _log_failure(writer.path, exc, time.monotonic() - started)
        # Only a merge dir this call made, and only before its manifest exists
        # (after that, the next open finishes the swap).
        if created and not os.path.exists(os.path.join(mdir, MANIFEST)):
            shutil.rmtree(mdir, ignore_errors=True)
        raise
    finally:
        for o in outputs:  # those a failure left open (finish() closed the others)
            o.close()
        m.running = False
        m.lock.release()


def _log_failure(path: str, exc: BaseException, seconds: float) -> None:
    """One line for a merge that did not finish: abandoned for a close, or failed."""
    if isinstance(exc, StoreClosedError):
        log.info("merge abandoned in %s after %.3fs: %s", path, seconds, exc)
    elif isinstance(exc, ReadOnlyError):
        pass  # refused before it began; the fault itself is logged, refusals rate-limited
    elif isinstance(exc, Exception):
        log.warning(
            "merge failed in %s after %.3fs: %s: %s", path, seconds, type(exc).__name__, exc
        )


# Keydir updates per hold of the write lock in step 4 (a few ms each). One hold for
# all of them stalled every write for the whole loop: 0.46 s a merge at 1,000,000 keys.
_INSTALL_STEP = 8192


def _repoint(
    m: Merges,
    outputs: list[tuple[int, int, mmap.mmap | None]],
    journals: list[HintJournal],
    inputs: set[int],
    expired: list[tuple[bytes, int]],
) -> None:
    # Step 4 in memory, before the files are swapped on disk: serve the outputs, then
    # point each copied key at its copy, and forget the keys expired in the copy, a
    # slice at a time. A key is pointed at its copy only while the keydir still holds
    # a location in an input: that is the record copied, since no write lands in a
    # sealed file (a write made since points at the active file, a delete or an
    # expiry removed the key). The inputs stay served (and their live bytes counted)
    # until the swap drops them.
    kd = m.keydir
    kmap = kd.map
    live = kd.live
    lock = m.writer.lock
    with lock:
        for fid, _size, _mm in outputs:
            live[fid] = 0
        m.files.serve(outputs)
    for (fid, _size, _mm), journal in zip(outputs, journals, strict=True):
        keys, locs, tombs = journal.keys, journal.locs, journal.tombs
        for i in range(0, len(keys), _INSTALL_STEP):
            copied = 0
            with lock:
                for j in range(i, min(i + _INSTALL_STEP, len(keys))):
                    key = keys[j]
                    cur = kmap.get(key)
                    if cur is not None and cur >> FID_SHIFT in inputs and j not in tombs:
                        new = locs[j]
                        kmap[key] = new
                        copied += new & SIZE_MASK
                live[fid] += copied
            _yield_lock()
    for i in range(0, len(expired), _INSTALL_STEP):
        with lock:
            for key, old in expired[i : i + _INSTALL_STEP]:
                if kmap.get(key) == old:
                    del kmap[key]
                    kd.expiry.pop(key, None)
                    kd.note_deleted()
        _yield_lock()


def _yield_lock() -> None:
    """Between two slices of step 4: a lock is not fair, so let a writer waiting for it
    take it (and the GIL) first. Tests replace it to write there."""
    time.sleep(0)


class _SimulatedCrash(Exception):
    """Raised by a test's ``crash_point``: leave the files exactly as they are."""


def _write_manifest(mdir: str, inputs: list[int], outputs: list[int]) -> None:
    body = json.dumps({"version": 1, "inputs": inputs, "outputs": outputs}, sort_keys=True)
    text = f"{body}\n{crc32(body.encode()):08x}\n".encode()
    _io.replace_file(os.path.join(mdir, MANIFEST), text)
    fsync_dir(mdir)


def read_manifest(mdir: str) -> tuple[list[int], list[int]] | None:
    """(inputs, outputs) from a valid manifest in ``mdir``, else None."""
    try:
        with open(os.path.join(mdir, MANIFEST), "rb") as f:
            text = f.read().decode("ascii")
        body, crc_hex = text.rstrip("\n").rsplit("\n", 1)
        if int(crc_hex, 16) != crc32(body.encode()):
            return None
        doc = json.loads(body)
        inputs = [int(x) for x in doc["inputs"]]
        outputs = [int(x) for x in doc["outputs"]]
        return inputs, outputs
    except (OSError, ValueError, KeyError, TypeError, UnicodeDecodeError):
        return None


def _swap_files(
    path: str, inputs: list[int], outputs: list[int], after_rename: Callable[[str], None]
) -> None:
    """Step 4 on disk; safe to repeat after a crash at any point."""
    mdir = os.path.join(path, MERGE_DIR)
    for fid in outputs:
        for name in (data_name(fid), hint_name(fid)):
            src = os.path.join(mdir, name)
            if os.path.exists(src):
                os.replace(src, os.path.join(path, name))
    fsync_dir(path)
    after_rename("renamed")
    for fid in inputs:
        for name in (data_name(fid), hint_name(fid)):
            try:
                os.unlink(os.path.join(path, name))
            except FileNotFoundError:
                pass
    fsync_dir(path)
    after_rename("unlinked")
    shutil.rmtree(mdir, ignore_errors=True)
    fsync_dir(path)


def recover_interrupted(path: str) -> str:
    """At a writer open: finish a merge that wrote its manifest, discard any other.

    Returns:
        "none", "finished" or "discarded".
    """
    mdir = os.path.join(path, MERGE_DIR)
    if not os.path.isdir(mdir):
        return "none"
    manifest = read_manifest(mdir)
    if manifest is None:
        shutil.rmtree(mdir, ignore_errors=True)
        fsync_dir(path)
        return "discarded"
    _swap_files(path, manifest[0], manifest[1], after_rename=lambda phase: None)
    return "finished"
