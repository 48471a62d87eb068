"""Inline text mode on the binary port, as `nc` would use it, over raw sockets."""

from __future__ import annotations

from tests.server.wire import Conn, Inline, http, status_of
from tests.serverproc import ServerProcess


def test_session(shared: ServerProcess) -> None:
    with Inline(shared.port) as c:
        assert c.cmd(b"PING") == b"+PONG"
        assert c.cmd(b"ping hello") == b"$hello"
        assert c.cmd(b"PUT inline:a hello") == b"+OK"
        assert c.cmd(b"GET inline:a") == b"$hello"
        assert c.cmd(b"get inline:missing") == b"_"
        assert c.cmd(b"EXISTS inline:a") == b":1"
        assert c.cmd(b"TTL inline:a") == b":-1"
        assert c.cmd(b"PUT inline:t v TTL 100") == b"+OK"
        assert c.cmd(b"TTL inline:t").startswith(b",99.")
        assert c.cmd(b"DEL inline:t") == b":1"
        assert c.cmd(b"DELETE inline:t") == b":0"
        assert c.cmd(b"MPUT inline:b 2 inline:c 3") == b"+OK"
        c.send(b"MGET inline:a inline:b inline:zz\n")
        assert [c.line() for _ in range(4)] == [b"*3", b"$hello", b"$2", b"_"]
        assert c.cmd(b"SYNC") == b"+OK"


def test_quoting_round_trips_binary(shared: ServerProcess) -> None:
    with Inline(shared.port) as c:
        assert c.cmd(b'PUT "inline:two words" "tab\\there \\"q\\" \\x00\\xff"') == b"+OK"
        reply = c.cmd(b'GET "inline:two words"')
        assert reply == b'$"tab\\there \\"q\\" \\x00\\xff"'
    with Conn(shared.port) as b:
        assert b.call("get", b"inline:two words") == b'tab\there "q" \x00\xff'


def test_scan_and_stats_replies(shared: ServerProcess) -> None:
    with Inline(shared.port) as c:
        c.cmd(b"MPUT inline-scan:1 a inline-scan:2 b")
        c.send(b'SCAN inline-scan: "" 10\n')
        assert [c.line() for _ in range(5)] == [
            b"*2",
            b"_",
            b"*2",
            b"$inline-scan:1",
            b"$inline-scan:2",
        ]
        c.send(b"STATS\n")
        header = c.line()
        assert header.startswith(b"%")
        assert c.cmd(b"PING") != b"", "the stats reply is consumed line by line"


def test_errors_keep_the_connection(shared: ServerProcess) -> None:
    with Inline(shared.port) as c:
        assert c.cmd(b"FROB x").startswith(b"-ERR UNKNOWN_METHOD")
        assert c.cmd(b"GET").startswith(b"-ERR INVALID_PARAMS")
        assert c.cmd(b'PUT "unbalanced').startswith(b"-ERR PROTOCOL_ERROR")
        assert c.cmd(b"PUT k v TTL soon").startswith(b"-ERR INVALID_PARAMS")
        assert c.cmd(b"PING") == b"+PONG"


def test_pipelined_lines_answer_in_order(shared: ServerProcess) -> None:
    with Inline(shared.port) as c:
        lines = b"".join(b"PUT inline:p%d %d\r\nGET inline:p%d\r\n" % (i, i, i) for i in range(200))
        c.send(lines)
        replies = [c.line() for _ in range(400)]
    assert replies[0::2] == [b"+OK"] * 200
    assert replies[1::2] == [b"$%d" % i for i in range(200)]


def test_quit_closes_and_drops_what_follows(shared: ServerProcess) -> None:
    with Inline(shared.port) as c:
        c.send(b"PUT inline:q 1\nQUIT\nPUT inline:q 2\n")
        assert c.read_all() == b"+OK\n+OK\n"
    with Conn(shared.port) as b:
        assert b.call("get", b"inline:q") == b"1"


def test_http_on_the_binary_port_is_refused(shared: ServerProcess) -> None:
    reply = http(shared.port, b"GET /kv/x HTTP/1.1\r\nHost: x\r\n\r\n")
    assert status_of(reply) == 400
    assert str(shared.http_port).encode() in reply.split(b"\r\n\r\n", 1)[1]


def test_over_long_line_is_fatal(shared: ServerProcess) -> None:
    with Inline(shared.port) as c:
        c.send(b"PING\n")
        assert c.line() == b"+PONG"
        c.send(b"PUT k " + b"x" * (1024 * 1024 + 10) + b"\n")
        rest = c.read_all()
        assert rest.startswith(b"-ERR PROTOCOL_ERROR")
    with Inline(shared.port) as c:
        assert c.cmd(b"PING") == b"+PONG", "the next client is served"
