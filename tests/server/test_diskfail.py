"""Disk failure: a failed write/fsync answers IO_ERROR, the store turns read-only, reads go on."""

from __future__ import annotations

import asyncio
import errno
import json
from collections.abc import Awaitable, Callable

import pytest

import bitcask
from bitcask import _io
from server import Server
from tests.server.wire import Conn, http, status_of


def _fail(err: int) -> Callable[..., None]:
    def broken(*args: object) -> None:
        raise OSError(err, "injected " + errno.errorcode[err])

    return broken


@pytest.mark.parametrize(
    ("hook", "err"),
    [
        pytest.param("write", errno.ENOSPC, id="write-ENOSPC"),
        pytest.param("fsync", errno.EIO, id="fsync-EIO"),
    ],
)
async def test_disk_error_turns_the_store_read_only(
    inproc: Callable[..., Awaitable[Server]], monkeypatch: pytest.MonkeyPatch, hook: str, err: int
) -> None:
    srv = await inproc(sync="always")

    def scenario() -> None:
        with Conn(srv.port) as c:
            for i in range(20):
                assert c.call("put", b"ok%d" % i, b"v%d" % i) is True
            monkeypatch.setattr(_io, hook, _fail(err))
            first = c.error("put", b"doomed", b"x")
            assert first.name == "IO_ERROR", first
            assert c.error("put", b"later", b"x").name == "READ_ONLY"
            assert c.error("batch", [["delete", b"ok1"]]).name == "READ_ONLY"
            assert c.call("get", b"ok7") == b"v7", "reads go on"
            stats = c.call("stats")
            assert stats["readonly_reason"] and errno.errorcode[err] in stats["readonly_reason"]
        ready = http(srv.http_port, b"GET /readyz HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n")
        assert status_of(ready) == 503 and b"read-only" in ready
        health = http(
            srv.http_port, b"GET /health HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n"
        )
        assert status_of(health) == 503
        assert json.loads(health.split(b"\r\n\r\n", 1)[1])["status"] == "unhealthy"
        put = http(
            srv.http_port,
            b"PUT /kv/x HTTP/1.1\r\nHost: t\r\nContent-Length: 1\r\nConnection: close\r\n\r\nx",
        )
        assert status_of(put) == 503
        metrics = http(
            srv.http_port, b"GET /metrics HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n"
        )
        assert b"bitcask_readonly 1" in metrics
        assert b'code="IO_ERROR"' in metrics

    await asyncio.to_thread(scenario)
    monkeypatch.undo()
    assert await srv.stop() is True
    with bitcask.open(srv.config.data, sync="never") as db:
        assert [db.get(b"ok%d" % i) for i in range(20)] == [b"v%d" % i for i in range(20)]
        assert db.get(b"later") is None
