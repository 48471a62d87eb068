"""The server's health as the probes see it: live, ready, the disk, the data directory.

Strategy / invariants:
- /livez fails only for what a restart mends: an fsync failure older than
  --fsync-failure-grace (the store refuses writes until it is reopened).
- /readyz fails while the store serves reads only (a full disk, ...), while the data
  directory is no longer the store's (removed or replaced under the server: what is
  written then lands in files no restart finds), and while the server stops (the
  Server adds that reason, it owns the stop).
- The data directory's identity is (st_dev, st_ino) of --data and of its LOCK, taken
  once the store is open; a change is logged once, and reported at every probe.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Any

__all__ = ["Health"]

log = logging.getLogger("bitcask.server")


class Health:
    """What /health, /livez and /readyz report about one open store.

    Args:
        db: the open store.
        data: the --data directory it was opened from.
        fsync_failure_grace: seconds an fsync failure may last before /livez fails.
    """

    def __init__(self, db: Any, data: Path, fsync_failure_grace: float) -> None:
        self._db = db
        self._data = data
        self._grace = fsync_failure_grace
        self._identity = self._data_ids()
        self._problem_logged = False

    def readonly_reason(self) -> str | None:
        reason = getattr(self._db, "readonly_reason", None)
        return str(reason) if reason else None

    def disk_health(self) -> dict[str, Any]:
        """The engine's disk state (ok | write_failed | fsync_failed) for /health."""
        return dict(self._db.disk_health())

    def not_live_reason(self) -> str | None:
        """Why /livez fails: an fsync failed longer than fsync_failure_grace ago (the
        store refuses writes until a restart, so the orchestrator should restart it)."""
        disk = self.disk_health()
        age = disk.get("seconds")  # monotonic: a wall clock step must not move the grace
        if disk.get("state") != "fsync_failed" or age is None:
            return None
        if age < self._grace:
            return None
        return f"fsync failed {age:.0f} s ago ({disk.get('reason')}); restart to resume writes"

    def not_ready_reason(self) -> str | None:
        """Why /readyz fails, the stop aside: reads only, or the directory is gone."""
        reason = self.readonly_reason()
        return f"read-only: {reason}" if reason else self.data_dir_problem()

    def data_dir_problem(self) -> str | None:
        """Why --data is no longer the store's directory: removed, emptied or replaced
        while the server runs. Its open files go on serving reads; the store refuses
        writes once it sees the removal (bitcask/_files.py ``gone``, within about a
        second): /readyz fails, and it is logged once."""
        if self._identity is None or self._data_ids() == self._identity:
            return None
        problem = (
            f"the data directory {self._data} was removed or replaced while the "
            "server runs; writes are refused and reads serve what was open: restart it "
            "on the restored directory"
        )
        if not self._problem_logged:
            self._problem_logged = True
            log.error("%s", problem)
        return problem

    def _data_ids(self) -> tuple[int, ...] | None:
        try:
            ids = [os.stat(self._data), os.stat(self._data / "LOCK")]
        except OSError:
            return None
        return tuple(n for st in ids for n in (st.st_dev, st.st_ino))
