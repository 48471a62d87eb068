"""Slow and partial input cannot hold the server's memory or its connection slots.

Real servers on 127.0.0.1 with small limits. Unfinished requests are bounded
server-wide (--max-partial-input: the largest holder is refused with one line both
dialects read, the others go on) and in time (--request-timeout: a request started
must arrive whole, however steadily its bytes trickle). Five well-behaved Redis
clients run meanwhile; every reply they got must be right.
"""

from __future__ import annotations

import contextlib
import socket
import threading
import time
from collections.abc import Callable
from typing import Any

from protocol.refusals import PARTIAL_INPUT_LINE, REQUEST_TIMEOUT_LINE
from tests.server.test_hostile import (
    MIB,
    check_good,
    command,
    rss,
    start_good,
    stats,
)
from tests.server.wire import Conn, Inline, ReplyError, frame, request
from tests.serverproc import ServerProcess

BUDGET = 3 * MIB
FRAME = MIB + 4096


def connect(port: int) -> socket.socket:
    return socket.create_connection(("127.0.0.1", port), timeout=30)


def partial_set(key: bytes, size: int, sent: int) -> tuple[bytes, bytes]:
    """A Redis SET of a `size`-byte value cut after `sent` bytes of it, and its rest."""
    head = b"*3\r\n$3\r\nSET\r\n$%d\r\n%s\r\n$%d\r\n" % (len(key), key, size)
    return head + b"x" * sent, b"x" * (size - sent) + b"\r\n"


def read_to_eof(sock: socket.socket, limit: int = 4096) -> bytes:
    """Everything the server sends until it closes (bounded)."""
    out = b""
    while len(out) < limit:
        try:
            chunk = sock.recv(limit)
        except ConnectionResetError:
            break
        if not chunk:
            break
        out += chunk
    return out


def partial_bytes(srv: ServerProcess) -> int:
    value = stats(srv)["server"]["partial_input_bytes"]  # type: ignore[index]
    assert isinstance(value, int)
    return value


def wait_until(check: object, seconds: float = 20.0) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if check():  # type: ignore[operator]
            return
        time.sleep(0.05)
    raise AssertionError("not reached in time")


def test_partial_input_is_bounded_server_wide(server_factory: Callable[..., ServerProcess]) -> None:
    server = server_factory(
        sync="never", extra=["--max-frame", str(FRAME), "--max-partial-input", str(BUDGET)]
    )
    # Each connection was bounded by --max-frame only: 1024 of them could hold 65 MiB
    # of unfinished requests each. Over the budget the largest holder goes.
    baseline = rss(server)
    stop = threading.Event()
    good = start_good(server.port, stop, rounds_min=20)
    sizes = [600_000, 700_000, 800_000]  # Redis, unfinished: 2.1 MB held
    redis = [connect(server.port) for _ in sizes]
    rests = []
    for i, (sock, sent) in enumerate(zip(redis, sizes, strict=True)):
        head, rest = partial_set(b"slow:%d" % i, MIB, sent)
        sock.sendall(head)
        rests.append(rest)
    # A binary frame announced at FRAME - 4 bytes, 900,000 of it sent: the largest.
    binary = connect(server.port)
    body = request(1, "put", [b"bin", b"y" * (FRAME - 200)])
    binary.sendall(body[:900_000])
    wait_until(lambda: partial_bytes(server) >= 3_000_000)
    # One more Redis connection with 500,000: 3.5 MB > 3 MiB, the binary one is refused.
    last = connect(server.port)
    head, rest = partial_set(b"slow:last", MIB, 500_000)
    last.sendall(head)
    assert read_to_eof(binary) == PARTIAL_INPUT_LINE
    binary.close()
    wait_until(lambda: server.metric("bitcask_partial_input_refused_total") == 1)
    # the others go on: their requests complete and are answered
    for sock, rest_i in zip([*redis, last], [*rests, rest], strict=True):
        sock.sendall(rest_i)
        assert sock.recv(64) == b"+OK\r\n"
        sock.close()
    stop.set()
    check_good(server.port, good)
    with Inline(server.port) as c:
        for i in range(len(sizes)):
            assert c.cmd(b"STRLEN slow:%d" % i) == MIB
        assert c.cmd(b"STRLEN slow:last") == MIB
        assert c.cmd(b"EXISTS bin") == 0
        info = c.cmd(b"INFO stats")
    assert isinstance(info, bytes)
    assert b"partial_input_refused:1\r\n" in info
    wait_until(lambda: partial_bytes(server) == 0)
    assert rss(server) - baseline < 32 * MIB, (baseline, rss(server))


