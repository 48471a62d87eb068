"""Offline maintenance of a data directory through the engine: check, repair, merge.

These open the directory with `import bitcask` directly, so (except `check`, which
only reads) the server must be stopped: the engine's directory lock turns a running
server into a clear error naming its pid. The engine call runs in a worker thread
while a progress bar is drawn on stderr; the summary is the engine's report.
"""

from __future__ import annotations

import asyncio
import inspect
import os
import re
from collections.abc import Callable
from typing import Any

import bitcask

from ._context import CommandError, Context
from ._format import Reply, Report
from ._progress import Progress

__all__ = ["check", "merge", "repair", "report_dict"]


def report_dict(report: Any) -> dict[str, Any]:
    """An engine report (CheckReport, RepairReport, MergeReport) as a JSON-ready dict."""
    return dict(report.to_dict())


def _report(report: Any) -> Report:
    """The engine's one-paragraph summary for people, its fields for scripts."""
    return Report(str(report), report_dict(report))


_STORE_FILE = re.compile(r"\d{10}\.(data|hint)")  # the engine's file names


def _directory(path: str) -> str:
    """`path` if it is a store's data directory; else a CommandError saying why.

    A store is a directory holding at least one of the engine's data or hint files
    (`0000000001.data`). Anything else is refused before the engine opens it, so
    `check` never reports an empty directory as a healthy store and `repair` or
    `merge` never turn one into a store (not even a LOCK file is created).
    """
    if not os.path.exists(path):
        raise CommandError(f"no such directory: {path}")
    if not os.path.isdir(path):
        raise CommandError(f"not a directory: {path}")
    try:
        names = os.listdir(path)
    except OSError as exc:
        raise CommandError(f"cannot read {path}: {exc.strerror}") from None
    if not any(_STORE_FILE.fullmatch(name) for name in names):
        raise CommandError(
            f"not a bitcask data directory: {path} has no data files (0000000001.data, ...)"
        )
    return path


def _engine_error(exc: Exception, path: str) -> CommandError:
    if isinstance(exc, bitcask.StoreLockedError):
        pid = getattr(exc, "pid", None)
        holder = f"process {pid}" if pid else "another process"
        return CommandError(f"{path} is in use by {holder}: stop the server first")
    return CommandError(f"{type(exc).__name__}: {exc}")


def _accepts_progress(fn: Callable[..., Any]) -> bool:
    """Whether fn reports progress(done, total) (merge does; check and repair take no
    callback, so their bar is a spinner with the elapsed time)."""
    try:
        return "progress" in inspect.signature(fn).parameters
    except (TypeError, ValueError):
        return False


async def _run(ctx: Context, label: str, path: str, fn: Callable[..., Any], unit: str = "") -> Any:
    """Run `fn(path[, progress=...])` in a thread with a progress bar on stderr."""
    bar = Progress(label, None, ctx.stderr, enabled=ctx.stderr.isatty(), unit=unit)

    def progress(done: int, total: int) -> None:
        bar.update(done, total)

    kwargs = {"progress": progress} if _accepts_progress(fn) else {}
    task = asyncio.ensure_future(asyncio.to_thread(fn, path, **kwargs))
    ok = False
    try:
        while not task.done():
            bar.update(bar.done)  # keeps the spinner turning when fn reports nothing
            await asyncio.wait({task}, timeout=Progress.INTERVAL)
        result = task.result()
        ok = True
        return result
    except bitcask.BitcaskError as exc:
        raise _engine_error(exc, path) from None
    except OSError as exc:  # the directory's own trouble, never the server address's
        where = f" ({exc.filename})" if exc.filename else ""
        raise CommandError(f"{label} {path}: {exc.strerror or exc}{where}") from None
    finally:
        bar.finish(ok=ok)


async def check(ctx: Context, a: dict[str, Any]) -> Reply:
    """`check DIR`: the engine's check report; exit 1 when it found damage."""
    path = _directory(a["dir"])
    return _report(await _run(ctx, "check", path, bitcask.check))


async def repair(ctx: Context, a: dict[str, Any]) -> Reply:
    """`repair DIR`: the engine's repair report."""
    path = _directory(a["dir"])
    return _report(await _run(ctx, "repair", path, bitcask.repair))


def _merge_dir(path: str, progress: Callable[[int, int], None]) -> Any:
    with bitcask.open(path) as db:
        return db.merge(progress=progress)


async def merge(ctx: Context, path: str) -> Reply:
    """`merge DIR`: open the store, merge with a progress bar, print the report."""
    return _report(await _run(ctx, "merge", _directory(path), _merge_dir, unit="bytes"))
