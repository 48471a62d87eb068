"""Merge steps 3-4: the completion marker, the keydir pointed at the outputs, the files
swapped on disk, and the same swap finished at open after a crash.

Strategy (invariants; the whole merge is in bitcask/merge.py):
- ``merge/MANIFEST`` (inputs, outputs, a CRC over them; docs/format.md) is written
  only once every output and hint is fsynced, and fsynced with its directory. It is
  the point of no return: with it the merge is done on disk, without it it never
  happened.
- ``repoint`` runs before the files move: it serves the outputs beside the inputs
  (both mapped), then points each copied key at its copy only while the keydir
  still holds a location in an input (no write lands in a sealed file, so that is
  the record copied; a key written, deleted or expired since keeps what it has),
  and forgets the keys found expired if they still hold the expired location. It
  takes the write lock for a slice of ``_INSTALL_STEP`` keys at a time, so writes
  go on in between; readers never lock and find every key in a mapped file.
- ``swap_files`` is step 4 on disk: rename the outputs (and hints) into place,
  fsync, unlink the inputs and their hints, fsync, remove ``merge/``, fsync. Every
  step tolerates having been done already, so a crash at any point is finished by
  running it again: ``recover_interrupted`` does that at a writer open, or deletes
  ``merge/`` when it holds no valid manifest.
"""

from __future__ import annotations

import json
import mmap
import os
import shutil
import threading
import time
from collections.abc import Callable

from . import _io
from ._datafile import data_name, hint_name
from ._files import FileTable
from ._hint import HintJournal
from ._io import fsync_dir
from ._keydir import FID_SHIFT, SIZE_MASK, Keydir
from ._record import crc32

__all__ = [
    "MANIFEST",
    "MERGE_DIR",
    "read_manifest",
    "recover_interrupted",
    "repoint",
    "swap_files",
    "write_manifest",
]

MERGE_DIR = "merge"
MANIFEST = "MANIFEST"

# Keydir updates per hold of the write lock in step 4 (a few ms each). One hold for
# all of them stalled every write for the whole loop: 0.46 s a merge at 1,000,000 keys.
_INSTALL_STEP = 8192


def write_manifest(mdir: str, inputs: list[int], outputs: list[int]) -> None:
    """The completion marker of a merge whose outputs are all fsynced in ``mdir``."""
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


def repoint(
    keydir: Keydir,
    files: FileTable,
    lock: threading.RLock,
    outputs: list[tuple[int, int, mmap.mmap | None]],
    journals: list[HintJournal],
    inputs: set[int],
    expired: list[tuple[bytes, int]],
) -> None:
    """Step 4 in memory, before the files are swapped on disk: serve ``outputs`` (id,
    size, mapping), point each key their ``journals`` copied at its copy, and forget
    the ``expired`` keys, a slice at a time. The inputs stay served (and their live
    bytes counted) until the swap drops them."""
    kmap = keydir.map
    live = keydir.live
    with lock:
        for fid, _size, _mm in outputs:
            live[fid] = 0
        files.serve(outputs)
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
                    keydir.expiry.pop(key, None)
                    keydir.note_deleted()
        _yield_lock()


def _yield_lock() -> None:
    """Between two slices of step 4: a lock is not fair, so let a writer waiting for it
    take it (and the GIL) first. Tests replace it to write there."""
    time.sleep(0)


def swap_files(
    path: str, inputs: list[int], outputs: list[int], after_rename: Callable[[str], None]
) -> None:
    """Step 4 on disk; safe to repeat after a crash at any point. ``after_rename`` is
    called with "renamed" and "unlinked" as each phase is durable (crash tests)."""
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
    swap_files(path, manifest[0], manifest[1], after_rename=lambda phase: None)
    return "finished"
