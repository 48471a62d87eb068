"""Power loss under sync="always": the engine's fsync order, read from a real strace.

A SIGKILL loses nothing that reached the page cache (tests/bitcask/test_crashpoints.py);
a power cut keeps only what was fsynced, and a name created, renamed or removed only
once its directory was fsynced. docs/operations.md promises that under sync="always"
no acknowledged write is lost on power failure. That holds iff, in the order the
calls return (tests/bitcask/_syscall_trace.py):

(a) every acknowledged write's data file was fdatasync'ed after the write began and
    before the call returned (records go through a shared mapping: fdatasync of its
    descriptor writes the mapped pages back, fsync(2)'s "all modified in-core data");
(b) a data file a rotation created, and the store directory an open created, had
    their directory fsynced before a write in them was acknowledged (also for a
    write_batch(sync=True) under sync="never": a forced sync is durable);
(c) a merge's manifest is durable (outputs, hints, manifest, ``merge/`` itself)
    before anything is renamed into the store; its renames are followed by a
    directory fsync before an input is unlinked and before the merge returns;
(d) a hint is renamed into place only after its data file, as sealed, is durable;
    sealing (truncate, then the header without OPEN_FILE) makes the truncation
    durable before the header says the file is sealed: a cleared flag on a file
    whose zero tail came back would read as damage;
(e) a clean close under sync="never" leaves every data file and every name durable
    (docs/operations.md: a clean stop fsyncs everything);
(f) repair: the old hint's removal is durable before the rewritten file is renamed
    over the damaged one, which is durable before its new hint is renamed in, and
    all of it before repair() returns;
(g) a backup is complete and fsynced before its directory gets its name, and that
    name is fsynced before backup() returns.

The workload (tests/bitcask/_powerloss_child.py) runs in a child under strace and
writes a marker around each call. About a second.
"""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

import bitcask

from ._syscall_trace import Event, Trace, require_strace, strace_argv

CHILD = Path(__file__).with_name("_powerloss_child.py")


@pytest.fixture(scope="module")
def traced(tmp_path_factory: pytest.TempPathFactory) -> tuple[Trace, Path, Path, Path]:
    strace = require_strace()
    root = tmp_path_factory.mktemp("powerloss")
    store, backup, marks, log = root / "store", root / "backup", root / "marks", root / "trace"
    cmd = [
        *strace_argv(strace, log),
        sys.executable,
        str(CHILD),
        str(store),
        str(backup),
        str(marks),
    ]
    done = subprocess.run(cmd, capture_output=True, timeout=60, check=False)
    assert done.returncode == 0, done.stderr.decode(errors="replace")[-3000:]
    return Trace(log), store, backup, marks


def _markers(trace: Trace, marks: Path) -> list[tuple[Event, list[str]]]:
    return [
        (e, e.payload.rstrip("\\n").split())
        for e in trace.where(lambda e: e.call == "write" and e.fd_path == str(marks))
    ]


def _data(store: Path, name: str, fid: int) -> str:
    # the data file holding operation ``name``'s records (-never: the sync="never" store)
    return str(Path(f"{store}-never" if name.endswith("-never") else store) / f"{fid:010d}.data")


def test_every_acknowledged_write_was_fdatasynced_first(
    traced: tuple[Trace, Path, Path, Path],
) -> None:
    trace, store, _, marks = traced
    begun: dict[str, Event] = {}
    acked = []
    wrong = []
    for e, (kind, name, *fid) in _markers(trace, marks):
        if kind == "BEGIN":
            begun[name] = e
        elif fid != ["0"]:
            acked.append(name)
            path = _data(store, name, int(fid[0]))
            if not trace.synced(path, begun[name].end, e.start):
                wrong.append(f"{name}: acknowledged without an fdatasync of {path}")
    assert len(acked) == 10, acked  # the workload ran whole
    assert wrong == []


