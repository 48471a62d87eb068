"""LogThrottle (bitcask/logthrottle.py): one line per kind and period, the rest counted.

A clock the test steps stands in for time.monotonic (no sleeping, no timing); the
logger and its records are the real ones (caplog).
"""

from __future__ import annotations

import logging
import threading

import pytest

from bitcask.logthrottle import EVERY, LogThrottle

NAME = "bitcask.test.throttle"


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def messages(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.name == NAME]


def test_a_burst_is_one_line_then_one_summary(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger=NAME)
    clock = Clock()
    throttle = LogThrottle(logging.getLogger(NAME), clock=clock)
    written = [throttle.log("k", logging.WARNING, "refused %s", i) for i in range(1000)]
    assert written == [True] + [False] * 999
    assert messages(caplog) == ["refused 0"]
    assert throttle.held("k") == 999
    clock.now += EVERY - 0.001  # still inside the period: held back
    assert throttle.log("k", logging.WARNING, "refused %s", "x") is False
    clock.now += 0.001
    assert throttle.log("k", logging.WARNING, "refused %s", "y") is True
    assert messages(caplog) == ["refused 0", "refused y (1000 more like this in the last 10 s)"]
    assert throttle.held("k") == 0
    clock.now += 3 * EVERY  # a quiet period: the next line has nothing to add
    throttle.log("k", logging.WARNING, "refused %s", "z")
    assert messages(caplog)[-1] == "refused z"
    assert [r.levelno for r in caplog.records] == [logging.WARNING] * 3


def test_kinds_and_owners_do_not_hold_back_each_other(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger=NAME)
    clock = Clock()
    one = LogThrottle(logging.getLogger(NAME), clock=clock)
    two = LogThrottle(logging.getLogger(NAME), clock=clock)
    for _ in range(10):
        one.log("a", logging.INFO, "a")
        one.log("b", logging.INFO, "b")
        two.log("a", logging.INFO, "other store")
    assert messages(caplog) == ["a", "b", "other store"]


def test_a_traceback_only_with_the_lines_written(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger=NAME)
    throttle = LogThrottle(logging.getLogger(NAME), clock=Clock())
    for _ in range(50):
        try:
            raise RuntimeError("a bug")
        except RuntimeError as exc:
            throttle.log("RuntimeError", logging.ERROR, "internal error", exc_info=exc)
    records = [r for r in caplog.records if r.name == NAME]
    assert len(records) == 1 and records[0].exc_info is not None
    assert records[0].exc_info[0] is RuntimeError


def test_a_line_not_enabled_still_counts_nothing_twice(caplog: pytest.LogCaptureFixture) -> None:
    # below the logger's level nothing is written, and the throttle still keeps its
    # period: raising the level later does not release a backlog of lines
    caplog.set_level(logging.ERROR, logger=NAME)
    throttle = LogThrottle(logging.getLogger(NAME), clock=Clock())
    assert [throttle.log("k", logging.INFO, "quiet") for _ in range(3)] == [True, False, False]
    assert messages(caplog) == []


def test_threads_share_one_count(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger=NAME)
    clock = Clock()
    throttle = LogThrottle(logging.getLogger(NAME), clock=clock)
    written: list[bool] = []
    lock = threading.Lock()

    def hammer() -> None:
        mine = [throttle.log("k", logging.INFO, "x") for _ in range(2000)]
        with lock:
            written.extend(mine)

    threads = [threading.Thread(target=hammer) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=30)
    assert written.count(True) == 1 and len(written) == 8000
    assert throttle.held("k") == 7999


def test_admit_gives_the_tail_for_a_line_written_elsewhere() -> None:
    clock = Clock()
    throttle = LogThrottle(logging.getLogger(NAME), clock=clock)
    assert [throttle.admit("k") for _ in range(4)] == ["", None, None, None]
    clock.now += 12.4
    assert throttle.admit("k") == " (3 more like this in the last 12 s)"
    clock.now += EVERY
    assert throttle.admit("k") == ""
