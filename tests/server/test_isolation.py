"""One hostile client cannot hurt the others (real sockets, a real server process).

Ten connections write while an eleventh sends every kind of bad input in a loop: the
writers see no failure, and nobody ever gets INTERNAL. A pathological text line is
answered while a ping on another connection is answered too.
"""

from __future__ import annotations

import contextlib
import socket
import struct
import threading
from collections.abc import Callable

import msgpack
import pytest

from tests.server.wire import Conn, Inline, frame, http, request, status_of
from tests.serverproc import ServerProcess

WRITERS = 10
PUTS_PER_WRITER = 300
DEPTH = 10  # pipelined puts per round trip
BAD_ROUNDS = 15

# Requests that must fail alone (the connection goes on): (method, params).
BAD_REQUESTS: list[tuple[str, list[object]]] = [
    ("put", [b"bad", b"v", {"ttl": 1e300}]),
    ("put", [b"bad", b"v", {"ttl": 1e17}]),
    ("put", [b"bad", b"v", {"ttl": float("nan")}]),
    ("put", [b"bad", b"v", {"ttl": float("inf")}]),
    ("put", [b"bad", b"v", {"ttl": -1}]),
    ("put", [b"bad", b"v", {"ttl": 2**64 - 1}]),
    ("batch", [[["put", b"bad", b"v", {"ttl": 1e300}], ["delete", b"x"]]]),
    ("mput", [[[b"k" * 100_000, b"v"]]]),
    ("put", [b"k" * 100_000, b"v"]),
    ("put", [b"k", 7]),
    ("get", [[b"not", b"a", b"key"]]),
    ("scan", [{"count": 10**12}]),
    ("nosuchmethod", []),
    ("ping", [{"a": 1}]),
]

# Whole connections that end in a fatal error, a refusal or a close.
FATAL_BINARY: list[bytes] = [
    frame([0, 7, "ping", {}]) + request(8, "put", [b"after-fatal", b"v"]),
    frame([1, 7, None, True]),
    struct.pack(">I", 1) + b"\xc1",
    struct.pack(">I", 0),
    struct.pack(">I", 0x7FFFFFF),
    b"\xff\xfe",
    msgpack.packb([0, 1, "get", [b"k"]]),
]
# The Redis protocol (a text first byte), inline and multibulk.
BAD_TEXT: list[bytes] = [
    b'GET "' + b"a" * 40 + b"\r\n",
    b'GET "' + b"\\" * 65_536 + b"\r\n",
    b"SET k v EX 1e300\r\n",
    b"SET k v PX 9223372036854775807\r\n",
    b"SET k v EXAT 100000000000000000\r\n",
    b"INCRBYFLOAT k nan\r\nINCRBYFLOAT k 1e400\r\n",
    b"EXPIRE k 9223372036854775807\r\n",
    b"\tPING\r\n",
    b"\r\nPING\r\n",
    b"GET / HTTP/1.1\r\nHost: x\r\n\r\n",
    b"*3\r\n$3\r\nSET\r\n$1\r\nk\r\n$-5\r\n",
    b"*2\r\n$3\r\nGET\r\n:1\r\n",
    b"SET k " + b"x" * 70_000 + b"\r\n",
]
BAD_HTTP: list[bytes] = [
    b"PUT /kv/k?ttl=1e300 HTTP/1.1\r\nHost: x\r\nContent-Length: 1\r\nConnection: close\r\n\r\nv",
    b"PUT /kv/k HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
    b"Content-Length: 2000\r\nConnection: close\r\n\r\n" + b"[" * 1000 + b"]" * 1000,
]


def _drain(sock: socket.socket) -> bytes:
    sock.settimeout(10)
    chunks = []
    with contextlib.suppress(ConnectionResetError):
        while True:
            chunk = sock.recv(65536)
            if not chunk:
                break
            chunks.append(chunk)
    return b"".join(chunks)


