"""LogThrottle: the one rule for a log line that something outside can repeat.

Strategy / invariants:
- A line a client (or a fault that lasts) can cause again and again is logged at
  most once per `every` seconds for each *kind*; the ones held back in between are
  counted, and the next line of that kind ends with how many: `(N more like this in
  the last S s)`. A client retrying in a loop so writes one line per 10 s, not one
  per request: a refused MERGE on a full disk wrote two WARNING lines (348 bytes)
  per request, 35 MB for 100,000 of them.
- The count rides on the next line of the kind; a burst that stops is summarised
  when the kind comes back (the metrics count every event as it happens).
- `exc_info` goes with the lines written only: one traceback per kind and period.
- Kinds are the caller's strings (a fault's name, an exception's type); each
  instance belongs to one owner (a store's DiskHealth, a server's connections, a
  server module), so two stores in one process never hold back each other's lines.
- Thread-safe: the engine's writer, its probe thread and the event loop share one.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from typing import Any

__all__ = ["EVERY", "LogThrottle"]

EVERY = 10.0  # seconds between two lines of one kind


class LogThrottle:
    """At most one line per `every` seconds for each kind, the rest counted.

    Example:
        >>> import logging
        >>> t = [0.0]
        >>> throttle = LogThrottle(logging.getLogger("doc"), clock=lambda: t[0])
        >>> [throttle.log("k", logging.DEBUG, "x") for _ in range(3)]
        [True, False, False]
        >>> t[0] = 10.0
        >>> throttle.held("k"), throttle.log("k", logging.DEBUG, "x"), throttle.held("k")
        (2, True, 0)
    """

    __slots__ = ("_clock", "_every", "_kinds", "_lock", "_log")

    def __init__(
        self,
        logger: logging.Logger,
        every: float = EVERY,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._log = logger
        self._every = every
        self._clock = clock
        self._lock = threading.Lock()
        self._kinds: dict[str, tuple[float, int]] = {}  # kind -> (last line at, held since)

    def admit(self, kind: str) -> str | None:
        """Whether a line of `kind` may go out now: None when it is held back (and
        counted), else the text to end it with: "" or " (N more like this in the last
        S s)". For a line another function writes (asyncio's exception handler)."""
        with self._lock:
            now = self._clock()
            last = self._kinds.get(kind)
            if last is not None and now - last[0] < self._every:
                self._kinds[kind] = (last[0], last[1] + 1)
                return None
            self._kinds[kind] = (now, 0)
        if last is None or not last[1]:
            return ""
        return f" ({last[1]} more like this in the last {now - last[0]:.0f} s)"

    def log(self, kind: str, level: int, msg: str, *args: Any, exc_info: Any = None) -> bool:
        """Log `msg % args` at `level` if no line of `kind` went out in the last
        `every` seconds (with the count of those held back since); else count it.
        Returns whether the line was written."""
        tail = self.admit(kind)
        if tail is None:
            return False
        self._log.log(level, msg + tail, *args, exc_info=exc_info, stacklevel=2)
        return True

    def held(self, kind: str) -> int:
        """Lines of `kind` held back since the last one written."""
        with self._lock:
            return self._kinds.get(kind, (0.0, 0))[1]
