"""Disk health of a writable store: why writes stopped, and whether they resume.

Strategy / invariants:
- Two kinds of fault, told apart as PostgreSQL and Redis tell them apart. A failed
  *write* (ENOSPC, EDQUOT, EIO on write or on creating the next data file)
  acknowledged nothing, and its partial bytes were cut back: the store refuses
  writes (ReadOnlyError) while a probe thread retries with back-off (0.5 s doubling
  to 30 s) and, once the disk takes a write again, writes resume by themselves. A
  failed *fsync* means the page cache can no longer be trusted: writes stop until
  the process restarts and reloads from disk (the server then fails liveness after
  a grace period, so an orchestrator restarts it).
- A third: the store's directory was removed or replaced, or its active file
  unlinked, under the open store (``rm -rf DIR``, a volume mounted over it). Appends
  and fsyncs into the unlinked files still succeed, and vanish at close. Seen at each
  sync (the directory and LOCK by path), when a rotation cannot create its file, and
  by the writer's background worker every ``WATCH_PERIOD`` (those and the active
  file's link count; nothing on the put path): state
  ``removed``, writes refused until the store is reopened (the server's /livez stays
  200: a restart would start an empty store), reads of what is open go on.
- Running out of descriptors (EMFILE, ENFILE) is not a disk fault: that write
  fails alone and the next one tries again (``is_transient``).
- One owner: the writer reports faults under its lock; the probe thread is the
  only one that clears a write fault (through the writer's ``resume``); readers
  take ``snapshot()``. Every change of state is logged at ERROR or WARNING, probe
  failures at most once per back-off step; what a client can repeat (refused
  writes, writes short of a descriptor, corrupt records read, a backup's or a
  merge's refused new file, a failed merge) through ``throttle``, the store's
  LogThrottle: at most one line per kind every 10 s.
"""

from __future__ import annotations

import errno
import logging
import os
import threading
import time
from collections.abc import Callable
from typing import Any

from . import _io
from .errors import CorruptRecordError
from .logthrottle import LogThrottle

__all__ = ["WATCH_PERIOD", "DiskHealth", "is_probe_leftover", "is_transient"]

log = logging.getLogger("bitcask")

WATCH_PERIOD = 1.0  # seconds between two checks that the store's files are still there
PROBE_FIRST = 0.5  # seconds before the first probe after a failed write
PROBE_MAX = 30.0  # back-off ceiling
PROBE_BYTES = 64 * 1024  # what a probe writes and fsyncs (then deletes)
_PROBE_PREFIX = ".probe-"  # a probe's scratch file: .probe-<pid>.tmp
_PROBE_SUFFIX = ".tmp"


def is_probe_leftover(name: str) -> bool:
    """Whether ``name`` is a probe's scratch file: only a writer probes, so one that a
    writer open finds was left by a SIGKILL mid-probe (the open removes it)."""
    return name.startswith(_PROBE_PREFIX) and name.endswith(_PROBE_SUFFIX)


_TRANSIENT = frozenset({errno.EMFILE, errno.ENFILE})


def is_transient(exc: OSError) -> bool:
    """True for errors that say nothing about the disk (out of descriptors)."""
    return exc.errno in _TRANSIENT


