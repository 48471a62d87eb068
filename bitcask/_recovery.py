"""Loading a store at open: hints where valid, scans elsewhere, torn tails handled.

Strategy (invariants):
- Files load in id order; a later file's records override earlier ones, and a
  tombstone removes the key. Merge gives its outputs ids above every input and
  below every file written during the merge, so id order is history order.
- A valid hint (CRC, magic, file id, and covering exactly the data file's size)
  replaces a scan of its data file; anything else falls back to scanning.
- A record that fails its check but whose framing holds (``CORRUPT`` from the
  scanner) still claims its key: the key points at the bad record and answers
  CorruptRecordError until overwritten or deleted, never an older value.
- Only the last file may have a torn tail (a crash mid-append): bytes after which
  no valid record follows (the scanner searches to the end of the file, so damage
  with valid records after it is never a tail). A writer open truncates it, first
  copying it to quarantine/ (``quarantine``, as repair does) unless it is all zero
  bytes; a readonly open ignores the bytes past the last valid record.
- A file still flagged ``OPEN_FILE`` (the preallocated active file of a crashed
  writer, see bitcask/_active.py) ends in unwritten zero bytes: not damage, not
  counted or reported; a writer open truncates them and clears the flag (seals it),
  and drops the file if no record is left.
  Unreadable bytes elsewhere are reported, never served, and never truncated here
  (``repair`` does that). The store always opens.
"""

from __future__ import annotations

import errno
import json
import mmap
import os
import time
from dataclasses import asdict, dataclass, field
from itertools import repeat
from operator import or_
from typing import Any

from . import _io
from ._datafile import (
    FILE_HEADER_SIZE,
    UNSUPPORTED,
    ScanIssues,
    data_name,
    encode_file_header,
    hint_name,
    is_open_file,
    list_data_files,
    map_file,
    parse_file_header,
    scan,
    zero_suffix,
)
from ._descriptors import ensure_descriptors, out_of_descriptors
from ._hint import read_hint, record_bytes
from ._io import fsync_dir
from ._keydir import FID_SHIFT, SIZE_MASK, Keydir
from ._record import TOMBSTONE

__all__ = [
    "QUARANTINE_DIR",
    "REPAIR_SUFFIX",
    "FileVanished",
    "LoadResult",
    "RecoveryReport",
    "leftovers",
    "load",
    "quarantine",
    "remove_leftovers",
]

# repair's temporary name for a file it rewrites: ``<data file>.repair``.
REPAIR_SUFFIX = ".repair"
# Where repair and a writer open keep the bytes they remove from a data file.
QUARANTINE_DIR = "quarantine"


@dataclass(frozen=True)
class RecoveryReport:
    """What opening the store found and did. ``db.recovery``; ``stats()["recovery"]``."""

    truncated_bytes: int = 0  # torn tail cut from the last file (writer open)
    corrupt_records: int = 0  # records that failed their check (each costs itself only)
    scanned_files: int = 0  # data files read record by record
    hinted_files: int = 0  # data files loaded from their hint
    skipped_bytes: int = 0  # bytes not loaded (unreadable, or a tail a readonly open ignored)
    dropped_batches: int = 0  # batches without a valid COMMIT, dropped whole
    merge: str = "none"  # an interrupted merge: "none" | "finished" | "discarded"
    events: tuple[str, ...] = field(default_factory=tuple)  # one line per finding

    def to_dict(self) -> dict[str, Any]:
        """A JSON-serialisable dict of every field."""
        d = asdict(self)
        d["events"] = list(self.events)
        return d

    def __str__(self) -> str:
        head = (
            f"recovery: {self.hinted_files} hinted, {self.scanned_files} scanned, "
            f"{self.truncated_bytes} bytes truncated, {self.corrupt_records} corrupt records, "
            f"{self.skipped_bytes} bytes skipped, {self.dropped_batches} batches dropped, "
            f"merge {self.merge}"
        )
        return "\n  ".join((head, *self.events))


