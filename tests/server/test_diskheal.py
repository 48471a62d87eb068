"""Disk faults as an operator sees them: a failed write heals, a failed fsync fails liveness.

- A real server on a small tmpfs (root only: the CI is root) fills it: writes answer
  IO_ERROR then READ_ONLY, /readyz 503, /health names the reason and the last probe,
  /livez stays 200; once space is freed, writes resume by themselves and /readyz is
  200 again; every acknowledged write is there after a restart.
- An in-process server whose fsync fails (injected) refuses writes until restart and,
  after --fsync-failure-grace, answers /livez 503 so an orchestrator restarts it.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import json
import time
from collections.abc import Awaitable, Callable
from pathlib import Path

import pytest

from bitcask import _io
from server import Server
from tests.server.test_startup import needs_root, tmpfs
from tests.server.wire import Conn, RemoteError, http, status_of
from tests.serverproc import ServerProcess


def get(port: int, path: str) -> tuple[int, bytes]:
    raw = http(port, f"GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n".encode())
    return status_of(raw), raw.split(b"\r\n\r\n", 1)[1]


def until(cond: Callable[[], bool], timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while not cond():
        assert time.monotonic() < deadline, "condition not met in time"
        time.sleep(0.1)


@needs_root
def test_failed_write_heals_when_space_returns(tmp_path: Path) -> None:
    with tmpfs(tmp_path / "small", "2m") as mnt:
        srv = ServerProcess(data=mnt / "data", sync="always")
        srv.start()
        try:
            acked: dict[bytes, bytes] = {}
            with Conn(srv.port) as c:
                with contextlib.suppress(OSError), (mnt / "filler").open("wb") as f:
                    for _ in range(4096):  # at most 16 MiB: the 2 MiB tmpfs fills first
                        f.write(b"x" * 4096)
                        f.flush()
                first = None
                for i in range(2000):  # the active file's last free pages fill, then ENOSPC
                    key, value = b"k%04d" % i, b"v" * 900
                    try:
                        c.call("put", key, value)
                    except RemoteError as exc:
                        first = exc.name
                        break
                    acked[key] = value
                assert first == "IO_ERROR", first
                assert c.error("put", b"later", b"x").name == "READ_ONLY"
                assert c.call("get", b"k0000") == acked[b"k0000"], "reads go on"
                until(lambda: json.loads(get(srv.http_port, "/health")[1])["disk"]["attempts"] > 0)
                status, body = get(srv.http_port, "/health")
                health = json.loads(body)
                assert status == 503 and health["disk"]["state"] == "write_failed"
                assert "No space left" in health["readonly_reason"]
                assert health["disk"]["last_attempt"] and health["disk"]["since"]
                assert get(srv.http_port, "/readyz")[0] == 503
                assert get(srv.http_port, "/livez")[0] == 200  # a restart would not help

                (mnt / "filler").unlink()  # space is back: the next probe heals
                until(lambda: get(srv.http_port, "/readyz")[0] == 200)
                assert c.call("put", b"later", b"x") is True
                acked[b"later"] = b"x"
                assert json.loads(get(srv.http_port, "/health")[1])["disk"]["state"] == "ok"
            assert srv.stop() == 0
            assert "writes resumed" in srv.log()
            assert "write failed in" in srv.log()
            srv.start()
            with Conn(srv.port) as c:
                keys = sorted(acked)
                assert c.call("mget", keys) == [acked[k] for k in keys]
        finally:
            srv.kill()


async def test_failed_fsync_fails_liveness_after_the_grace(
    inproc: Callable[..., Awaitable[Server]], monkeypatch: pytest.MonkeyPatch
) -> None:
    srv = await inproc(sync="always", fsync_failure_grace=0.5)

    def broken(fd: int) -> None:
        raise OSError(errno.EIO, "injected EIO")

    def scenario() -> None:
        with Conn(srv.port) as c:
            assert c.call("put", b"ok", b"1") is True
            assert get(srv.http_port, "/livez")[0] == 200
            monkeypatch.setattr(_io, "fsync", broken)
            assert c.error("put", b"doomed", b"x").name == "IO_ERROR"
            monkeypatch.undo()  # the disk answers again: writes still wait for a restart
            assert c.error("put", b"later", b"x").name == "READ_ONLY"
            assert get(srv.http_port, "/livez")[0] == 200  # within the grace
            status, body = get(srv.http_port, "/health")
            assert status == 503 and json.loads(body)["disk"]["state"] == "fsync_failed"
            time.sleep(0.6)
            status, body = get(srv.http_port, "/livez")
            assert status == 503 and b"fsync failed" in body
            assert c.call("get", b"ok") == b"1", "reads go on"

    await asyncio.to_thread(scenario)