def test_new_files_have_their_directory_fsynced_before_an_acknowledgement(
    traced: tuple[Trace, Path, Path, Path],
) -> None:
    trace, store, _, marks = traced
    wrong = []
    rotated = set()
    for e, (kind, name, *fid) in _markers(trace, marks):
        if kind != "ACK" or fid == ["0"]:
            continue
        path = _data(store, name, int(fid[0]))
        # The file, and the store directory itself (the open created it).
        home = str(Path(path).parent)
        for made, parent in ((path, home), (home, str(store.parent))):
            for c in trace.created(made):
                if c.end < e.start and not trace.synced(parent, c.end, e.start):
                    wrong.append(f"{name}: {made} created, {parent} not fsynced before the ack")
        rotated.add(fid[0])
    assert len(rotated) >= 3, rotated  # the puts did rotate
    assert wrong == []


def test_merge_is_durable_before_inputs_go_and_before_it_returns(
    traced: tuple[Trace, Path, Path, Path],
) -> None:
    trace, store, _, marks = traced
    mdir = store / "merge"
    ack = next(e for e, m in _markers(trace, marks) if m[:2] == ["ACK", "merge"])
    manifest = next(e for e, src, dst in trace.renames() if dst == str(mdir / "MANIFEST"))
    installs = [(e, dst) for e, src, dst in trace.renames() if src.startswith(f"{mdir}/")]
    installs = [(e, dst) for e, dst in installs if Path(dst).parent == store]
    assert installs, "the merge renamed nothing into the store"
    wrong = []
    # Everything the manifest vouches for is durable before it is renamed into place.
    for e, src, dst in trace.renames():
        if (
            Path(dst).parent == mdir
            and e.start < manifest.start
            and not trace.synced(src, -1, e.start)
        ):
            wrong.append(f"{dst} renamed into merge/ before its content was fsynced")
    for c in trace.created(str(mdir)):
        if not trace.synced(str(store), c.end, manifest.start):
            wrong.append("merge/ created, the store directory not fsynced before the manifest")
    if not trace.synced(str(mdir), manifest.end, installs[0][0].start):
        wrong.append("manifest renamed, merge/ not fsynced before the first install")
    last = max(e.end for e, _ in installs)
    inputs = [
        (e, p)
        for e, p in trace.unlinks()
        if Path(p).parent == store and p.endswith(".data") and manifest.end < e.start < ack.start
    ]
    assert inputs, "the merge unlinked no input"
    for e, p in inputs:
        if not trace.synced(str(store), last, e.start):
            wrong.append(f"{p} unlinked before the installs' directory fsync")
    last_change = max(e.end for e, _ in inputs + installs + trace.unlinks() if e.start < ack.start)
    if not trace.synced(str(store), last_change, ack.start):
        wrong.append("merge returned before its last directory change was fsynced")
    assert wrong == []


def test_hints_are_installed_after_their_sealed_data_is_durable(
    traced: tuple[Trace, Path, Path, Path],
) -> None:
    trace, store, _, _ = traced
    wrong = []
    hints = [(e, dst) for e, src, dst in trace.renames() if dst.endswith(".hint")]
    hints = [(e, dst) for e, dst in hints if Path(dst).parent == store]
    assert len(hints) >= 3, hints
    for e, dst in hints:
        data = dst[: -len(".hint")] + ".data"
        changes = [c for c in trace.on(data, "ftruncate", "pwrite64", "write") if c.end < e.start]
        if changes and not trace.synced(data, changes[-1].end, e.start):
            wrong.append(f"{dst} installed before {data} was fsynced as sealed")
    # (not under sync="never", which promises nothing on power loss until a sync)
    seals = trace.where(lambda c: c.call == "ftruncate" and str(c.fd_path).endswith(".data"))
    seals = [t for t in seals if not str(t.fd_path).startswith(f"{store}-never/")]
    assert seals
    for t in seals:
        path = t.fd_path
        assert path is not None
        header = [
            c for c in trace.on(path, "pwrite64") if c.start > t.end and c.args.endswith(", 0")
        ]
        if not header:
            wrong.append(f"{path}: sealed without a header write after the truncate")
        elif not trace.synced(path, t.end, header[0].start):
            wrong.append(f"{path}: header marked sealed before the truncate was fsynced")
    assert wrong == []