def _hostile(srv: ServerProcess, seen: list[bytes]) -> None:
    for _ in range(BAD_ROUNDS):
        with Conn(srv.port) as c:
            for method, params in BAD_REQUESTS:
                err = c.error(method, *params)
                seen.append(err.name.encode())
            assert c.call("get", b"after-fatal") is None
        for payload in FATAL_BINARY + BAD_TEXT:
            with socket.create_connection(("127.0.0.1", srv.port), timeout=10) as s:
                # a fatal error may close the connection before all of it is read
                with contextlib.suppress(BrokenPipeError, ConnectionResetError):
                    s.sendall(payload)
                    s.shutdown(socket.SHUT_WR)
                seen.append(_drain(s))
        for raw in BAD_HTTP:
            reply = http(srv.http_port, raw)
            assert status_of(reply) == 400, reply[:200]
            seen.append(reply)


def _writer(srv: ServerProcess, n: int, failures: list[BaseException]) -> None:
    try:
        with Conn(srv.port) as c:
            for base in range(0, PUTS_PER_WRITER, DEPTH):
                for i in range(base, base + DEPTH):
                    c.send("put", b"w%d:%d" % (n, i), b"v%d" % i)
                for _ in range(DEPTH):
                    _, result = c.reply()
                    assert result is True
            assert c.call("get", b"w%d:%d" % (n, PUTS_PER_WRITER - 1)) == b"v%d" % (
                PUTS_PER_WRITER - 1
            )
    except BaseException as exc:  # collected and reported by the test
        failures.append(exc)


def test_ten_writers_and_one_hostile_client(
    server_factory: Callable[..., ServerProcess],
) -> None:
    srv = server_factory(sync="never", extra=["--max-frame", "1048576"])
    failures: list[BaseException] = []
    seen: list[bytes] = []
    hostile_failed: list[BaseException] = []

    def hostile() -> None:
        try:
            _hostile(srv, seen)
        except BaseException as exc:
            hostile_failed.append(exc)

    threads = [threading.Thread(target=_writer, args=(srv, n, failures)) for n in range(WRITERS)]
    threads.append(threading.Thread(target=hostile))
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=120)
        assert not t.is_alive()
    assert failures == []
    assert hostile_failed == []
    assert seen, "the hostile client got answers"
    assert not [s for s in seen if b"INTERNAL" in s or b"internal error" in s]
    with Conn(srv.port) as c:
        assert c.call("get", b"after-fatal") is None  # pipelined after a fatal error: never ran
        for n in range(WRITERS):
            assert c.call("mget", [b"w%d:%d" % (n, i) for i in range(PUTS_PER_WRITER)]) == [
                b"v%d" % i for i in range(PUTS_PER_WRITER)
            ]


def test_bad_requests_never_answer_internal(server: ServerProcess) -> None:
    with Conn(server.port) as c:
        for method, params in BAD_REQUESTS:
            err = c.error(method, *params)
            assert err.name in {"INVALID_PARAMS", "KEY_TOO_LARGE", "UNKNOWN_METHOD"}, err
        assert c.call("ping") == "PONG"


@pytest.mark.parametrize(
    ("line", "error"),
    [
        # an unbalanced quote before 64 KiB of backslashes (the issue-9 freeze)
        pytest.param(b'GET "' + b"\\" * 65_500, "unbalanced quotes in request", id="backslashes"),
        pytest.param(b'GET "' + b'\\"' * 32_000, "unbalanced quotes in request", id="escapes"),
        pytest.param(b'GET "' + b"a" * 500_000, "too big inline request", id="huge"),
    ],
)
def test_pathological_text_line_does_not_stall_other_connections(
    server: ServerProcess, line: bytes, error: str
) -> None:
    with Inline(server.port) as text, Conn(server.port) as other, Inline(server.port) as redis:
        assert text.cmd(b"PING") == "PONG"
        text.send(line + b"\r\n")
        assert other.call("ping") == "PONG"
        assert redis.cmd(b"PING") == "PONG"
        assert text.reply() == "ERR Protocol error: " + error  # then the close, as in Redis
        assert text.read_all() == b""
        assert other.call("ping") == "PONG"
        assert redis.cmd(b"PING") == "PONG"