def test_an_http_body_counts_and_a_redis_client_reads_the_refusal(
    server_factory: Callable[..., ServerProcess],
) -> None:
    server = server_factory(
        sync="never", extra=["--max-frame", str(FRAME), "--max-partial-input", str(BUDGET)]
    )
    # An HTTP body arriving holds memory like a frame; here it is the one that stays,
    # and the Redis connection holding the most is refused with an error reply.
    http = connect(server.http_port)
    http.sendall(
        b"PUT /kv/body HTTP/1.1\r\nHost: x\r\nContent-Length: 1000000\r\n\r\n" + b"h" * 900_000
    )
    wait_until(lambda: partial_bytes(server) >= 900_000)
    big = Inline(server.port, timeout=30)
    head, _ = partial_set(b"big", MIB, 1_000_000)
    big.send(command(b"PING") + head)
    assert big.reply() == "PONG"  # the reply due before the refusal
    wait_until(lambda: partial_bytes(server) >= 1_900_000)
    small = connect(server.port)
    head, rest = partial_set(b"small", MIB, 600_000)
    small.sendall(head)
    wait_until(lambda: partial_bytes(server) >= 2_500_000)
    pushed = connect(server.port)
    pushed.sendall(partial_set(b"pushed", MIB, 800_000)[0])  # 3.3 MB: big goes
    refusal = big.reply()
    assert isinstance(refusal, ReplyError)
    assert refusal == ReplyError(PARTIAL_INPUT_LINE[1:-2].decode())
    big.close()
    pushed.close()
    small.sendall(rest)
    assert small.recv(64) == b"+OK\r\n"
    http.sendall(b"h" * 100_000)
    assert http.recv(4096).startswith(b"HTTP/1.1 2")
    with Inline(server.port) as c:
        assert c.cmd(b"STRLEN small") == MIB
        assert c.cmd(b"STRLEN body") == 1_000_000
        assert c.cmd(b"EXISTS big") == 0
    small.close()
    http.close()
    wait_until(lambda: partial_bytes(server) == 0)
    assert server.metric("bitcask_partial_input_refused_total") == 1


def test_a_request_trickling_in_is_dropped_at_the_deadline(
    server_factory: Callable[..., ServerProcess],
) -> None:
    server = server_factory(
        sync="never",
        extra=["--request-timeout", "1", "--idle-timeout", "60", "--http-body-timeout", "30"],
    )
    # One byte every 0.2 s is activity for --idle-timeout and silence never lasts
    # --http-body-timeout, so such a sender held its slot and buffer for ever.
    stop = threading.Event()
    good = start_good(server.port, stop, rounds_min=20)
    redis, binary, http = connect(server.port), connect(server.port), connect(server.http_port)
    redis.sendall(b"*3\r\n$3\r\nSET\r\n$4\r\nslow\r\n$100\r\n")
    binary.sendall(request(1, "put", [b"slowb", b"z" * 100])[:10])
    http.sendall(b"PUT /kv/slowh HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\nh")
    for sock in (redis, binary, http):
        sock.settimeout(0.2)
    replies: dict[str, bytes] = {}
    for _ in range(100):  # 20 s at most; the deadline is 1 s
        for name, sock in (("redis", redis), ("binary", binary), ("http", http)):
            if name in replies:
                continue
            try:
                sock.sendall(b"x")
                got = sock.recv(4096)
            except TimeoutError:
                continue
            except (BrokenPipeError, ConnectionResetError):
                got = b""
            replies[name] = got
        if len(replies) == 3:
            break
    assert replies["redis"] == REQUEST_TIMEOUT_LINE
    assert replies["binary"] == REQUEST_TIMEOUT_LINE
    assert replies["http"].startswith(b"HTTP/1.1 408 ")
    assert b"request-timeout" in replies["http"]
    for sock in (redis, binary, http):
        sock.close()
    stop.set()
    check_good(server.port, good)
    with Inline(server.port) as c:
        assert [c.cmd(b"EXISTS " + k) for k in (b"slow", b"slowb", b"slowh")] == [0, 0, 0]
        info = c.cmd(b"INFO stats")
    assert isinstance(info, bytes) and b"request_timeouts:3\r\n" in info
    assert server.metric("bitcask_request_timeouts_total") == 3
    assert partial_bytes(server) == 0


