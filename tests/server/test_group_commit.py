"""Group commit under --sync always on a real server: concurrent writers are all
acknowledged with fewer fsyncs than writes, and a lone client's write is committed in a
group of one without lingering (counted: fsync calls, groups, lingers; never timed)."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Awaitable, Callable, Iterator

import pytest

from bitcask import _io
from server import Server
from tests.serverproc import ServerProcess

from .wire import Conn, request

WRITERS = 12
PUTS = 20


class FsyncCounter:
    """Wraps the engine's one fsync function: counts the calls that returned."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        self.calls = 0
        real = _io.fsync

        def fsync(fd: int) -> None:
            real(fd)
            self.calls += 1

        monkeypatch.setattr(_io, "fsync", fsync)


def crowd(port: int, tag: bytes) -> list[bool]:
    """WRITERS connections, started together, each sending PUTS puts in one burst."""
    results: list[list[bool]] = [[] for _ in range(WRITERS)]
    start = threading.Barrier(WRITERS, timeout=30)

    def writer(i: int) -> None:
        with Conn(port) as c:
            burst = b"".join(
                request(n + 1, "put", [b"%s:%d:%d" % (tag, i, n), b"v%d" % n]) for n in range(PUTS)
            )
            start.wait()
            c.send_raw(burst)
            results[i] = [c.reply()[1] for _ in range(PUTS)]

    threads = [threading.Thread(target=writer, args=(i,)) for i in range(WRITERS)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    return [r for rs in results for r in rs]


async def test_concurrent_writers_share_fsyncs(
    inproc: Callable[..., Awaitable[Server]], monkeypatch: pytest.MonkeyPatch
) -> None:
    srv = await inproc(sync="always")
    fsyncs = FsyncCounter(monkeypatch)
    assert srv.writer is not None
    groups = srv.metrics.group_size.count
    acked = await asyncio.to_thread(crowd, srv.port, b"c")
    assert acked == [True] * (WRITERS * PUTS)
    writes = WRITERS * PUTS
    assert srv.metrics.group_size.count - groups < writes
    assert 0 < fsyncs.calls < writes, "every group was fsynced once, and groups were shared"

    def check() -> None:
        with Conn(srv.port) as c:
            for i in range(WRITERS):
                assert c.call("get", b"c:%d:%d" % (i, PUTS - 1)) == b"v%d" % (PUTS - 1)

    await asyncio.to_thread(check)


async def test_a_lone_client_is_committed_alone_at_once(
    inproc: Callable[..., Awaitable[Server]], monkeypatch: pytest.MonkeyPatch
) -> None:
    srv = await inproc(sync="always")
    assert srv.writer is not None
    fsyncs = FsyncCounter(monkeypatch)
    groups = srv.metrics.group_size.count

    def lone() -> None:
        with Conn(srv.port) as c:
            for n in range(PUTS):
                assert c.call("put", b"lone:%d" % n, b"v") is True

    await asyncio.to_thread(lone)
    assert srv.metrics.group_size.count - groups == PUTS, "one group per request"
    assert fsyncs.calls == PUTS, "each acknowledged after its own fsync"
    assert srv.metrics.group_lingers == 0, "with one request in flight the writer never waits"


@pytest.fixture(scope="module")
def always(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    data = tmp_path_factory.mktemp("always") / "data"
    data.mkdir()
    srv = ServerProcess(data=data, sync="always")
    srv.start()
    yield srv
    srv.kill()


def test_a_crowd_of_writers_on_a_server_process(always: ServerProcess) -> None:
    with Conn(always.port) as c:
        before = c.call("stats")["server"]["group_commits"]
    acked = crowd(always.port, b"p")
    assert acked == [True] * (WRITERS * PUTS)
    with Conn(always.port) as c:
        server = c.call("stats")["server"]
        assert c.call("get", b"p:0:%d" % (PUTS - 1)) == b"v%d" % (PUTS - 1)
    assert 0 < server["group_commits"] - before < WRITERS * PUTS
    # counted, never more than the groups themselves (each linger precedes one group)
    assert 0 <= server["group_commit_linger_timeouts"] <= server["group_commit_lingers"]
    assert server["group_commit_lingers"] <= server["group_commits"]
