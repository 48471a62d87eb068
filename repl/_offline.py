"""Offline maintenance of a data directory through the engine: check, repair, merge.

These open the directory with `import bitcask` directly, so (except `check`, which
only reads) the server must be stopped: the engine's directory lock turns a running
server into a clear error naming its pid. The engine call runs in a worker thread
while a progress bar is drawn on stderr; the summary is the engine's report.
"""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import os
import re
import threading
from abc import ABC, abstractmethod
from collections.abc import Callable
from typing import Any

import bitcask

from ._context import CommandError, Context
from ._format import Reply, Report, terminal_safe
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


class _Stopper(ABC):
    """How a Ctrl-C / SIGTERM stops the engine call running in the worker thread.

    `stop()` is called from the event loop; the call stops at its next safe point.
    Without one (check: read-only) the thread is abandoned: it is a daemon, so the
    process exits without waiting for it.
    """

    @abstractmethod
    def stop(self) -> None: ...

    @abstractmethod
    def line(self, label: str, path: str, result: Any, error: BaseException | None) -> str:
        """What the interrupted call left, once it returned `result` or raised `error`."""


def _in_thread(fn: Callable[..., Any], *args: Any, **kwargs: Any) -> asyncio.Future[Any]:
    """fn(*args, **kwargs) in a daemon thread (asyncio.to_thread's are joined at exit,
    so a Ctrl-C could not end a check before it had read the whole store)."""
    loop = asyncio.get_running_loop()
    future: asyncio.Future[Any] = loop.create_future()

    def settle(result: Any, error: BaseException | None) -> None:
        if future.done():
            return
        if error is not None:
            future.set_exception(error)
        else:
            future.set_result(result)

    def work() -> None:
        try:
            result, error = fn(*args, **kwargs), None
        except BaseException as exc:  # handed to the loop, which re-raises it
            result, error = None, exc
        try:
            loop.call_soon_threadsafe(settle, result, error)
        except RuntimeError:  # the loop is closed: nobody waits any more
            pass

    threading.Thread(target=work, name="bitcask-offline", daemon=True).start()
    return future


async def _stopped(
    ctx: Context, label: str, path: str, work: asyncio.Future[Any], stopper: _Stopper | None
) -> None:
    """After a Ctrl-C / SIGTERM: stop the call, wait for it, write the one line."""
    if stopper is None:
        line = f"{label} of {path} interrupted: nothing was changed (it only reads)"
    else:
        stopper.stop()
        while not work.done():  # bounded: the call stops at its next safe point
            with contextlib.suppress(asyncio.CancelledError):
                await asyncio.wait({work})
        error = work.exception()
        line = stopper.line(label, path, None if error else work.result(), error)
    ctx.stderr.write(terminal_safe(line) + "\n")  # the directory's name may be anything
    ctx.stderr.flush()


async def _run(
    ctx: Context,
    label: str,
    path: str,
    fn: Callable[..., Any],
    unit: str = "",
    stopper: _Stopper | None = None,
) -> Any:
    """Run `fn(path[, progress=...])` in a thread with a progress bar on stderr."""
    bar = Progress(label, None, ctx.stderr, enabled=ctx.stderr.isatty(), unit=unit)

    def progress(done: int, total: int) -> None:
        bar.update(done, total)

    kwargs = {"progress": progress} if _accepts_progress(fn) else {}
    work = _in_thread(fn, path, **kwargs)
    ok = False
    try:
        while not work.done():
            bar.update(bar.done)  # keeps the spinner turning when fn reports nothing
            await asyncio.wait({work}, timeout=Progress.INTERVAL)
        result = work.result()
        ok = True
        return result
    except asyncio.CancelledError:  # Ctrl-C or SIGTERM (_signals.py)
        bar.finish(ok=False)
        await _stopped(ctx, label, path, work, stopper)
        raise
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


class _RepairStopper(_Stopper):
    """The repair in the thread, stopped before its next data file: the files before
    it are repaired, none after it touched (a second run finishes the job)."""

    def __init__(self) -> None:
        self.requested = threading.Event()

    def __call__(self, path: str) -> Any:
        return bitcask.repair(path, stop=self.requested.is_set)

    def stop(self) -> None:
        self.requested.set()

    def line(self, label: str, path: str, result: Any, error: BaseException | None) -> str:
        if error is not None:
            why = _engine_error(error, path) if isinstance(error, Exception) else error
            return f"repair of {path} interrupted: {why}"
        done = str(result).split("\n")[0].split(": ", 1)[1]
        left = result.not_examined
        if not left:
            return f"repair of {path} interrupted after it had finished: {done}"
        return (
            f"repair of {path} interrupted: {len(left)} data files ({left[0]} on) not "
            f"examined yet, the ones before repaired ({done}); run it again"
        )


async def repair(ctx: Context, a: dict[str, Any]) -> Reply:
    """`repair DIR`: the engine's repair report."""
    path = _directory(a["dir"])
    stopper = _RepairStopper()
    return _report(await _run(ctx, "repair", path, stopper, stopper=stopper))


class _MergeStopper(_Stopper):
    """The merge in the thread, stopped with the engine's stop_merges(): it abandons
    the merge at its next record and deletes its output (one already past its
    completion marker finishes its short swap instead)."""

    def __init__(self) -> None:
        self.db: Any = None
        self.requested = False

    def __call__(self, path: str, progress: Callable[[int, int], None]) -> Any:
        with bitcask.open(path) as db:
            self.db = db
            if self.requested:  # stopped while the store was opening
                db.stop_merges()
            return db.merge(progress=progress)

    def stop(self) -> None:
        self.requested = True
        if self.db is not None:
            self.db.stop_merges()

    def line(self, label: str, path: str, result: Any, error: BaseException | None) -> str:
        if error is None:
            done = str(result).split("\n")[0].removeprefix("merge: ")
            return f"merge of {path} interrupted after it had finished: {done}"
        if isinstance(error, bitcask.StoreClosedError):
            return f"merge of {path} interrupted: the store is as it was (run it again)"
        why = _engine_error(error, path) if isinstance(error, Exception) else error
        return f"merge of {path} interrupted: {why}"


async def merge(ctx: Context, path: str) -> Reply:
    """`merge DIR`: open the store, merge with a progress bar, print the report."""
    stopper = _MergeStopper()
    return _report(
        await _run(ctx, "merge", _directory(path), stopper, unit="bytes", stopper=stopper)
    )