def pipeline_cut_mid_frame(port: int, seconds: float) -> tuple[int, list[list[Any]]]:
    """Pipelined puts for `seconds`, every write ending inside a frame, read by a
    thread meanwhile, then a half-close: (how many were sent, every reply in order)."""
    with Conn(port) as conn:
        assert conn.call("auth", b"tok") is True
        replies: list[list[Any]] = []

        def read() -> None:
            with contextlib.suppress(ConnectionError, OSError):
                while True:
                    replies.append(conn.read_message())

        reader = threading.Thread(target=read)
        reader.start()
        sent, rest = 0, b""
        started = time.monotonic()
        while time.monotonic() - started < seconds:
            frames = []
            for _ in range(50):
                sent += 1
                frames.append(request(sent + 1, "put", [b"s%d" % (sent % 50), b"v%d" % sent]))
            conn.send_raw(rest + b"".join(frames[:-1]) + frames[-1][:9])  # cut in a frame
            rest = frames[-1][9:]
            time.sleep(0.01)
        conn.send_raw(rest)
        conn.sock.shutdown(socket.SHUT_WR)
        reader.join(30)
    return sent, replies


def test_a_request_begun_behind_a_complete_one_is_held_to_the_deadline(
    server_factory: Callable[..., ServerProcess],
) -> None:
    """A request whose first bytes came in the same read as a complete request (a
    pipelining client's write cut by TCP; a slow sender whose first request was
    whole) started no deadline: it was held for ever, where alone it was dropped at
    1 s. The window is the request's: a client pipelining for longer than the
    timeout, each write cut mid-frame, goes on, and so does a Redis client whose
    AUTH and next command came in one write before a silence."""
    server = server_factory(sync="never", extra=["--request-timeout", "1", "--auth", "tok"])
    binary, redis = connect(server.port), connect(server.port)
    binary.sendall(request(1, "auth", [b"tok"]) + request(2, "put", [b"cut", b"z" * 100])[:12])
    redis.sendall(b"AUTH tok\r\n*3\r\n$3\r\nSET\r\n$4\r\ncutr\r\n$100\r\nzz")
    with Inline(server.port) as idle:
        idle.send(b"AUTH tok\r\nSET idle 1\r\n")
        assert [idle.reply(), idle.reply()] == ["OK", "OK"]
        sent, replies = pipeline_cut_mid_frame(server.port, 2.5)
        assert [m[1:] for m in replies] == [[i + 1, None, True] for i in range(1, sent + 1)]
        binary.settimeout(20)
        redis.settimeout(20)
        # a TimeoutError here: the unfinished request was held past its deadline
        assert read_to_eof(binary) == frame([1, 1, None, True]) + REQUEST_TIMEOUT_LINE
        assert read_to_eof(redis) == b"+OK\r\n" + REQUEST_TIMEOUT_LINE
        assert idle.cmd(b"GET idle") == b"1"  # silent for the 2.5 s: still served
    for sock in (binary, redis):
        sock.close()
    with Conn(server.port) as c:
        assert c.call("auth", b"tok") is True
        assert [c.call("exists", k) for k in (b"cut", b"cutr", b"idle")] == [False, False, True]
        last = {b"s%d" % (n % 50): b"v%d" % n for n in range(1, sent + 1)}
        assert c.call("mget", list(last)) == list(last.values())
        counters = c.call("stats")["server"]
    assert (counters["request_timeouts"], counters["partial_input_bytes"]) == (2, 0)


def test_the_budget_refusal_comes_after_the_requests_completed_in_its_read(
    server_factory: Callable[..., ServerProcess],
) -> None:
    """Section 11: the replies due for the requests before the dropped one are sent,
    then the line. A read holding a whole put and the start of the next request, that
    took the partial input over the budget, was refused before the put was fed: the
    put was neither applied nor answered."""
    server = server_factory(
        sync="never",
        extra=["--max-frame", "65536", "--max-value-size", "60000", "--max-partial-input", "65536"],
    )
    held = request(1, "put", [b"held", b"z" * 50000])
    with Conn(server.port) as holder, Conn(server.port) as refused:
        holder.send_raw(held[:30000])
        wait_until(lambda: partial_bytes(server) == 30000)
        cut = request(8, "put", [b"cut", b"z" * 50000])[:40000]
        refused.send_raw(request(7, "put", [b"whole", b"1"]) + cut)
        assert refused.read_message() == [1, 7, None, True]
        assert refused.closed_by_peer(10) and refused.buf == PARTIAL_INPUT_LINE
        holder.send_raw(held[30000:])  # the other holder goes on
        assert holder.read_message() == [1, 1, None, True]
        assert [holder.call("exists", k) for k in (b"whole", b"cut", b"held")] == [
            True,
            False,
            True,
        ]
    assert partial_bytes(server) == 0
