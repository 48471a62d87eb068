"""Pipelining: deep pipelines, reply order, read-your-writes, back-pressure."""

from __future__ import annotations

import sys
import threading
import time
from collections.abc import Callable

import pytest

from tests.server.wire import Conn, request
from tests.serverproc import ServerProcess


def send_all(conn: Conn, frames: list[bytes]) -> threading.Thread:
    # From a thread, so a server that stops reading (back-pressure) cannot deadlock us.
    sender = threading.Thread(target=conn.send_raw, args=(b"".join(frames),))
    sender.start()
    return sender


def test_pipeline_1000_deep_mixed(shared: ServerProcess) -> None:
    with Conn(shared.port) as c:
        frames = []
        for i in range(1000):
            key = b"deep:%d" % (i // 2 % 50)
            if i % 2:
                frames.append(request(i, "get", [key]))
            else:
                frames.append(request(i, "put", [key, b"v%d" % i]))
        sender = send_all(c, frames)
        replies = [c.read_message() for _ in range(1000)]
        sender.join(10)
    assert [r[1] for r in replies] == list(range(1000)), "replies in request order"
    for i, (_, msgid, err, result) in enumerate(replies):
        assert err is None
        if i % 2:
            # read-your-writes: the get sees the put just before it on this connection
            assert result == b"v%d" % (i - 1), (msgid, result)
        else:
            assert result is True


def test_reads_see_earlier_writes_not_later_ones(shared: ServerProcess) -> None:
    with Conn(shared.port) as c:
        c.send_raw(
            request(1, "put", [b"ryw", b"1"])
            + request(2, "get", [b"ryw"])
            + request(3, "put", [b"ryw", b"2"])
            + request(4, "get", [b"ryw"])
            + request(5, "delete", [b"ryw"])
            + request(6, "exists", [b"ryw"])
            + request(7, "mget", [[b"ryw"]])
        )
        results = [c.read_message()[3] for _ in range(7)]
    assert results == [True, b"1", True, b"2", True, False, [None]]


def test_many_connections_pipelining_at_once(shared: ServerProcess) -> None:
    errors: list[BaseException] = []

    def client(n: int) -> None:
        try:
            with Conn(shared.port) as c:
                frames = [request(i, "put", [b"mc:%d:%d" % (n, i), b"%d" % i]) for i in range(200)]
                frames += [request(200 + i, "get", [b"mc:%d:%d" % (n, i)]) for i in range(200)]
                c.send_raw(b"".join(frames))
                replies = [c.read_message() for _ in range(400)]
                assert [r[1] for r in replies] == list(range(400))
                assert [r[3] for r in replies[200:]] == [b"%d" % i for i in range(200)]
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=client, args=(n,)) for n in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert not errors, errors


def test_backpressure_small_limits_still_answer_everything(
    server_factory: Callable[..., ServerProcess],
) -> None:
    srv = server_factory(extra=["--max-inflight", "4", "--writer-queue-max", "2"])
    with Conn(srv.port) as c:
        frames = [request(i, "put", [b"bp:%d" % i, b"x" * 100]) for i in range(1000)]
        frames.append(request(1000, "get", [b"bp:999"]))
        sender = send_all(c, frames)
        replies = [c.read_message() for _ in range(1001)]
        sender.join(10)
    assert [r[1] for r in replies] == list(range(1001))
    assert all(r[2] is None for r in replies), [r for r in replies if r[2]][:3]
    assert replies[-1][3] == b"x" * 100


def test_a_client_that_does_not_read_is_paused_not_buffered(shared: ServerProcess) -> None:
    value = b"x" * 60_000
    with Conn(shared.port) as c:
        c.call("put", b"fat", value)
        frames = b"".join(request(i, "get", [b"fat"]) for i in range(400))  # 24 MB of replies
        sender = send_all(c, [frames])
        time.sleep(0.5)  # the server fills the socket, then stops reading from us
        with Conn(shared.port) as other:
            assert other.call("ping") == "PONG", "other clients are served meanwhile"
        got = [c.read_message() for _ in range(400)]
        sender.join(10)
        assert [m[1] for m in got] == list(range(400)) and all(m[3] == value for m in got)


def test_pipelined_gets_in_one_chunk_are_answered_in_order_and_counted(
    shared: ServerProcess,
) -> None:
    # Gets with nothing pending are answered straight from the read loop; they must
    # still come back in order (a put in the middle orders the gets after it) and each
    # count once in the request counters.
    with Conn(shared.port) as c:
        assert c.call("put", b"chunk:a", b"1") is True
        before = c.call("stats")["server"]["requests"].get("get", 0)
        frames = [request(i, "get", [b"chunk:a" if i % 3 else b"chunk:missing"]) for i in range(20)]
        frames.insert(10, request(100, "put", [b"chunk:a", b"2"]))
        frames.append(request(101, "get", [b"chunk:a"]))
        sender = send_all(c, frames)
        replies = [c.read_message() for _ in range(len(frames))]
        sender.join(10)
        after = c.call("stats")["server"]["requests"]["get"]
    assert [r[1] for r in replies] == [*range(10), 100, *range(10, 20), 101]
    for _, msgid, err, result in replies:
        assert err is None
        if msgid == 100:
            assert result is True
        elif msgid == 101 or (msgid >= 10 and msgid % 3):
            assert result == b"2", (msgid, result)
        elif msgid % 3:
            assert result == b"1", (msgid, result)
        else:
            assert result is None, (msgid, result)
    assert after - before == 21


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc/<pid>/status")
@pytest.mark.parametrize("after_a_write", [False, True], ids=["gets", "put-then-gets"])
def test_a_reader_that_does_not_read_cannot_make_the_server_buffer_its_replies(
    server_factory: Callable[..., ServerProcess], after_a_write: bool
) -> None:
    # 1,000 pipelined gets of a 256 KiB value, sent in one go and not read: before the
    # fix the server rendered every reply of the chunk at once (256 MB, peak RSS over
    # 500 MB with the join) and stalled everyone else while doing it; now it gathers
    # about a MiB per turn and then waits for the peer to read.
    srv = server_factory(sync="never")
    assert srv.proc is not None
    value = bytes(range(256)) * 1024
    n = 1000
    with Conn(srv.port) as writer:
        assert writer.call("put", b"big", value) is True
    base = srv.peak_rss_bytes()
    with Conn(srv.port) as slow, Conn(srv.port) as other:
        # after a write, the gets wait for it and then all start at once (Pipeline._advance)
        first = [request(n + 1, "put", [b"small", b"v"])] if after_a_write else []
        slow.send_raw(b"".join(first + [request(i + 1, "get", [b"big"]) for i in range(n)]))
        for _ in range(3):  # another client is served meanwhile
            assert other.call("get", b"big") == value
        assert srv.peak_rss_bytes() - base < 128 << 20
        if after_a_write:
            assert slow.read_message() == [1, n + 1, None, True]
        for i in range(n):  # and the slow reader still gets every reply, in order
            _, msgid, error, result = slow.read_message()
            assert (msgid, error, result == value) == (i + 1, None, True)
    assert srv.peak_rss_bytes() - base < 128 << 20