class FileVanished(Exception):
    """A data file disappeared while loading (a writer's merge swapped it)."""


class LoadResult:
    """What load() built (a plain class: a dataclass's generated methods were 3
    exec() compilations at every import, and nothing compares or prints one)."""

    __slots__ = ("keydir", "maps", "report", "sizes", "unhinted", "unloadable")

    def __init__(
        self,
        keydir: Keydir,
        sizes: dict[int, int],
        maps: dict[int, mmap.mmap | None],
        unhinted: list[int],
        unloadable: set[int],
        report: RecoveryReport,
    ) -> None:
        self.keydir = keydir
        self.sizes = sizes
        self.maps = maps
        self.unhinted = unhinted  # sealed files that have no valid hint
        self.unloadable = unloadable  # files not loaded at all (too short, unsupported version)
        self.report = report


def load(path: str, *, readonly: bool, use_hints: bool, merge_state: str) -> LoadResult:
    """Build the keydir from the data files of ``path``.

    Every data file stays mapped (one descriptor each): the soft descriptor limit is
    raised first if they would not fit (``ensure_descriptors``).

    Raises:
        FileVanished: a file listed in the directory could not be opened, or changed
            size while a readonly open scanned it (readonly opens retry; a writer
            holds the lock, so nothing else deletes or seals files).
        StoreIOError: out of descriptors (EMFILE) even so, saying how many the
            store needs.
    """
    if not readonly:
        remove_leftovers(path)
    files = len(list_data_files(path))
    ensure_descriptors(files)
    try:
        return _load(path, readonly=readonly, use_hints=use_hints, merge_state=merge_state)
    except OSError as exc:
        if exc.errno != errno.EMFILE:
            raise
        raise out_of_descriptors(path, files, exc) from exc


def leftovers(path: str) -> list[tuple[str, str]]:
    """(kind, name), sorted by name, of each file of ``path`` that nothing reads:
    "repair", a ``<data file>.repair`` copy of a repair killed before its rename (the
    size of its file, kept forever); "hint", a hint whose data file is gone (removed
    by hand, or by a merge not finished yet: a writer open finishes it first). A hint
    left so took the number of the next data file a writer created, and a check
    beside that writer called the healthy store damaged (a bad hint). Not damage:
    ``check`` lists them as notes; ``remove_leftovers`` deletes them."""
    names = os.listdir(path)
    present = set(names)
    found = []
    for name in sorted(names):
        if name.endswith(REPAIR_SUFFIX) and name[: -len(REPAIR_SUFFIX)].endswith(".data"):
            found.append(("repair", name))
        elif (
            len(name) == 15
            and name.endswith(".hint")
            and name[:10].isdigit()
            and name[:10] + ".data" not in present
        ):
            found.append(("hint", name))
    return found


def remove_leftovers(path: str) -> list[str]:
    """Delete the ``leftovers`` of ``path`` and return their names.

    Callers hold the store's lock (a writer open, repair) and have finished or
    discarded an interrupted merge: no repair or merge is running.
    """
    found = [name for _, name in leftovers(path)]
    for name in found:
        os.unlink(os.path.join(path, name))
    return found