def test_backup_is_complete_and_durable_before_it_returns(
    traced: tuple[Trace, Path, Path, Path],
) -> None:
    trace, _, backup, marks = traced
    ack = next(e for e, m in _markers(trace, marks) if m[:2] == ["ACK", "backup"])
    named = next(e for e, src, dst in trace.renames() if dst == str(backup))
    stage = next(src for e, src, dst in trace.renames() if dst == str(backup))
    wrong = []
    copies = [c for c in trace.where(lambda c: c.call == "openat" and "O_CREAT" in c.args)]
    copies = [c for c in copies if str(c.returned_path).startswith(stage + "/")]
    assert len(copies) >= 4, copies
    for c in copies:
        if not trace.synced(str(c.returned_path), c.end, named.start):
            wrong.append(f"{c.returned_path} not fsynced before the backup was named")
    if not trace.synced(stage, copies[-1].end, named.start):
        wrong.append("the backup's directory not fsynced before it was named")
    if not trace.synced(str(backup.parent), named.end, ack.start):
        wrong.append("backup() returned before its name was fsynced")
    assert wrong == []
    with bitcask.open(str(backup), readonly=True) as db:
        assert db.get(b"k3") == b"v" * 1500 and db.get(b"k1") is None and db.get(b"k0") == b"x"


def test_a_clean_close_under_never_leaves_everything_durable(
    traced: tuple[Trace, Path, Path, Path],
) -> None:
    trace, store, _, marks = traced
    never = f"{store}-never"
    begin = next(e for e, m in _markers(trace, marks) if m[:2] == ["BEGIN", "close-never"])
    ack = next(e for e, m in _markers(trace, marks) if m[:2] == ["ACK", "close-never"])
    made = trace.where(lambda e: e.call == "openat" and "O_CREAT" in e.args)
    made = [e for e in made if re.fullmatch(re.escape(never) + r"/\d+\.data", str(e.returned_path))]
    assert len(made) >= 3, made  # rotated
    wrong = []
    for c in made:
        path = str(c.returned_path)
        changes = [e for e in trace.on(path, "ftruncate", "pwrite64", "write") if e.end < ack.start]
        if not trace.synced(path, max(e.end for e in changes), ack.start):
            wrong.append(f"{path}: not fsynced after its last change before close() returned")
    if not trace.synced(never, max(c.end for c in made), ack.start):
        wrong.append(f"{never}: its new names not fsynced before close() returned")
    assert begin.end < ack.start
    assert wrong == []


def test_repair_replaces_a_file_and_its_hint_in_a_durable_order(
    traced: tuple[Trace, Path, Path, Path],
) -> None:
    trace, store, _, marks = traced
    begin = next(e for e, m in _markers(trace, marks) if m[:2] == ["BEGIN", "repair"])
    ack = next(e for e, m in _markers(trace, marks) if m[:2] == ["ACK", "repair"])
    data, hint = str(store / "0000000004.data"), str(store / "0000000004.hint")
    within = [(e, src, dst) for e, src, dst in trace.renames() if begin.end < e.start < ack.start]
    over = next(e for e, src, dst in within if dst == data)
    new_hint = next(e for e, src, dst in within if dst == hint)
    gone = [e for e, p in trace.unlinks() if p == hint and begin.end < e.start < over.start]
    assert gone, "repair kept the old hint"
    wrong = []
    if not trace.synced(str(store), gone[-1].end, over.start):
        wrong.append("the rewritten file renamed over before the old hint's removal was fsynced")
    if not (over.end < new_hint.start and trace.synced(str(store), over.end, new_hint.start)):
        wrong.append("the new hint renamed in before the rewritten file's rename was fsynced")
    if not trace.synced(str(store), max(over.end, new_hint.end), ack.start):
        wrong.append("repair returned before its renames were fsynced")
    assert wrong == []
    with bitcask.open(str(store), readonly=True) as db:  # repaired: every record readable
        assert db.recovery.corrupt_records == 0
