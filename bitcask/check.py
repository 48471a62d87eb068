"""Offline verification (``check``) of a store directory; repair is ``bitcask/_repair.py``.

Strategy: check reads data files through the same validating scanner as recovery, so
"what check calls bad" is exactly "what open would skip". ``check`` never writes: it
lists every bad byte range (file, offset, bytes, reason) as a ``Problem``, every hint
the open would distrust, and the leftovers that are not damage (notes), and compares
the files with an online backup's ``backup.json`` when one applies. ``repair``
(bitcask/_repair.py) fixes what check reports, by the same ``Problem`` ranges.
"""

from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass
from typing import Any

from ._datafile import (
    CORRUPT,
    FILE_HEADER_SIZE,
    UNSUPPORTED,
    ScanIssues,
    data_name,
    hint_name,
    list_data_files,
    map_file,
    parse_file_header,
    scan,
)
from ._hint import build_hint, decode_hint, hint_distrust
from ._merge_swap import MERGE_DIR
from ._record import crc32
from ._recovery import QUARANTINE_DIR, leftovers

__all__ = [
    "BACKUP_MANIFEST",
    "QUARANTINE_DIR",
    "CheckReport",
    "Problem",
    "check",
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


def _file_problems(name: str, size: int, issues: ScanIssues) -> list[Problem]:
    probs = [Problem(name, off, n, why) for off, n, why in issues.skipped]
    if issues.stop is not None:
        # A crashed writer's file ends in unwritten zero bytes: not damage, not
        # counted (docs/format.md), as recovery counts it: the bad bytes end there.
        end = size if issues.unwritten is None else max(issues.unwritten, issues.stop)
        probs.append(Problem(name, issues.stop, end - issues.stop, issues.stop_reason))
    return probs


def check(path: str | bytes | os.PathLike[str] | os.PathLike[bytes]) -> CheckReport:
    """Verify every record of every data file and every hint file; never modifies.

    Safe beside a running writer (it reads a snapshot of each file as it goes). A
    data file a running merge deletes between the listing and its turn is skipped:
    its live records are in the merge's output, which a later check reads.

    Example:
        >>> report = bitcask.check("./data"); report.ok
        True
    """
    path = os.fsdecode(path)  # bytes as bitcask.open takes them
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
        elif crc32(data) != crc:
            problems.append(Problem(name, 0, size, f"CRC-32 differs from {BACKUP_MANIFEST}"))
    listed_names = {name for name, _, _ in listed}
    for name in sorted(names - listed_names):
        problems.append(Problem(name, 0, 0, f"not in {BACKUP_MANIFEST}: not part of the backup"))
    return "checked", problems