def _load(path: str, *, readonly: bool, use_hints: bool, merge_state: str) -> LoadResult:
    kd = Keydir()
    kmap = kd.map
    pending_exp: dict[bytes, tuple[int, int]] = {}
    sizes: dict[int, int] = {}
    maps: dict[int, mmap.mmap | None] = {}
    unhinted: list[int] = []
    unloadable: set[int] = set()
    events: list[str] = []
    counts = {"truncated": 0, "corrupt": 0, "scanned": 0, "hinted": 0, "skipped": 0, "batches": 0}
    ids = list_data_files(path)
    for i, fid in enumerate(ids):
        last = i == len(ids) - 1
        dpath = os.path.join(path, data_name(fid))
        try:
            size = os.stat(dpath).st_size
        except FileNotFoundError:
            raise FileVanished(dpath) from None
        if size == FILE_HEADER_SIZE and not readonly:
            # A file that never received a record (an idle writer session): drop it
            # so reopening does not pile up empty files. It holds no locations.
            os.unlink(dpath)
            hpath = os.path.join(path, hint_name(fid))
            if os.path.exists(hpath):
                os.unlink(hpath)
            continue
        hint_ok = use_hints and _hint_usable(dpath, fid, readonly)
        if hint_ok and _load_hint(path, fid, size, kmap, kd.live, pending_exp):
            counts["hinted"] += 1
            sizes[fid] = size
            maps[fid] = _map(dpath)
            continue
        counts["scanned"] += 1
        mm = _map(dpath)
        bad = parse_file_header(mm if mm is not None else b"", fid)
        if bad is not None:
            if last and not readonly and size < FILE_HEADER_SIZE:
                os.unlink(dpath)  # created, then the crash came before its header landed
                counts["truncated"] += size
                events.append(f"{data_name(fid)}: removed, {size} bytes, {bad}")
                continue
            if size < FILE_HEADER_SIZE or bad.startswith(UNSUPPORTED):
                counts["skipped"] += size
                events.append(f"{data_name(fid)}: not loaded, {size} bytes, {bad}")
                sizes[fid] = size
                maps[fid] = mm
                unloadable.add(fid)  # never merged (that would delete it)
                continue
            # Records validate themselves: a damaged header costs only the header.
            counts["skipped"] += FILE_HEADER_SIZE
            events.append(f"{data_name(fid)}: offset 0, {FILE_HEADER_SIZE} bytes: {bad}")
        assert mm is not None
        issues = ScanIssues()
        base = fid << FID_SHIFT
        live = kd.live
        live[fid] = 0
        for off, rsize, flags, _ts, exp, key, _aux in scan(mm, FILE_HEADER_SIZE, size, issues):
            old = kmap.pop(key, None) if flags & TOMBSTONE else kmap.get(key)
            if old is not None:
                live[old >> FID_SHIFT] -= old & SIZE_MASK
            if not flags & TOMBSTONE:
                loc = base | (off << 32) | rsize
                kmap[key] = loc
                live[fid] += rsize
                if exp:
                    pending_exp[key] = (exp, loc)
        if readonly and _size_now(dpath) != size:
            # A writer sealed (truncated) the file while it was read: the bytes past
            # its new end, read under the sealed header, scanned as a damaged 29-byte
            # record of key b"" whose get() raised CORRUPT_RECORD (a readonly open
            # beside a rotating writer: test_api_contract's merging-writer test failed
            # about 1 run in 50; a loop of 40 such runs met it 1-3 times before this
            # check, never after). The open reads the store again (FileVanished).
            raise FileVanished(dpath)
        counts["corrupt"] += issues.corrupt_records
        counts["batches"] += issues.dropped_batches
        tail = issues.tail_start
        unwritten = issues.unwritten
        written = size if unwritten is None else unwritten  # the zero tail is no data
        for off, nbytes, why in issues.skipped:
            events.append(f"{data_name(fid)}: offset {off}, {nbytes} bytes: {why}")
            if not (last and tail is not None and off >= tail):  # the tail counts below
                counts["skipped"] += nbytes
        cut = None
        if tail is not None and last:
            if readonly:
                counts["skipped"] += written - tail
                events.append(f"{data_name(fid)}: offset {tail}, {written - tail} bytes ignored")
            else:
                cut = tail
                counts["truncated"] += written - tail
                event = f"{data_name(fid)}: offset {tail}, {written - tail} bytes truncated"
                if zero_suffix(mm, tail, written) > tail:
                    # Bytes that are not all zero leave the file only with a copy kept
                    # (zeros carry nothing: the event names the range).
                    why = issues.stop_reason if tail == issues.stop else "batch not committed"
                    why = f"{why}; torn tail truncated by a writer open"
                    kept = quarantine(path, data_name(fid), mm, [(tail, written - tail, why)])
                    event += f", kept in {kept}"
                events.append(event)
        elif issues.stop is not None:
            counts["skipped"] += written - issues.stop
            events.append(
                f"{data_name(fid)}: offset {issues.stop}, {written - issues.stop} bytes "
                f"not loaded: {issues.stop_reason}"
            )
        if unwritten is not None and cut is None:
            cut = unwritten
        if readonly:
            size = min(size, written)
        elif cut is not None:
            del mm
            _truncate(dpath, cut, fid if unwritten is not None else None)
            size = cut
            if size == FILE_HEADER_SIZE and unwritten is not None:
                # A preallocated file that never received a record: drop it, as an
                # empty file above (it holds no locations).
                os.unlink(dpath)
                live.pop(fid, None)
                continue
            mm = _map(dpath)
        sizes[fid] = size
        maps[fid] = mm
        unhinted.append(fid)
    kd.expiry = {k: e for k, (e, loc) in pending_exp.items() if kmap.get(k) == loc}
    report = RecoveryReport(
        truncated_bytes=counts["truncated"],
        corrupt_records=counts["corrupt"],
        scanned_files=counts["scanned"],
        hinted_files=counts["hinted"],
        skipped_bytes=counts["skipped"],
        dropped_batches=counts["batches"],
        merge=merge_state,
        events=tuple(events),
    )
    return LoadResult(kd, sizes, maps, unhinted, unloadable, report)


