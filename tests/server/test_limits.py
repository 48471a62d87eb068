"""Limits and hostile input: each gets a clear error, and the next client is served."""

from __future__ import annotations

import socket
import struct
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import msgpack
import pytest

from protocol import TOO_MANY_CONNECTIONS_LINE
from tests.server.wire import Conn, frame, http, request, status_of
from tests.serverproc import ServerProcess, running_server


@pytest.fixture(scope="module")
def tight(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    data = tmp_path_factory.mktemp("limits") / "data"
    data.mkdir()
    srv = ServerProcess(
        data=data, sync="never", extra=["--max-frame", "2048", "--idle-timeout", "1"]
    )
    srv.start()
    yield srv
    srv.kill()


def still_serving(srv: ServerProcess) -> None:
    with Conn(srv.port) as c:
        assert c.call("ping") == "PONG"


def fatal_reply(srv: ServerProcess, payload: bytes, msgid: int = 0) -> list[object]:
    """Send payload; expect one error reply carrying `msgid` and then a close."""
    with Conn(srv.port) as c:
        c.send_raw(payload)
        msg = c.read_message()
        assert msg[1] == msgid and msg[2] is not None, msg
        assert c.closed_by_peer(), "the server closes after a fatal error"
        return msg[2]  # type: ignore[no-any-return]


@pytest.mark.parametrize(
    ("payload", "code", "msgid"),
    [
        pytest.param(struct.pack(">I", 4096), "FRAME_TOO_LARGE", 0, id="oversize-header-only"),
        pytest.param(struct.pack(">I", 1) + b"\xc1", "PROTOCOL_ERROR", 0, id="bad-msgpack"),
        pytest.param(struct.pack(">I", 0), "PROTOCOL_ERROR", 0, id="empty-frame"),
        pytest.param(frame([1, 5, None, True]), "PROTOCOL_ERROR", 0, id="response-not-request"),
        pytest.param(frame([0, -1, "ping", []]), "PROTOCOL_ERROR", 0, id="negative-msgid"),
        pytest.param(frame([0, 1, "ping"]), "PROTOCOL_ERROR", 1, id="three-fields"),
        pytest.param(frame([0, 7, "ping", {}]), "PROTOCOL_ERROR", 7, id="params-not-array"),
        pytest.param(frame({"not": "an array"}), "PROTOCOL_ERROR", 0, id="map"),
        pytest.param(b"\xff\xfe\x00", "PROTOCOL_ERROR", 0, id="non-ascii-first-byte"),
    ],
)
def test_fatal_input(tight: ServerProcess, payload: bytes, code: str, msgid: int) -> None:
    error = fatal_reply(tight, payload, msgid)
    assert error[1] == code  # type: ignore[index]
    still_serving(tight)


@pytest.mark.parametrize(
    "bad",
    [
        pytest.param(frame([0, 7, "ping", {}]), id="bad-shape"),
        pytest.param(frame([1, 7, None, True]), id="response"),
        pytest.param(struct.pack(">I", 1) + b"\xc1", id="bad-msgpack"),
    ],
)
def test_nothing_pipelined_after_a_fatal_error_runs(tight: ServerProcess, bad: bytes) -> None:
    with Conn(tight.port) as c:
        c.send_raw(
            request(1, "put", [b"fatal-before", b"v"])
            + bad
            + request(8, "put", [b"fatal-after", b"v"])
            + request(9, "get", [b"fatal-after"])
        )
        replies = [c.read_message() for _ in range(2)]
        assert replies[0][1:] == [1, None, True]
        assert replies[1][2][1] == "PROTOCOL_ERROR"
        assert c.closed_by_peer()
        assert c.buf == b"", "no reply after the fatal error"
    with Conn(tight.port) as c:
        assert c.call("get", b"fatal-before") == b"v"
        assert c.call("get", b"fatal-after") is None


@pytest.mark.parametrize("first", [b"\t", b"\r\n", b"\n"])
def test_a_first_byte_of_tab_cr_or_lf_is_text(tight: ServerProcess, first: bytes) -> None:
    with socket.create_connection(("127.0.0.1", tight.port), timeout=5) as s:
        s.sendall(first + b"PING\r\n")
        assert s.recv(100).startswith(b"+PONG")


def test_requests_before_garbage_are_answered(tight: ServerProcess) -> None:
    with Conn(tight.port) as c:
        c.send_raw(
            request(1, "put", [b"before", b"v"])
            + request(2, "get", [b"before"])
            + b"\x00\x00\x00\x01\xc1"
        )
        replies = [c.read_message() for _ in range(3)]
        assert [r[1] for r in replies] == [1, 2, 0]
        assert replies[1][3] == b"v"
        assert replies[2][2][1] == "PROTOCOL_ERROR"
        assert c.closed_by_peer()


def test_oversize_frame_body_never_buffered(tight: ServerProcess) -> None:
    # The refusal arrives before the body is sent: the server judged the header alone.
    with Conn(tight.port) as c:
        c.send_raw(struct.pack(">I", 100 * 1024 * 1024))
        assert c.read_message()[2][1] == "FRAME_TOO_LARGE"


def test_frame_just_under_the_limit_works(tight: ServerProcess) -> None:
    with Conn(tight.port) as c:
        value = b"x" * 1900
        assert c.call("put", b"big", value) is True
        assert c.call("get", b"big") == value


def test_idle_connections_are_closed(tight: ServerProcess) -> None:
    with Conn(tight.port) as c:
        assert c.call("ping") == "PONG"
        started = time.monotonic()
        assert c.closed_by_peer(timeout=8)
        assert time.monotonic() - started >= 0.9


def test_half_closed_client_gets_its_replies(tight: ServerProcess) -> None:
    with Conn(tight.port) as c:
        c.send_raw(request(1, "put", [b"half", b"v"]) + request(2, "get", [b"half"]))
        c.sock.shutdown(socket.SHUT_WR)
        assert [c.read_message()[3] for _ in range(2)] == [True, b"v"]
        assert c.closed_by_peer()


def connect_within_cap(srv: ServerProcess) -> Conn:
    """A connection that got in (the fixture's own port probes take a moment to leave)."""
    deadline = time.monotonic() + 5
    while True:
        conn = Conn(srv.port)
        conn.send("ping")
        conn._fill(1)
        if not conn.buf.startswith(b"-"):  # not the refusal line
            assert conn.read_message()[2] is None
            return conn
        conn.close()
        assert time.monotonic() < deadline
        time.sleep(0.1)


def test_connection_cap(server_factory: Callable[..., ServerProcess]) -> None:
    srv = server_factory(sync="never", extra=["--max-connections", "2"])
    first, second = connect_within_cap(srv), connect_within_cap(srv)
    try:
        with Conn(srv.port) as third:  # answered at once, before it speaks, in one text line
            assert third.closed_by_peer()
            assert third.buf == TOO_MANY_CONNECTIONS_LINE
            assert third.buf == b"-ERR max number of clients reached\r\n"
        # the probes still answer (a reserve past the cap: test_container_probes.py)
        assert status_of(http(srv.http_port, b"GET /livez HTTP/1.1\r\nHost: x\r\n\r\n")) == 200
        assert status_of(http(srv.http_port, b"GET /kv/k HTTP/1.1\r\nHost: x\r\n\r\n")) == 503
        second.close()
        connect_within_cap(srv).close()  # a slot frees up once a client leaves
    finally:
        first.close()
        second.close()


def test_bad_inputs_in_a_row_leave_the_server_serving(tight: ServerProcess) -> None:
    payloads = [
        b"\x00\x00\x00\x02\x93\xc1",
        b"\x7f\x7f\x7f\n",
        b"GET / HTTP/1.0\r\n\r\n",
        b"\x00",
        msgpack.packb([0, 1, "get", [b"k"]]),  # no length header: read as a huge frame
        b"",
    ]
    for payload in payloads:
        with socket.create_connection(("127.0.0.1", tight.port), timeout=5) as s:
            if payload:
                s.sendall(payload)
            s.shutdown(socket.SHUT_WR)
            s.settimeout(5)
            try:
                while s.recv(65536):
                    pass
            except ConnectionResetError:
                pass
        still_serving(tight)


def test_max_keys_refuses_new_keys_only(tmp_path: Path) -> None:
    """--max-keys: past it a write of a new key answers STORE_FULL (HTTP 507); reads,
    overwrites and deletes go on, and a delete makes room again."""
    with running_server(tmp_path / "data", sync="never", extra=["--max-keys", "3"]) as srv:
        with Conn(srv.port) as c:
            for k in (b"a", b"b", b"c"):
                assert c.call("put", k, b"1") is True
            assert c.error("put", b"d", b"1").name == "STORE_FULL"
            assert c.error("mput", [[b"a", b"2"], [b"e", b"2"]]).name == "STORE_FULL"
            assert c.call("get", b"a") == b"1", "the refused mput wrote nothing"
            assert c.call("put", b"a", b"2") is True
            assert c.call("delete", b"c") is True
            assert c.call("put", b"d", b"1") is True
            assert c.call("mget", [b"a", b"b", b"c", b"d"]) == [b"2", b"1", None, b"1"]
        raw = http(
            srv.http_port,
            b"PUT /kv/new HTTP/1.1\r\nHost: t\r\nContent-Length: 1\r\nConnection: close\r\n\r\nx",
        )
        assert status_of(raw) == 507 and b"STORE_FULL" in raw
