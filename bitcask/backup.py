"""``db.backup(dest)``: a consistent copy of a store that opens as a store.

Strategy: under the write lock, seal the active file (rotate), so every file in
the snapshot is immutable; hold the merge lock for the whole copy so no merge
deletes a file being copied. Copy each sealed data file (exactly its sealed size)
and its hint, building a hint from the data when none is ready yet; fsync every
file and the directory. Writes made meanwhile go to the new active file, which is
not part of the copy.

A half copy, whose records are all valid, must never pass for a backup, even when
the process dies mid-copy (SIGKILL, a power cut), where no cleanup runs: the copy
is made in a hidden sibling directory (``.NAME.backup-PID-RANDOM``, the name the
client's online backup uses), which is renamed to ``dest`` only once complete
(rename(2) replaces an empty directory), then the parent directory is fsynced. A
copy that fails is removed; one a dead process left behind is removed by the next
backup to the same ``dest``.
"""

from __future__ import annotations

import os
import shutil

from ._datafile import FILE_HEADER_SIZE, ScanIssues, data_name, hint_name, scan
from ._hint import build_hint, read_hint, write_hint
from ._io import fsync_dir, make_dirs
from .errors import ReadOnlyError
from .merge import Merges

__all__ = ["run_backup"]


def run_backup(m: Merges, dest: str) -> None:
    """Copy the store ``m`` coordinates to ``dest``; see the module docstring."""
    if m.writer.readonly:
        raise ReadOnlyError("backup needs a writer open (it seals the active file)")
    if os.path.exists(dest) and os.listdir(dest):
        raise FileExistsError(f"backup destination {dest!r} is not empty")
    final = os.path.abspath(dest)
    parent, name = os.path.split(final)
    make_dirs(parent)  # durable: backup() returns a backup a power cut keeps
    _remove_dead_stages(parent, name)
    stage = os.path.join(parent, f".{name}.backup-{os.getpid()}-{os.urandom(3).hex()}")
    os.mkdir(stage, 0o700)  # it holds every value: the owner's only, as the store's
    try:
        _copy(m, stage)
        os.rename(stage, final)  # dest absent or an empty directory: replaced at once
    except BaseException:
        shutil.rmtree(stage, ignore_errors=True)
        raise
    finally:
        m.released()
    fsync_dir(parent)


def _remove_dead_stages(parent: str, name: str) -> None:
    # The staging directories of backups to ``name`` whose process is gone (killed
    # mid-copy): without this each such kill left a hidden copy of the store behind.
    prefix = f".{name}.backup-"
    for entry in os.listdir(parent):
        if not entry.startswith(prefix):
            continue
        pid = entry[len(prefix) :].split("-", 1)[0]
        if pid.isdigit() and int(pid) != os.getpid() and not _alive(int(pid)):
            shutil.rmtree(os.path.join(parent, entry), ignore_errors=True)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:  # EPERM: someone else's process
        return True
    return True


def _copy(m: Merges, dest: str) -> None:
    writer, table = m.writer, m.files
    m.take_lock(None)  # a merge or snapshot cut runs: wait (a lapsed snapshot lets go)
    try:
        with writer.lock:
            writer.check_writable()
            writer.rotate(requested=True)
            files, maps = table.hand_out(list(table.sealed))
        for fid, size in sorted(files.items()):
            src = os.path.join(writer.path, data_name(fid))
            dst = os.path.join(dest, data_name(fid))
            with open(src, "rb") as fin, open(dst, "wb") as fout:
                shutil.copyfileobj(_Limited(fin, size), fout, 1 << 20)
                fout.flush()
                os.fsync(fout.fileno())
            hint_src = os.path.join(writer.path, hint_name(fid))
            hint_dst = os.path.join(dest, hint_name(fid))
            try:
                read_hint(hint_src, fid, size)
                shutil.copyfile(hint_src, hint_dst)
                with open(hint_dst, "rb") as f:
                    os.fsync(f.fileno())
            except (OSError, ValueError):
                mm = maps[fid]
                if mm is not None and writer.options.hint_files:
                    recs = scan(mm, FILE_HEADER_SIZE, size, ScanIssues())
                    write_hint(hint_dst, build_hint(fid, size, recs))
    finally:
        m.lock.release()
    fsync_dir(dest)


class _Limited:
    """A reader that stops after ``limit`` bytes (the file's sealed size)."""

    def __init__(self, f: object, limit: int) -> None:
        self._f = f
        self._left = limit

    def read(self, n: int = -1) -> bytes:
        if self._left <= 0:
            return b""
        n = self._left if n < 0 else min(n, self._left)
        data: bytes = self._f.read(n)  # type: ignore[attr-defined]
        self._left -= len(data)
        return data