def _size_now(dpath: str) -> int:
    try:
        return os.stat(dpath).st_size
    except FileNotFoundError:
        return -1


def _hint_usable(dpath: str, fid: int, readonly: bool) -> bool:
    """Whether the file's hint may stand in for scanning it.

    Not for a file whose header names another format version: it is not loaded at
    all (docs/format.md), and its hint would have loaded its keys anyway. Not, on a
    writer open, for a flagged file (a crashed writer's): it is scanned even with a
    hint (`repair` builds one as the file is), so that its zero tail is trimmed.
    """
    try:
        with open(dpath, "rb", buffering=0) as f:
            head = f.read(FILE_HEADER_SIZE)
    except FileNotFoundError:  # a writer's merge beside a readonly open deleted it
        raise FileVanished(dpath) from None
    bad = parse_file_header(head, fid)
    if bad is not None and (len(head) < FILE_HEADER_SIZE or bad.startswith(UNSUPPORTED)):
        return False
    return readonly or not is_open_file(head)


def _map(dpath: str) -> mmap.mmap | None:
    try:
        return map_file(dpath)
    except FileNotFoundError:
        raise FileVanished(dpath) from None


def _truncate(dpath: str, size: int, seal: int | None = None) -> None:
    # Cut the file at ``size``; ``seal`` (its file id): also clear OPEN_FILE, once
    # the cut is durable, as ActiveFile.seal does (a power cut must not keep the
    # cleared flag without the cut: a sealed file ending in zeros reads as damage).
    fd = os.open(dpath, os.O_WRONLY | os.O_NOFOLLOW)  # never cut a file a link names
    try:
        os.ftruncate(fd, size)
        if seal is not None:
            os.fsync(fd)
            os.pwrite(fd, encode_file_header(seal), 0)
        os.fsync(fd)
    finally:
        os.close(fd)


