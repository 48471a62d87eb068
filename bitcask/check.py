"""Offline verification (``check``) and repair (``repair``) of a store directory.

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

import json
import os
import zlib
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
from ._files import fsync_dir
from ._hint import build_hint, decode_hint, hint_distrust, write_hint
from ._lock import DirLock
from ._merge_swap import MERGE_DIR, recover_interrupted
from ._record import (
    HEADER_SIZE,
    IN_BATCH,
    TOMBSTONE,
    TTL,
    encode,
    encode_tombstone,
    timestamp_us,
)
from ._recovery import QUARANTINE_DIR, REPAIR_SUFFIX, leftovers, quarantine, remove_leftovers

__all__ = [
    "BACKUP_MANIFEST",
    "QUARANTINE_DIR",
    "CheckReport",
    "Problem",
    "RepairReport",
    "check",
    "repair",
]

# Written next to the files by an online backup (client.Client.backup): format, cut_file
# (the first file id not in the backup) and every file's name, size and CRC-32.
BACKUP_MANIFEST = "backup.json"


@dataclass(frozen=True)
class Problem:
    """One bad byte range: in ``file``, ``bytes`` bytes at ``offset``, and why."""

    file: str
    offset: int
    bytes: int
    reason: str

    def __str__(self) -> str:
        return f"{self.file}: offset {self.offset}, {self.bytes} bytes: {self.reason}"


@dataclass(frozen=True)
class CheckReport:
    """Result of ``check(path)``; ``ok`` is True when nothing is wrong."""

    path: str
    files: int
    records: int
    problems: tuple[Problem, ...]
    bad_hints: tuple[Problem, ...]
    missing_hints: tuple[str, ...]
    merge_pending: bool
    # "none": no backup.json; "checked": the data files were compared with it;
    # "written since": files from its cut_file on exist, so it describes the past
    backup_manifest: str = "none"
    # Leftovers that are not damage (``ok`` ignores them), each with what to do: a
    # stopped repair's ``.data.repair`` copy, a hint whose data file is gone.
    notes: tuple[str, ...] = ()

    @property
    def ok(self) -> bool:
        return not self.problems and not self.bad_hints

    def to_dict(self) -> dict[str, Any]:
        """A JSON-serialisable dict of every field plus ``ok``."""
        d = asdict(self)
        d["problems"] = [asdict(p) for p in self.problems]
        d["bad_hints"] = [asdict(p) for p in self.bad_hints]
        d["missing_hints"] = list(self.missing_hints)
        d["notes"] = list(self.notes)
        d["ok"] = self.ok
        return d

    def __str__(self) -> str:
        lines = [
            f"check {self.path}: {'OK' if self.ok else 'PROBLEMS'}; {self.files} files, "
            f"{self.records} records, {len(self.problems)} problems, "
            f"{len(self.bad_hints)} bad hints, {len(self.missing_hints)} missing hints"
            + (", interrupted merge pending" if self.merge_pending else "")
            + (", backup.json checked" if self.backup_manifest == "checked" else "")
            + (f", {len(self.notes)} notes" if self.notes else "")
        ]
        lines += [f"  {p}" for p in (*self.problems, *self.bad_hints)]
        lines += [f"  {name}: missing" for name in self.missing_hints]
        lines += [f"  note: {note}" for note in self.notes]
        return "\n".join(lines)


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


def _file_problems(name: str, size: int, issues: ScanIssues) -> list[Problem]:
    probs = [Problem(name, off, n, why) for off, n, why in issues.skipped]
    if issues.stop is not None:
        # A crashed writer's file ends in unwritten zero bytes: not damage, not
        # counted (docs/format.md), as recovery counts it: the bad bytes end there.
        end = size if issues.unwritten is None else max(issues.unwritten, issues.stop)
        probs.append(Problem(name, issues.stop, end - issues.stop, issues.stop_reason))
    return probs


def check(path: str | os.PathLike[str]) -> CheckReport:
    """Verify every record of every data file and every hint file; never modifies.

    Safe beside a running writer (it reads a snapshot of each file as it goes). A
    data file a running merge deletes between the listing and its turn is skipped:
    its live records are in the merge's output, which a later check reads.

    Example:
        >>> report = bitcask.check("./data"); report.ok
        True
    """
    path = os.fspath(path)
    if not os.path.isdir(path):
        raise FileNotFoundError(f"no store at {path!r}")
    problems: list[Problem] = []
    bad_hints: list[Problem] = []
    missing: list[str] = []
    records = 0
    ids = list_data_files(path)
    checked = 0
    for fid in ids:
        # A running writer's active file changes while it is read (appended to, then
        # sealed: cut to its records, its hint written): read again, once, a file
        # whose size moved meanwhile, so that a hint written at its seal is judged
        # against the sealed file, not the preallocated one mapped before.
        found = _check_file(path, fid)
        if found is not None and found[4]:
            found = _check_file(path, fid)
        if found is None:
            continue  # a running server's merge deleted it since the listing
        checked += 1
        records += found[0]
        problems += found[1]
        bad_hints += found[2]
        missing += found[3]
    manifest_state, manifest_problems = _check_manifest(path, ids)
    notes = [_note(kind, name) for kind, name in leftovers(path)]
    return CheckReport(
        path=path,
        files=checked,
        records=records,
        problems=tuple(problems + manifest_problems),
        bad_hints=tuple(bad_hints),
        missing_hints=tuple(missing),
        merge_pending=os.path.isdir(os.path.join(path, MERGE_DIR)),
        backup_manifest=manifest_state,
        notes=tuple(notes),
    )


def _note(kind: str, name: str) -> str:
    data = name[:10] + ".data"
    if kind == "repair":
        return (
            f"{name}: a copy left by a repair that was stopped before its rename (not"
            f" damage; {data} is the file in use): the next writer open or"
            " `bitcask repair` deletes it, or delete it by hand while no repair runs"
        )
    return (
        f"{name}: a hint whose data file {data} is gone (removed by hand, or by a merge"
        " not finished yet; not damage, nothing reads it): the next writer open or"
        " `bitcask repair` deletes it, or delete it by hand"
    )


def _check_file(
    path: str, fid: int
) -> tuple[int, list[Problem], list[Problem], list[str], bool] | None:
    """Check data file ``fid`` and its hint: (records, problems, bad hints, missing
    hints, whether the file's size moved while it was read); None if it is gone."""
    name = data_name(fid)
    dpath = os.path.join(path, name)
    try:
        mm = map_file(dpath)
    except FileNotFoundError:
        return None  # a running server's merge deleted it since the listing
    size = len(mm) if mm is not None else 0
    problems: list[Problem] = []
    bad = parse_file_header(mm if mm is not None else b"", fid)
    if bad is not None:
        if size < FILE_HEADER_SIZE or bad.startswith(UNSUPPORTED):
            return 0, [Problem(name, 0, size, bad)], [], [], False
        problems.append(Problem(name, 0, FILE_HEADER_SIZE, bad))
    assert mm is not None
    issues = ScanIssues()
    recs = list(scan(mm, FILE_HEADER_SIZE, size, issues))
    records = sum(1 for r in recs if not r[2] & CORRUPT)
    problems += _file_problems(name, size, issues)
    hpath = os.path.join(path, hint_name(fid))
    try:
        with open(hpath, "rb") as f:
            blob = f.read()
    except FileNotFoundError:
        try:
            moved = os.path.getsize(dpath) != size
        except FileNotFoundError:  # merged away meanwhile, hint and all
            return records, problems, [], [], False
        return records, problems, [], [hint_name(fid)], moved
    try:
        moved = os.path.getsize(dpath) != size
    except FileNotFoundError:
        return records, problems, [], [], False
    # Exactly what the open distrusts (and then scans the file instead of):
    # decode_hint, then hint_distrust, the rules recovery applies.
    try:
        why = hint_distrust(decode_hint(blob, fid), size)
    except ValueError as exc:
        why = str(exc)
    if why is not None:
        bad_hint = Problem(hint_name(fid), 0, len(blob), f"{why}; open scans {name}")
        return records, problems, [bad_hint], [], moved
    # A damaged data file is reported above; its hint may still be right (it
    # was written before the damage), and the open trusts it as it is.
    if not issues.skipped and issues.stop is None and blob != build_hint(fid, size, recs):
        why = "hint does not match its data file; open trusts it (repair rebuilds it)"
        return records, problems, [Problem(hint_name(fid), 0, len(blob), why)], [], moved
    return records, problems, [], [], moved


def _check_manifest(path: str, ids: list[int]) -> tuple[str, list[Problem]]:
    """Compare the data files with backup.json, if there is one and it still applies.

    Every record of a half-copied backup is valid (the copy stopped between files, or a
    file is missing): only the manifest tells that 60,000 keys came back as 35,000. A
    store a writer has opened since (a restored backup that took writes, merged)
    has files numbered from cut_file on, and its manifest describes the past.
    """
    mpath = os.path.join(path, BACKUP_MANIFEST)
    if not os.path.exists(mpath):
        return "none", []
    try:
        with open(mpath, "rb") as f:
            manifest = json.loads(f.read())
        cut = int(manifest["cut_file"])
        listed = [(str(e["name"]), int(e["size"]), int(e["crc"])) for e in manifest["files"]]
    except (OSError, ValueError, KeyError, TypeError) as exc:
        why = exc.strerror if isinstance(exc, OSError) else f"{type(exc).__name__}: {exc}"
        return "checked", [Problem(BACKUP_MANIFEST, 0, 0, f"unreadable manifest ({why})")]
    if any(fid >= cut for fid in ids):
        return "written since", []
    problems: list[Problem] = []
    names = {data_name(fid) for fid in ids}
    for name, size, crc in listed:
        if not name.endswith(".data"):
            continue  # hints are checked against their data files above
        if name not in names:
            problems.append(Problem(name, 0, 0, f"missing: {BACKUP_MANIFEST} lists {size} bytes"))
            continue
        try:
            mm = map_file(os.path.join(path, name))
        except FileNotFoundError:
            problems.append(Problem(name, 0, 0, f"missing: {BACKUP_MANIFEST} lists {size} bytes"))
            continue
        data = mm if mm is not None else b""
        if len(data) != size:
            why = f"{len(data)} bytes, {BACKUP_MANIFEST} says {size}"
            problems.append(Problem(name, 0, len(data), why))
        elif zlib.crc32(data) != crc:
            problems.append(Problem(name, 0, size, f"CRC-32 differs from {BACKUP_MANIFEST}"))
    listed_names = {name for name, _, _ in listed}
    for name in sorted(names - listed_names):
        problems.append(Problem(name, 0, 0, f"not in {BACKUP_MANIFEST}: not part of the backup"))
    return "checked", problems


def repair(path: str | os.PathLike[str], *, stop: Callable[[], bool] | None = None) -> RepairReport:
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
    path = os.fspath(path)
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
                new_recs = _rewrite(dpath, fid, mm, recs)
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
