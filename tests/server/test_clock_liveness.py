"""The fsync-failure grace of /livez is a duration: no wall clock step moves it.

After a failed fsync the store refuses writes until a restart, and /livez answers
503 once --fsync-failure-grace has passed, so an orchestrator restarts the server.
The age of the fault was ``time.time() - since``: a wall clock stepped back an hour
(NTP, a VM restore) just after the fault kept /livez at 200 for that hour on top of
the grace; stepped forward, it failed liveness at once. The age is now measured on
the monotonic clock (``disk_health()["seconds"]``); ``since`` stays the wall-clock
time shown to operators.

In-process (the fsync failure is injected, as tests/server/test_diskheal.py does);
the wall clock steps through time.time, which this process's server and engine read.
"""

from __future__ import annotations

import asyncio
import errno
import json
import time
from collections.abc import Awaitable, Callable

import pytest

from bitcask import _io
from server import Server
from tests.server.test_diskheal import get, until
from tests.server.wire import Conn

HOUR = 3600.0


@pytest.mark.parametrize("step", [-HOUR, HOUR], ids=["clock-back", "clock-forward"])
async def test_the_fsync_grace_ignores_wall_clock_steps(
    inproc: Callable[..., Awaitable[Server]], monkeypatch: pytest.MonkeyPatch, step: float
) -> None:
    srv = await inproc(sync="always", fsync_failure_grace=1.0)
    real_time, real_fsync = time.time, _io.fsync

    def broken(fd: int) -> None:
        raise OSError(errno.EIO, "injected EIO")

    def scenario() -> None:
        with Conn(srv.port) as c:
            assert c.call("put", b"ok", b"1") is True
            monkeypatch.setattr(_io, "fsync", broken)
            assert c.error("put", b"doomed", b"x").name == "IO_ERROR"
            monkeypatch.setattr(_io, "fsync", real_fsync)  # the disk answers again
            monkeypatch.setattr(time, "time", lambda: real_time() + step)
            # within the grace whichever way the wall clock went (forward failed at once)
            status, body = get(srv.http_port, "/livez")
            assert status == 200, body
            # past the grace on the monotonic clock (a backward step kept 200 an hour)
            until(lambda: get(srv.http_port, "/livez")[0] == 503, timeout=20)
            status, body = get(srv.http_port, "/health")
            disk = json.loads(body)["disk"]
            assert disk["state"] == "fsync_failed" and 1.0 <= disk["seconds"] < 60
            assert abs(disk["since"] - real_time()) < 60  # shown as it was read then
            assert b"fsync failed" in get(srv.http_port, "/livez")[1]
            assert c.error("put", b"later", b"x").name == "READ_ONLY"
            assert c.call("get", b"ok") == b"1" and c.call("get", b"doomed") is None
        monkeypatch.setattr(time, "time", real_time)

    await asyncio.to_thread(scenario)
