"""A binary commit's watch is let go however the commit ends, an error included.

The watch a `commit` names is consumed by it and released once the writer decided it
(server/_transactions.py). A commit the writer failed (IO_ERROR, a write short of a
descriptor: the store stays writable) or refused (BUSY) never reached that release:
its watch stayed held, and counted by the engine for its keys, until the connection
closed, so a long-lived connection grew by one watch per failed commit.
"""

from __future__ import annotations

import asyncio
import errno
from collections.abc import Awaitable, Callable

import pytest

from bitcask import _io
from server import Server
from server.binary import BinaryProtocol
from tests.server.wire import Conn


def _short_of_descriptors(*args: object) -> None:
    raise OSError(errno.EMFILE, "injected EMFILE")


async def test_a_failed_commit_releases_its_watch(
    inproc: Callable[..., Awaitable[Server]], monkeypatch: pytest.MonkeyPatch
) -> None:
    srv = await inproc(sync="never")
    n = 50

    def held() -> tuple[int, int]:
        """Watches the connection holds for commits in flight; keys the engine counts."""
        sessions = [c._session for c in srv.connections if isinstance(c, BinaryProtocol)]
        return sum(len(s.spent) for s in sessions), len(srv.db.writer.watches._refs)

    def scenario() -> None:
        with Conn(srv.port) as c:
            assert c.call("put", b"k", b"0") is True
            monkeypatch.setattr(_io, "write", _short_of_descriptors)
            for i in range(n):
                wid = c.call("watch", [b"k", b"w%d" % i])
                err = c.error("commit", [["put", b"k", b"%d" % i]], {"watch": wid})
                assert err.name == "IO_ERROR", err
            assert asyncio.run_coroutine_threadsafe(_held(), loop).result(10) == (0, 0)
            monkeypatch.undo()
            # the store stayed writable, and the next watched commit works as ever
            wid = c.call("watch", [b"k"])
            assert c.call("commit", [["put", b"k", b"done"]], {"watch": wid}) == [True]
            assert c.call("get", b"k") == b"done"
            assert [c.call("get", b"w%d" % i) for i in range(n)] == [None] * n
            assert asyncio.run_coroutine_threadsafe(_held(), loop).result(10) == (0, 0)

    async def _held() -> tuple[int, int]:
        return held()

    loop = asyncio.get_running_loop()
    await asyncio.to_thread(scenario)
    assert await srv.stop() is True
