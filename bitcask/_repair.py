"""Offline repair (``repair``) of a store directory; ``check`` (bitcask/check.py) reports.

Strategy: both read data files through the same validating scanner as recovery, so
"what check calls bad" is exactly "what open would skip". ``check`` never writes.
``repair`` takes the store lock, finishes or discards an interrupted merge, then for
each data file with problems (including a bad file header: records validate
themselves) writes a clean copy aside (only the records that apply, batches
flattened to plain records since they committed) and renames it over the original;
finally it rebuilds every missing, stale or bad hint. Every dropped byte range is
listed (file, offset, bytes, reason).

Repair is the one explicit action that removes unreadable records, and it loses
nothing silently: every dropped byte range is first copied to
``quarantine/<data file>.<UTC time>.bad`` (with a ``.json`` index: where each range
came from and why), and a damaged record whose key the scanner could read
(``CORRUPT``) is replaced by a tombstone for that key, so the key becomes absent
rather than answering an older value. Those keys are listed in the report.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import asdict, dataclass
from typing import Any

from . import _io
from ._datafile import (
    CORRUPT,
    FILE_HEADER_SIZE,
    UNSUPPORTED,
    ScanIssues,
    data_name,
    encode_file_header,
    hint_name,
    list_data_files,
    map_file,
    parse_file_header,
    scan,
)
from ._hint import build_hint, write_hint
from ._io import fsync_dir
from ._lock import DirLock
from ._merge_swap import recover_interrupted
from ._record import (
    HEADER_SIZE,
    IN_BATCH,
    TOMBSTONE,
    TTL,
    encode,
    encode_tombstone,
    timestamp_us,
)
from ._recovery import REPAIR_SUFFIX, quarantine, remove_leftovers
from .check import Problem, _file_problems

__all__ = ["RepairReport", "repair"]


@dataclass(frozen=True)
class RepairReport:
    """Result of ``repair(path)``: what was cut, dropped and rebuilt."""

    path: str
    truncated: tuple[Problem, ...]  # torn tails cut off
    dropped: tuple[Problem, ...]  # corrupt records and uncommitted batches removed
    rewritten_files: tuple[str, ...]
    hints_rebuilt: tuple[str, ...]
    merge: str  # "none" | "finished" | "discarded"
    untouched: tuple[Problem, ...] = ()  # files of another format version, left alone
    tombstoned: tuple[bytes, ...] = ()  # keys of unreadable records, now deleted
    quarantined: tuple[str, ...] = ()  # files under quarantine/ holding the dropped bytes
    removed: tuple[str, ...] = ()  # leftovers deleted: .data.repair copies, orphan hints
    not_examined: tuple[str, ...] = ()  # data files a stopped repair never reached

    @property
    def changed(self) -> bool:
        return bool(
            self.truncated
            or self.dropped
            or self.hints_rebuilt
            or self.removed
            or self.merge != "none"
        )

    def to_dict(self) -> dict[str, Any]:
        """A JSON-serialisable dict of every field plus ``changed``."""
        d = asdict(self)
        d["truncated"] = [asdict(p) for p in self.truncated]
        d["dropped"] = [asdict(p) for p in self.dropped]
        d["rewritten_files"] = list(self.rewritten_files)
        d["hints_rebuilt"] = list(self.hints_rebuilt)
        d["untouched"] = [asdict(p) for p in self.untouched]
        d["tombstoned"] = [k.decode("utf-8", "backslashreplace") for k in self.tombstoned]
        d["quarantined"] = list(self.quarantined)
        d["removed"] = list(self.removed)
        d["not_examined"] = list(self.not_examined)
        d["changed"] = self.changed
        return d

    def __str__(self) -> str:
        lines = [
            f"repair {self.path}: {len(self.truncated)} tails truncated, "
            f"{len(self.dropped)} ranges dropped, {len(self.rewritten_files)} files rewritten, "
            f"{len(self.hints_rebuilt)} hints rebuilt, merge {self.merge}"
        ]
        lines += [f"  truncated {p}" for p in self.truncated]
        lines += [f"  dropped {p}" for p in self.dropped]
        lines += [f"  rebuilt {name}" for name in self.hints_rebuilt]
        lines += [f"  untouched {p}" for p in self.untouched]
        lines += [f"  deleted unreadable key {k!r}" for k in self.tombstoned]
        lines += [f"  kept dropped bytes in {q}" for q in self.quarantined]
        lines += [f"  removed leftover {name}" for name in self.removed]
        if self.not_examined:
            lines.append(
                f"  stopped before {len(self.not_examined)} files "
                f"({self.not_examined[0]} on): run it again"
            )
        return "\n".join(lines)


def repair(
    path: str | bytes | os.PathLike[str] | os.PathLike[bytes],
    *,
    stop: Callable[[], bool] | None = None,
) -> RepairReport:
    """Fix a store in place: cut torn tails, drop corrupt records, rebuild hints.

    Takes the store lock (the store must not be open for writing elsewhere).
    ``stop()``, asked before each data file (any thread may make it true), ends the
    repair there: every file before it is repaired, none after it touched, and the
    report's ``not_examined`` names those; a later repair finishes the job.

    Raises:
        StoreLockedError: a writer has the store open.

    Example:
        >>> print(bitcask.repair("./data"))
        repair ./data: 1 tails truncated, 0 ranges dropped, ...
    """
    path = os.fsdecode(path)  # bytes as bitcask.open takes them
    if not os.path.isdir(path):
        raise FileNotFoundError(f"no store at {path!r}")
    lock = DirLock(path)
    try:
        merge_state = recover_interrupted(path)
        removed = remove_leftovers(path)  # what check lists as notes
        truncated: list[Problem] = []
        dropped: list[Problem] = []
        rewritten: list[str] = []
        rebuilt: list[str] = []
        untouched: list[Problem] = []
        tombstoned: list[bytes] = []
        quarantined: list[str] = []
        ids = list_data_files(path)
        not_examined: tuple[str, ...] = ()
        for i, fid in enumerate(ids):
            name = data_name(fid)
            if stop is not None and stop():
                not_examined = tuple(data_name(f) for f in ids[i:])
                break
            dpath = os.path.join(path, name)
            mm = map_file(dpath)
            size = len(mm) if mm is not None else 0
            bad = parse_file_header(mm if mm is not None else b"", fid)
            if bad is not None and size < FILE_HEADER_SIZE:
                del mm
                os.replace(dpath, dpath + ".corrupt")
                dropped.append(Problem(name, 0, size, f"{bad}; moved to {name}.corrupt"))
                rewritten.append(name)
                continue
            if bad is not None and bad.startswith(UNSUPPORTED):
                untouched.append(Problem(name, 0, size, f"{bad}; left as it is"))
                continue
            assert mm is not None
            # Records validate themselves, so a bad file header costs only the header:
            # the file is rewritten below with a fresh one.
            issues = ScanIssues()
            recs = list(scan(mm, FILE_HEADER_SIZE, size, issues))
            hpath = os.path.join(path, hint_name(fid))
            if bad is not None:
                dropped.append(Problem(name, 0, FILE_HEADER_SIZE, f"{bad}; header rewritten"))
            if bad is not None or issues.skipped or issues.stop is not None:
                probs = _file_problems(name, size, issues)
                tail = issues.tail_start
                for p in probs:
                    is_tail = i == len(ids) - 1 and tail is not None and p.offset >= tail
                    (truncated if is_tail else dropped).append(p)
                ranges = [(p.offset, p.bytes, p.reason) for p in probs]
                quarantined.append(quarantine(path, name, mm, ranges))
                tombstoned += [r[5] for r in recs if r[2] & CORRUPT]
                # The old hint goes before the file it describes is replaced: a repair
                # killed in between left it beside the rewritten file, and trusted
                # where the sizes agree (a 4-byte value replaced by a tombstone of
                # the same size) it pointed the tombstoned key at its tombstone.
                if os.path.exists(hpath):
                    os.unlink(hpath)
                    fsync_dir(path)  # and a power cut must not undo that alone
                new_recs = _rewrite(dpath, fid, mm, recs)
                fsync_dir(path)  # the rewritten file in place before its new hint
                del mm
                rewritten.append(name)
                recs, size = new_recs, os.path.getsize(dpath)
            if _hint_ok(hpath, fid, size, recs):
                continue
            write_hint(hpath, build_hint(fid, size, recs))
            rebuilt.append(hint_name(fid))
        fsync_dir(path)
    finally:
        lock.release()
    return RepairReport(
        path=path,
        truncated=tuple(truncated),
        dropped=tuple(dropped),
        rewritten_files=tuple(rewritten),
        hints_rebuilt=tuple(rebuilt),
        merge=merge_state,
        untouched=tuple(untouched),
        tombstoned=tuple(tombstoned),
        quarantined=tuple(quarantined),
        removed=tuple(removed),
        not_examined=not_examined,
    )


def _hint_ok(hpath: str, fid: int, size: int, recs: list[Any]) -> bool:
    try:
        with open(hpath, "rb") as f:
            return f.read() == build_hint(fid, size, recs)
    except OSError:
        return False


def _rewrite(dpath: str, fid: int, mm: Any, recs: list[Any]) -> list[Any]:
    """Write the applying records of ``dpath`` to a new file, rename it over; new recs."""
    tmp = dpath + REPAIR_SUFFIX
    out = [encode_file_header(fid)]
    pos = FILE_HEADER_SIZE
    new_recs = []
    now_us = timestamp_us()
    for off, size, flags, ts, exp, key, aux in recs:
        raw = mm[off : off + size]
        if flags & CORRUPT:
            # Its bytes are in quarantine; the key becomes absent, never older.
            raw = encode_tombstone(key, fid, now_us)
            flags, ts, exp, aux = TOMBSTONE, now_us, 0, fid
        elif flags & IN_BATCH:
            clean = flags & (TOMBSTONE | TTL)
            raw = encode(clean, ts, exp, key, raw[HEADER_SIZE + len(key) :])
            flags = clean
        out.append(raw)
        new_recs.append((pos, len(raw), flags, ts, exp, key, aux))
        pos += len(raw)
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW, 0o644)
    try:
        # Whole or not at all: a short write (a filling disk) must not be renamed over
        # the original as if it were the file.
        _io.write(fd, b"".join(out))
        _io.fsync(fd)
    except BaseException:
        os.close(fd)
        os.unlink(tmp)
        raise
    os.close(fd)
    os.replace(tmp, dpath)
    return new_recs
