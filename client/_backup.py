"""`Client.backup(dest)`: pull a server snapshot into a directory that opens as a store.

Strategy / invariants:
- One connection does it all (a snapshot belongs to the connection that began it):
  snapshot_begin, then snapshot_read for every chunk of every file, WINDOW requests
  of CHUNK bytes in flight, then snapshot_end. Memory stays bounded by WINDOW chunks.
- Everything is written into a temporary sibling directory (`.NAME.backup-*`): each
  file's size and CRC-32 are checked against the snapshot's list, each file and the
  directory are fsynced, and only then is the directory renamed to its final name
  (and the parent directory fsynced). On any failure the temporary directory is
  removed and the snapshot released: nothing is ever left under the final name.
- `dest` must be absent or empty, unless `force=True` (the old contents are then
  replaced, once the new backup is complete).
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import json
import os
import shutil
import time
import zlib
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .errors import BackupError, ClientError

__all__ = ["CHUNK", "MANIFEST_NAME", "WINDOW", "BackupReport", "run_backup"]

WINDOW = 8  # snapshot_read requests in flight
# Bytes asked for per snapshot_read. Half the protocol's 1 MiB cap: a reply whose
# frame fits msgpack's packer buffer is built several times faster (bench/backup.py).
CHUNK = 1 << 19
# snapshot_begin waits for a running merge, then checksums the files it has not
# seen before: it gets far longer than an ordinary call unless told otherwise.
BEGIN_TIMEOUT = 3600.0
MANIFEST_NAME = "backup.json"

Call = Callable[[str, list[Any], float | None], Awaitable[Any]]


@dataclass(frozen=True)
class BackupReport:
    """What `Client.backup` wrote."""

    path: str  # the final directory
    files: int
    bytes: int
    seconds: float
    manifest: dict[str, Any]


async def run_backup(
    call: Call,
    dest: str | os.PathLike[str],
    *,
    force: bool = False,
    progress: Callable[[int, int], None] | None = None,
    chunk: int = CHUNK,
    timeout: float | None = None,
    rate: float | None = None,
) -> BackupReport:
    """See `Client.backup`."""
    started = time.monotonic()
    if rate is not None and not rate > 0:
        raise BackupError(f"rate must be > 0 bytes per second, got {rate!r}")
    pace = _Pace(rate)
    final = Path(dest).absolute()
    _check_destination(final, force)
    _make_parents(final.parent)
    tmp = final.parent / f".{final.name}.backup-{os.getpid()}-{os.urandom(3).hex()}"
    snap_id: str | None = None
    try:
        tmp.mkdir(mode=0o700)  # a copy of every value: the owner's only, as the store
        begun = await call("snapshot_begin", [], BEGIN_TIMEOUT if timeout is None else timeout)
        snap_id = str(begun["id"])
        files = [(str(f["name"]), int(f["size"]), int(f["crc"])) for f in begun["files"]]
        total = sum(size for _, size, _ in files)
        done = 0
        if progress is not None:
            progress(0, total)
        for name, size, crc in files:
            _check_name(name)

            def advance(n: int) -> None:
                nonlocal done
                done += n
                if progress is not None:
                    progress(done, total)

            await _pull(call, snap_id, tmp / name, size, crc, chunk, timeout, advance, pace)
        manifest = dict(begun.get("manifest") or {})
        await asyncio.to_thread(_write_manifest, tmp, manifest)
        ended = await call("snapshot_end", [snap_id], timeout)
        snap_id = None
        if not ended.get("complete"):
            raise BackupError("the server says the snapshot was not read to its end")
        await asyncio.to_thread(_install, tmp, final, force)
    except BaseException as exc:
        await asyncio.shield(_abandon(call, snap_id, tmp))
        if isinstance(exc, BackupError | asyncio.CancelledError | KeyboardInterrupt):
            raise
        raise BackupError(f"backup to {str(final)!r} failed: {_describe(exc)}") from exc
    return BackupReport(str(final), len(files), total, time.monotonic() - started, manifest)


def _describe(exc: BaseException) -> str:
    if isinstance(exc, OSError) and exc.strerror:
        where = f" ({exc.filename})" if exc.filename else ""
        return f"{exc.strerror}{where}"
    text = str(exc) or type(exc).__name__
    return text if isinstance(exc, ClientError) else f"{type(exc).__name__}: {text}"


def _check_destination(final: Path, force: bool) -> None:
    if final.is_symlink():
        # The rename that installs a backup would replace the link, not fill what it
        # names ("Not a directory", or under force a stray `.NAME.old-*` link), and
        # following it would let a link planted in a shared directory aim a forced
        # backup's clean-up at any directory: the real path is asked for instead.
        raise BackupError(
            f"{str(final)!r} is a symbolic link (to {os.readlink(final)!r}): give the "
            "directory itself"
        )
    if final.exists() and not final.is_dir():
        raise BackupError(f"{str(final)!r} exists and is not a directory")
    if final.is_dir() and any(final.iterdir()) and not force:
        raise BackupError(f"{str(final)!r} is not empty (force=True, or --force, replaces it)")


def _check_name(name: str) -> None:
    if not name or "/" in name or os.sep in name or name.startswith(".") or name == MANIFEST_NAME:
        raise BackupError(f"the server offered a file named {name!r}: refused")


async def _pull(
    call: Call,
    snap_id: str,
    path: Path,
    size: int,
    crc: int,
    chunk: int,
    timeout: float | None,
    advance: Callable[[int], None],
    pace: _Pace,
) -> None:
    """Copy one file: WINDOW chunk reads in flight, written in order, then checked.

    Each chunk's CRC and write run in a worker thread (both release the GIL) while
    the loop receives the next chunks: the network and the disk overlap.
    """
    loop = asyncio.get_running_loop()
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
    crcs = [0]

    def store(data: bytes) -> None:
        crcs[0] = zlib.crc32(data, crcs[0])
        view = memoryview(data)
        while view:
            view = view[os.write(fd, view) :]

    try:
        offsets = iter(range(0, size, chunk))
        pending: collections.deque[tuple[int, asyncio.Future[Any]]] = collections.deque()
        writing: asyncio.Future[None] | None = None

        def fill() -> None:
            while len(pending) < WINDOW:
                off = next(offsets, None)
                if off is None:
                    return
                n = min(chunk, size - off)
                fut = asyncio.ensure_future(
                    call("snapshot_read", [snap_id, path.name, off, n], timeout)
                )
                pending.append((off, fut))

        try:
            fill()
            while pending:
                off, fut = pending.popleft()
                data = bytes(await fut)
                want = min(chunk, size - off)
                if len(data) != want:
                    raise BackupError(
                        f"{path.name}: {len(data)} bytes at offset {off}, expected {want}"
                    )
                fill()
                if writing is not None:
                    await writing
                writing = loop.run_in_executor(None, store, data)
                advance(len(data))
                await pace.took(len(data))
            if writing is not None:
                await writing
                writing = None
        finally:
            for _, fut in pending:
                fut.cancel()
            if writing is not None:  # never close the fd under a running write
                with contextlib.suppress(BaseException):
                    await asyncio.shield(writing)
        if crcs[0] != crc:
            raise BackupError(
                f"{path.name}: checksum mismatch (got {crcs[0]:08x}, expected {crc:08x})"
            )
        await asyncio.to_thread(os.fsync, fd)
    finally:
        os.close(fd)


class _Pace:
    """Sleeps as needed so that bytes taken stay under `rate` per second (None: no limit)."""

    def __init__(self, rate: float | None) -> None:
        self.rate = rate
        self.start = time.monotonic()
        self.taken = 0

    async def took(self, n: int) -> None:
        if self.rate is None:
            return
        self.taken += n
        ahead = self.taken / self.rate - (time.monotonic() - self.start)
        if ahead > 0:
            await asyncio.sleep(ahead)


def _write_manifest(tmp: Path, manifest: dict[str, Any]) -> None:
    body = json.dumps(manifest, indent=1, sort_keys=True).encode() + b"\n"
    fd = os.open(tmp / MANIFEST_NAME, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
    try:
        os.write(fd, body)
        os.fsync(fd)
    finally:
        os.close(fd)
    _fsync_dir(tmp)


def _install(tmp: Path, final: Path, force: bool) -> None:
    """Rename the complete backup into place; replace old contents only under force."""
    old: Path | None = None
    if final.is_dir() and any(final.iterdir()):
        if not force:
            raise BackupError(f"{str(final)!r} became non-empty during the backup")
        old = final.parent / f".{final.name}.old-{os.getpid()}-{os.urandom(3).hex()}"
        os.rename(final, old)
    os.rename(tmp, final)  # onto an empty directory, rename replaces it
    _fsync_dir(final.parent)
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)
        _fsync_dir(final.parent)


async def _abandon(call: Call, snap_id: str | None, tmp: Path) -> None:
    if snap_id is not None:
        with contextlib.suppress(Exception):
            await asyncio.wait_for(call("snapshot_end", [snap_id], None), 5.0)
    await asyncio.to_thread(shutil.rmtree, tmp, True)


def _make_parents(path: Path) -> None:
    """``path.mkdir(parents=True, exist_ok=True)``, each directory it creates fsynced
    into its parent: the final rename's fsync of ``path`` does not make ``path``'s own
    name durable, and a power cut would take a new backup with a new parent."""
    made = [p for p in (path, *path.parents) if not p.is_dir()]
    path.mkdir(parents=True, exist_ok=True)
    for p in reversed(made):
        _fsync_dir(p.parent)


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
