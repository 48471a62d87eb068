"""Inline commands of the Redis protocol on the binary port, as `nc` would send them.

Real sockets, a real server: a connection whose first byte is text speaks RESP
(docs/redis.md), reads inline command lines with redis-cli's quoting, answers in
RESP2 (RESP3 after HELLO 3), and shares the store with the binary protocol.
"""

from __future__ import annotations

import time
from collections.abc import Callable

import pytest
import redis

from tests.server.wire import Conn, Inline, ReplyError, http, status_of
from tests.serverproc import ServerProcess


def test_session(shared: ServerProcess) -> None:
    with Inline(shared.port) as c:
        assert c.cmd(b"PING") == "PONG"
        assert c.cmd(b"ping hello") == b"hello"
        assert c.cmd(b"ECHO 'two words'") == b"two words"
        assert c.cmd(b"SET inline:a hello") == "OK"
        assert c.cmd(b"GET inline:a") == b"hello"
        assert c.cmd(b"get inline:missing") is None
        assert c.cmd(b"EXISTS inline:a inline:a inline:missing") == 2
        assert c.cmd(b"TTL inline:a") == -1
        assert c.cmd(b"SET inline:t v EX 100") == "OK"
        assert 99 <= c.cmd(b"TTL inline:t") <= 100
        assert c.cmd(b"DEL inline:t") == 1
        assert c.cmd(b"DEL inline:t") == 0
        assert c.cmd(b"MSET inline:b 2 inline:c 3") == "OK"
        assert c.cmd(b"MGET inline:a inline:b inline:zz") == [b"hello", b"2", None]
        assert c.cmd(b"INCR inline:n") == 1
        assert c.cmd(b"INCRBY inline:n 41") == 42


def test_quoting_round_trips_binary(shared: ServerProcess) -> None:
    with Inline(shared.port) as c:
        assert c.cmd(b'SET "inline:two words" "tab\\there \\"q\\" \\x00\\xff"') == "OK"
        assert c.cmd(b"GET 'inline:two words'") == b'tab\there "q" \x00\xff'
        assert c.cmd(b"SET inline:sq 'it\\'s a \\n'") == "OK"
        assert c.cmd(b"GET inline:sq") == b"it's a \\n"
    with Conn(shared.port) as b:  # the same store, whichever dialect wrote it
        assert b.call("get", b"inline:two words") == b'tab\there "q" \x00\xff'


def test_resp3_after_hello_3(shared: ServerProcess) -> None:
    with Inline(shared.port) as c:
        assert c.cmd(b"GET inline:none") is None  # RESP2: $-1
        hello = c.cmd(b"HELLO 3")
        assert isinstance(hello, dict) and hello[b"proto"] == 3
        c.send(b"GET inline:none\r\n")
        assert c.line() == b"_"  # RESP3 null
        flat = c.cmd(b"HELLO 2")  # a map is a flat array in RESP2
        assert dict(zip(flat[::2], flat[1::2], strict=True))[b"proto"] == 2


def test_scan_replies(shared: ServerProcess) -> None:
    with Inline(shared.port) as c:
        c.cmd(b"MSET inline-scan:1 a inline-scan:2 b")
        keys: set[bytes] = set()
        cursor = b"0"
        for _ in range(100):
            cursor, page = c.cmd(b"SCAN " + cursor + b" MATCH inline-scan:* COUNT 1")
            keys.update(page)
            if cursor == b"0":
                break
        assert keys == {b"inline-scan:1", b"inline-scan:2"}


def test_command_errors_keep_the_connection(shared: ServerProcess) -> None:
    with Inline(shared.port) as c:
        unknown = c.cmd(b"FROB x")
        assert isinstance(unknown, ReplyError)
        assert unknown.startswith("ERR unknown command 'FROB', with args beginning with: 'x'")
        assert c.cmd(b"GET") == "ERR wrong number of arguments for 'get' command"
        assert c.cmd(b"SET k v EX soon") == "ERR value is not an integer or out of range"
        assert c.cmd(b"SET k v NX XX") == "ERR syntax error"
        assert c.cmd(b"PING") == "PONG"


def test_pipelined_lines_answer_in_order(shared: ServerProcess) -> None:
    with Inline(shared.port) as c:
        lines = b"".join(b"SET inline:p%d %d\r\nGET inline:p%d\r\n" % (i, i, i) for i in range(200))
        c.send(lines)
        replies = [c.reply() for _ in range(400)]
    assert replies[0::2] == ["OK"] * 200
    assert replies[1::2] == [b"%d" % i for i in range(200)]


def test_quit_closes_and_drops_what_follows(shared: ServerProcess) -> None:
    with Inline(shared.port) as c:
        c.send(b"SET inline:q 1\nQUIT\nSET inline:q 2\n")
        assert c.read_all() == b"+OK\r\n+OK\r\n"
    with Conn(shared.port) as b:
        assert b.call("get", b"inline:q") == b"1"


@pytest.mark.parametrize("first", [b"\t", b"\n", b"\r\n", b" "])
def test_a_blank_first_byte_is_text(shared: ServerProcess, first: bytes) -> None:
    with Inline(shared.port) as c:
        c.send(first)
        assert c.cmd(b"PING") == "PONG"


def test_http_on_the_binary_port_is_refused(shared: ServerProcess) -> None:
    reply = http(shared.port, b"GET /kv/x HTTP/1.1\r\nHost: x\r\n\r\n")
    assert status_of(reply) == 400
    assert str(shared.http_port).encode() in reply.split(b"\r\n\r\n", 1)[1]


@pytest.mark.parametrize(
    ("line", "error"),
    [
        pytest.param(b"SET k " + b"x" * 70_000, b"too big inline request", id="over-64k"),
        pytest.param(b'SET k "open', b"unbalanced quotes in request", id="unbalanced"),
        pytest.param(b"SET k 'v'x", b"unbalanced quotes in request", id="after-quote"),
    ],
)
def test_protocol_errors_are_fatal(shared: ServerProcess, line: bytes, error: bytes) -> None:
    # as in Redis: the error line, then the close; what followed never runs
    with Inline(shared.port) as c:
        assert c.cmd(b"PING") == "PONG"
        c.send(line + b"\r\nSET inline:after-fatal v\r\n")
        assert c.read_all() == b"-ERR Protocol error: " + error + b"\r\n"
    with Inline(shared.port) as c:
        assert c.cmd(b"GET inline:after-fatal") is None, "the next client is served"


def test_the_connection_limit_line_reads_as_a_redis_error(
    server_factory: Callable[..., ServerProcess],
) -> None:
    srv = server_factory(sync="never", extra=["--max-connections", "1"])
    deadline = time.monotonic() + 5
    holder = Inline(srv.port)
    while holder.cmd(b"PING") != "PONG":  # the fixture's start-up probe may hold the slot
        holder.close()
        assert time.monotonic() < deadline
        time.sleep(0.1)
        holder = Inline(srv.port)
    try:
        with Inline(srv.port) as refused:  # answered before it speaks, then closed
            assert refused.reply() == "ERR max number of clients reached"
            assert refused.read_all() == b""
        client = redis.Redis(host=srv.host, port=srv.port, socket_timeout=10)
        with pytest.raises(redis.ConnectionError, match="max number of clients reached"):
            client.ping()
        client.close()
    finally:
        holder.close()