class DiskHealth:
    """State of the disk as the writer saw it: ok, write_failed or fsync_failed."""

    def __init__(self, path: str, stop: threading.Event) -> None:
        self._path = path
        self._stop = stop
        self.state = "ok"
        self.reason: str | None = None
        self.since: float | None = None  # wall-clock time the fault began (shown)
        # time.monotonic() when it began: how long it lasts (a wall clock stepped back
        # an hour kept /livez passing an hour past --fsync-failure-grace)
        self.began: float | None = None
        self.last_attempt: float | None = None  # wall-clock time of the last probe
        self.attempts = 0
        self._thread: threading.Thread | None = None
        self.throttle = LogThrottle(log)  # the store's repeatable lines (the writer's too)
        self._corrupt_reads = 0
        self._short_of_descriptors = 0  # writes that failed alone for want of one

    def snapshot(self) -> dict[str, Any]:
        """A JSON-serialisable copy: state, reason, since, last_attempt, attempts, and
        seconds (how long the fault has lasted, by the monotonic clock; None when ok)."""
        began = self.began
        return {
            "state": self.state,
            "reason": self.reason,
            "since": self.since,
            "last_attempt": self.last_attempt,
            "attempts": self.attempts,
            "seconds": None if began is None else round(time.monotonic() - began, 3),
        }

    def write_failed(self, reason: str, resume: Callable[[], None]) -> threading.Thread | None:
        """A write failed (caller holds the writer's lock). Returns a new probe thread
        to start (and join at close), or None if one runs already or fsync failed."""
        if self.state == "fsync_failed":
            return None
        if self.state == "ok":
            self.state, self.reason, self.since = "write_failed", reason, time.time()
            self.began = time.monotonic()
            self.attempts = 0
            log.error(
                "write failed in %s: %s; writes refused until the disk takes writes again",
                self._path,
                reason,
            )
        if self._thread is not None and self._thread.is_alive():
            return None
        self._thread = threading.Thread(
            target=self._probe_loop, args=(resume,), name="bitcask-disk-probe", daemon=True
        )
        return self._thread

    def fsync_failed(self, reason: str) -> None:
        """An fsync failed (caller holds the writer's lock): read-only until restart."""
        if self.state != "fsync_failed":
            self.state, self.reason, self.since = "fsync_failed", reason, time.time()
            self.began = time.monotonic()
            log.error(
                "fsync failed in %s: %s; the page cache cannot be trusted: writes refused "
                "until the process restarts",
                self._path,
                reason,
            )

    def removed(self, reason: str) -> None:
        """The store's files are gone from its directory (caller holds the writer's
        lock): writes refused until a reopen."""
        if self.state != "removed":
            self.state, self.reason, self.since = "removed", reason, time.time()
            log.error(
                "%s; writes refused (they would vanish at close), reads go on: restore the "
                "directory, then reopen the store",
                reason,
            )

    def healed(self) -> None:
        """The probe's write went through and the writer resumed (under its lock)."""
        log.warning(
            "writes resumed in %s after %.1f s (%d probes); the fault was: %s",
            self._path,
            time.monotonic() - (self.began or time.monotonic()),
            self.attempts,
            self.reason,
        )
        self.state, self.reason, self.since, self.began = "ok", None, None, None

    def refused(self, why: object) -> None:
        """A write was refused for the current fault; logged at most every 10 s."""
        self.throttle.log("refused", logging.WARNING, "write refused in %s: %s", self._path, why)

    def short_of_descriptors(self, reason: str) -> None:
        """A write failed alone for want of a descriptor (``is_transient``); logged at
        most every 10 s with the count so far: each one logged its own line, 5,288
        writes at the limit 5,288 lines (800 KB), as fast as a client retried."""
        self._short_of_descriptors += 1
        self.throttle.log(
            "descriptors",
            logging.WARNING,
            "write failed in %s, store stays writable: %s (%d such writes so far)",
            self._path,
            reason,
            self._short_of_descriptors,
        )

    def corrupt(self, message: str) -> CorruptRecordError:
        """A read found a record that fails its check: the error to raise, logged at
        WARNING at most every 10 s (with the count of the others in between)."""
        self._corrupt_reads += 1
        self.throttle.log(
            "corrupt",
            logging.WARNING,
            "corrupt record read in %s: %s (%d such reads so far; `bitcask check` "
            "lists them, `bitcask repair` removes them)",
            self._path,
            message,
            self._corrupt_reads,
        )
        return CorruptRecordError(message)

    def _probe_loop(self, resume: Callable[[], None]) -> None:
        delay = PROBE_FIRST
        while not self._stop.wait(delay):
            if self.state != "write_failed":
                return
            self.last_attempt = time.time()
            self.attempts += 1
            try:
                self._probe()
                resume()  # creates the active file if start-up could not; clears the fault
                return
            except OSError as exc:
                log.warning(
                    "disk probe %d in %s failed: %s; next in %.1f s",
                    self.attempts,
                    self._path,
                    exc,
                    min(delay * 2, PROBE_MAX),
                )
            delay = min(delay * 2, PROBE_MAX)

    def _probe(self) -> None:
        """Write, fsync and delete a scratch file beside the data files."""
        path = os.path.join(self._path, f"{_PROBE_PREFIX}{os.getpid()}{_PROBE_SUFFIX}")
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW, 0o600)
        try:  # through _io, as every data write goes (tests inject faults there)
            _io.write(fd, bytes(PROBE_BYTES))
            _io.fsync(fd)
        finally:
            os.close(fd)
            try:
                os.unlink(path)
            except OSError:
                pass
