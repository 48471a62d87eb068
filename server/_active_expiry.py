"""Active expiry for the server: the engine's sampler, run periodically by the writer.

Strategy / invariants:
- Every ``period`` seconds (Redis: 100 ms, its ``hz 10``) one ``db.expire_cycle``
  runs where write_group runs (``Writer.run_on_writer_thread``): off the event loop,
  and never beside a group commit in the same thread, so the engine still sees one
  writer thread at a time. A cycle samples 20 keys with a TTL, drops the expired
  ones and samples again while more than a quarter were expired, for at most
  ``budget_ms`` (10 ms of every 100: Redis allows its slow cycle 25%, but a Python
  cycle also holds the GIL the event loop needs).
- It stops by itself once the writer or the store closes; ``stop()`` cancels it
  and waits, and the server calls it before closing the store.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
from typing import Any

import bitcask
from bitcask.logthrottle import LogThrottle

from ._writer import Writer

__all__ = ["ActiveExpiry"]

log = logging.getLogger("bitcask.server.expiry")
_throttle = LogThrottle(log)


class ActiveExpiry:
    """The periodic sampler task of one server.

    Example:
        >>> expiry = ActiveExpiry(db, writer); expiry.start()   # doctest: +SKIP
        >>> await expiry.stop()                                   # doctest: +SKIP
    """

    def __init__(
        self, db: Any, writer: Writer, *, period: float = 0.1, budget_ms: float = 10.0
    ) -> None:
        self._db = db
        self._writer = writer
        self._period = period
        self._budget_ms = budget_ms
        self._task: asyncio.Task[None] | None = None
        self.cycles = 0  # cycles run (tests wait on it; bounded by the period)

    def start(self) -> None:
        """Start the task on the running loop (idempotent)."""
        if self._task is None:
            self._task = asyncio.get_running_loop().create_task(self._run())

    async def stop(self) -> None:
        """Cancel the task and wait until a cycle in progress has returned."""
        task, self._task = self._task, None
        if task is None:
            return
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task

    async def _run(self) -> None:
        cycle = functools.partial(self._db.expire_cycle, self._budget_ms)
        while True:
            await asyncio.sleep(self._period)
            if self._writer.closed:
                return
            try:
                await self._writer.run_on_writer_thread(cycle)
            except bitcask.StoreClosedError:
                return
            except RuntimeError:
                if self._writer.closed:  # the writer's thread pool shut down under us
                    return
                # anything else (a thread that could not be started just now) costs
                # this cycle, not every later one: the sampler used to end here for
                # good, silently, and expired keys then stayed in memory
                _throttle.log(
                    "retry", logging.WARNING, "active expiry cycle failed; retrying", exc_info=True
                )
            except Exception:  # a sampler must never take the server down
                # a lasting fault fails every cycle (10 a second): one line every 10 s
                _throttle.log("failed", logging.ERROR, "active expiry cycle failed", exc_info=True)
            self.cycles += 1