def _load_hint(
    path: str,
    fid: int,
    size: int,
    kmap: dict[bytes, int],
    live: dict[int, int],
    pending_exp: dict[bytes, tuple[int, int]],
) -> bool:
    try:
        hint = read_hint(os.path.join(path, hint_name(fid)), fid, size)
    except (OSError, ValueError):
        return False
    # read_hint refused a stale hint (its size, an entry past the end: hint_distrust)
    base = fid << FID_SHIFT
    pop = kmap.pop
    for key in hint.tomb_keys:
        old = pop(key, None)
        if old is not None:
            live[old >> FID_SHIFT] -= old & SIZE_MASK
    # Live bytes without a Python loop per key: this file's entries count in full,
    # and the (usually few) entries they replace are taken off their own files.
    if kmap:  # nothing to replace while loading the first file
        for old in filter(None, map(kmap.get, hint.keys)):
            live[old >> FID_SHIFT] -= old & SIZE_MASK
    live[fid] = record_bytes(hint)
    # The keydir's ints straight into the dict, no list of them: or_ with base
    # repeated is a C call per entry, where base.__or__ made an argument tuple per
    # entry too (1,000,000 keys: 155 -> 125 ms CPU on a busy machine). Not add: its
    # ints are allocated a digit longer (40 bytes, tracemalloc's keydir +4 B/key).
    kmap.update(zip(hint.keys, map(or_, repeat(base), hint.locs), strict=True))
    if hint.exp_index:
        keys, locs = hint.keys, hint.locs
        for idx, exp in zip(hint.exp_index, hint.exp_ms, strict=True):
            pending_exp[keys[idx]] = (exp, base | locs[idx])
    return True


def quarantine(path: str, name: str, mm: Any, ranges: list[tuple[int, int, str]]) -> str:
    """Copy the (offset, bytes, reason) ``ranges`` of data file ``name`` to quarantine/,
    before ``repair`` or a writer open removes them from the file.

    Returns the quarantine file's path relative to the store. The ``.bad`` file holds
    the ranges back to back; the ``.json`` index says where each came from and why.
    Each is written under ``.tmp`` and renamed, the ``.bad`` first. A repair (or an
    open) killed after this and rerun finds the same ranges: it reuses the copy it
    left (a pair with the same bytes, or a lone ``.bad`` it completes with its index)
    instead of writing a second one, and removes the ``.tmp`` files of a copy it was
    killed in. The directory entries are fsynced before the caller cuts the file.
    """
    qdir = os.path.join(path, QUARANTINE_DIR)
    created = not os.path.isdir(qdir)
    os.makedirs(qdir, exist_ok=True)
    index = []
    chunks = []
    at = 0
    for offset, nbytes, reason in ranges:
        chunk = bytes(mm[offset : offset + nbytes])
        chunks.append(chunk)
        index.append({"offset": offset, "bytes": len(chunk), "at": at, "reason": reason})
        at += len(chunk)
    blob, meta = b"".join(chunks), json.dumps(index).encode()
    base = _quarantined_before(qdir, name, blob, meta)
    if base is None:
        stem = f"{name}.{time.strftime('%Y%m%dT%H%M%SZ', time.gmtime())}"
        base = stem
        n = 1
        while os.path.exists(os.path.join(qdir, base + ".bad")):
            n += 1
            base = f"{stem}.{n}"
        _io.replace_file(os.path.join(qdir, base + ".bad"), blob, mode=0o600)
    if not os.path.exists(os.path.join(qdir, base + ".json")):
        _io.replace_file(os.path.join(qdir, base + ".json"), meta, mode=0o600)
    fsync_dir(qdir)
    if created:
        fsync_dir(path)
    return os.path.join(QUARANTINE_DIR, base + ".bad")


def _quarantined_before(qdir: str, name: str, blob: bytes, meta: bytes) -> str | None:
    """The name (without suffix) of a quarantine copy of exactly these ranges of
    data file ``name`` (a repair killed after writing it); None if there is none."""
    found = None
    for entry in sorted(os.listdir(qdir)):
        if not entry.startswith(name + "."):
            continue
        full = os.path.join(qdir, entry)
        if entry.endswith(".tmp"):
            os.unlink(full)  # a copy a killed repair was writing: its bytes are still in the file
        elif found is None and entry.endswith(".bad") and os.path.getsize(full) == len(blob):
            jpath = full[: -len(".bad")] + ".json"
            with open(full, "rb") as f:
                same = f.read() == blob
            if same and os.path.exists(jpath):
                with open(jpath, "rb") as f:
                    same = f.read() == meta
            if same:
                found = entry[: -len(".bad")]
    return found
