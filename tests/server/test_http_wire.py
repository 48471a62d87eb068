"""HTTP/1.1 as real clients speak it: half-closed sockets, refused bodies, Upgrade, close.

Each test is a defect found by the round-2 audit of the HTTP adapter, driven by raw
sockets (exact bytes), Python's http.client and curl (Debian package curl; skipped when
absent, a failure under CI=true).
"""

from __future__ import annotations

import asyncio
import http.client
import socket
import subprocess
import threading
import time
from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from bitcask import _db_writes
from server import Server
from tests.protocol._redis_server import require_binary
from tests.server.wire import Conn, status_of
from tests.serverproc import ServerProcess

TIMEOUT = 10.0
MAX_FRAME = 65536


@pytest.fixture(scope="module")
def small(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    """One server for the module, with a small --max-frame so refusals are cheap."""
    data = tmp_path_factory.mktemp("wire") / "data"
    data.mkdir()
    srv = ServerProcess(data=data, extra=["--max-frame", str(MAX_FRAME)])
    srv.start()
    yield srv
    srv.kill()


def exchange(port: int, raw: bytes, half_close: bool = False) -> bytes:
    """Send `raw`, optionally shut the write side, read until the server closes."""
    with socket.create_connection(("127.0.0.1", port), timeout=TIMEOUT) as sock:
        sock.sendall(raw)
        if half_close:
            sock.shutdown(socket.SHUT_WR)
        chunks: list[bytes] = []
        while True:
            chunk = sock.recv(65536)
            if not chunk:
                return b"".join(chunks)
            chunks.append(chunk)


def responses(reply: bytes) -> list[bytes]:
    """The status lines in `reply` (bodies here never hold one)."""
    return [line for line in reply.split(b"\r\n") if line.startswith(b"HTTP/1.1 ")]


def stored(srv: ServerProcess, key: bytes) -> bytes | None:
    with Conn(srv.port) as c:
        value: bytes | None = c.call("get", key)
        return value


# ---- a client that half-closes after its request (printf ... | nc -N, shutdown(SHUT_WR)) ----


@pytest.mark.parametrize(
    "raw",
    [
        pytest.param(
            b"PUT /kv/half-put HTTP/1.1\r\nHost: t\r\nContent-Length: 2\r\n\r\nok", id="put"
        ),
        pytest.param(
            b"PUT /kv/half-put HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nok\r\n0\r\n\r\n",
            id="chunked-put",
        ),
        pytest.param(
            b"POST /kv/half-incr?incr HTTP/1.1\r\nHost: t\r\nContent-Length: 0\r\n\r\n", id="incr"
        ),
    ],
)
def test_half_closed_client_gets_its_write_acknowledged(small: ServerProcess, raw: bytes) -> None:
    # Was: the write was applied but the connection closed at the client's EOF before
    # the writer answered, so the client never learnt it was acknowledged (b"").
    reply = exchange(small.http_port, raw, half_close=True)
    assert len(responses(reply)) == 1 and status_of(reply) in (200, 204), reply


def test_half_closed_pipeline_gets_every_reply_in_order(small: ServerProcess) -> None:
    raw = b"".join(
        b"PUT /kv/half-%d HTTP/1.1\r\nHost: t\r\nContent-Length: 1\r\n\r\n%d" % (i, i)
        for i in range(5)
    )
    raw += b"GET /kv/half-4 HTTP/1.1\r\nHost: t\r\n\r\n"
    reply = exchange(small.http_port, raw, half_close=True)
    assert [status_of(r) for r in responses(reply)] == [204] * 5 + [200], reply
    assert reply.endswith(b"\r\n\r\n4"), reply


# ---- a refused body: the error reply must reach a client still sending ----


@pytest.mark.parametrize("chunked", [False, True], ids=["content-length", "chunked"])
def test_oversize_body_gets_413_not_a_reset(small: ServerProcess, chunked: bool) -> None:
    # http.client (and requests) send the whole body before reading. Was: the server
    # closed with the body unread, the kernel answered with a reset, and the client saw
    # ConnectionResetError instead of the 413.
    body = b"x" * (MAX_FRAME * 30)
    conn = http.client.HTTPConnection("127.0.0.1", small.http_port, timeout=TIMEOUT)
    try:
        if chunked:
            pieces = iter([body[i : i + 65536] for i in range(0, len(body), 65536)])
            conn.request("PUT", "/kv/too-big", body=pieces, encode_chunked=True)
        else:
            conn.request("PUT", "/kv/too-big", body=body)
        resp = conn.getresponse()
        assert resp.status == 413 and b"FRAME_TOO_LARGE" in resp.read()
        assert resp.getheader("connection") == "close"
    finally:
        conn.close()
    assert stored(small, b"too-big") is None


def test_refused_body_is_discarded_not_buffered(small: ServerProcess) -> None:
    # After the 413 the server reads and drops what the peer still sends, then closes
    # (at the peer's EOF here); other clients are served meanwhile.
    with socket.create_connection(("127.0.0.1", small.http_port), timeout=TIMEOUT) as sock:
        sock.sendall(b"PUT /kv/too-big HTTP/1.1\r\nHost: t\r\nContent-Length: 99999999\r\n\r\n")
        head = sock.recv(65536)
        assert status_of(head) == 413, head
        for _ in range(20):  # 1.3 MB more, all dropped
            sock.sendall(b"y" * 65536)
        assert stored(small, b"absent") is None  # another client, served meanwhile
        sock.shutdown(socket.SHUT_WR)
        rest = b""
        while chunk := sock.recv(65536):
            rest += chunk
        assert b"HTTP/1.1" not in rest, rest


# ---- Upgrade (curl --http2 on http:// sends Upgrade: h2c), CONNECT ----

UPGRADE = b"Connection: Upgrade, HTTP2-Settings\r\nUpgrade: h2c\r\nHTTP2-Settings: AAMAAABkAAQCAAAAAAIAAAAA\r\n"


def test_upgrade_request_with_a_body_never_stores_a_truncated_value(small: ServerProcess) -> None:
    # llhttp hands the bytes after an upgrade request's head to the new protocol, so
    # the request looked bodiless. Was: 204, and the key held b"" (the append added
    # nothing), followed by a second, unasked-for 400 on the same connection.
    for raw in (
        b"PUT /kv/up HTTP/1.1\r\nHost: t\r\n" + UPGRADE + b"Content-Length: 5\r\n\r\nhello",
        b"POST /kv/up?append HTTP/1.1\r\nHost: t\r\n" + UPGRADE + b"Content-Length: 5\r\n\r\nhello",
        b"PUT /kv/up HTTP/1.1\r\nHost: t\r\n"
        + UPGRADE
        + b"Transfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n",
    ):
        reply = exchange(small.http_port, raw)
        assert len(responses(reply)) == 1 and status_of(reply) == 400, reply
        assert b"Upgrade" in reply and b"connection: close" in reply
    assert stored(small, b"up") is None


def test_upgrade_request_without_a_body_is_answered_once(small: ServerProcess) -> None:
    # The Upgrade is ignored (RFC 9110 7.8 lets a server); the one reply says close,
    # because what follows on the connection is the other protocol's, never parsed.
    reply = exchange(
        small.http_port, b"GET /livez HTTP/1.1\r\nHost: t\r\n" + UPGRADE + b"\r\nPRI * HTTP/2.0"
    )
    assert responses(reply) == [b"HTTP/1.1 200 OK"], reply
    assert b"connection: close" in reply and reply.endswith(b"\r\n\r\nok\n"), reply
    reply = exchange(small.http_port, b"CONNECT /kv/a HTTP/1.1\r\nHost: a\r\n\r\n")
    assert [status_of(r) for r in responses(reply)] == [405], reply


def test_curl_http2_upgrade_put_is_refused_and_get_works(
    small: ServerProcess, tmp_path: Path
) -> None:
    curl = require_binary("curl", "curl")
    base = f"http://127.0.0.1:{small.http_port}"
    put = subprocess.run(
        [curl, "-s", "--http2", "-X", "PUT", "--data-binary", "hello", "-w", "\n%{http_code}",
         f"{base}/kv/curl-h2c"],
        capture_output=True, timeout=TIMEOUT, check=False,
    )  # fmt: skip
    assert put.stdout.endswith(b"\n400"), put
    assert stored(small, b"curl-h2c") is None
    get = subprocess.run(
        [curl, "-sS", "--http2", "-w", "\n%{http_code}", f"{base}/livez"],
        capture_output=True, timeout=TIMEOUT, check=False,
    )  # fmt: skip
    assert (get.returncode, get.stdout, get.stderr) == (0, b"ok\n\n200", b""), get


# ---- Connection: close ----


def test_nothing_is_answered_after_a_connection_close_reply(small: ServerProcess) -> None:
    # Was: llhttp's "Data after `Connection: close`" became a second response, a 400,
    # after the one that announced the close.
    reply = exchange(
        small.http_port,
        b"GET /livez HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\nGET /readyz HTTP/1.1\r\nHost: t\r\n\r\n",
    )
    assert responses(reply) == [b"HTTP/1.1 200 OK"], reply
    assert reply.endswith(b"ok\n"), reply


# ---- Expect: 100-continue, transfer codings ----


def test_100_continue_waits_for_the_earlier_replies(small: ServerProcess) -> None:
    # Was: the 100 went out at once, ahead of the 204 of the PUT pipelined before it
    # (still waiting for its fsync), so the first reply the client read was the 100.
    with socket.create_connection(("127.0.0.1", small.http_port), timeout=TIMEOUT) as sock:
        sock.sendall(
            b"PUT /kv/cont-1 HTTP/1.1\r\nHost: t\r\nContent-Length: 1\r\n\r\na"
            b"PUT /kv/cont-2 HTTP/1.1\r\nHost: t\r\nContent-Length: 3\r\nExpect: 100-continue\r\n\r\n"
        )
        head = b""
        while head.count(b"\r\n\r\n") < 2:
            head += sock.recv(65536)
        assert responses(head) == [b"HTTP/1.1 204 No Content", b"HTTP/1.1 100 Continue"], head
        sock.sendall(b"bcd")
        tail = sock.recv(65536)
        assert status_of(tail) == 204, tail
    assert stored(small, b"cont-2") == b"bcd"


@pytest.mark.parametrize("coding", [b"gzip, chunked", b"deflate,chunked"])
def test_unknown_transfer_coding_is_501_not_stored_encoded(
    small: ServerProcess, coding: bytes
) -> None:
    # Was: 204, and the still-compressed bytes stored as the value.
    raw = (
        b"PUT /kv/coded HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: %s\r\n\r\n3\r\nabc\r\n0\r\n\r\n"
        % coding
    )
    reply = exchange(small.http_port, raw)
    assert responses(reply) == [b"HTTP/1.1 501 Not Implemented"], reply
    assert stored(small, b"coded") is None


# ---- probes while the writer is over its mark ----


async def test_probes_answer_while_a_stalled_writer_pauses_the_writers(
    inproc: Callable[..., Awaitable[Server]], monkeypatch: pytest.MonkeyPatch
) -> None:
    # A disk that stalls (each group commit blocked) with writes queued over
    # --writer-queue-max pauses reading on every connection. Was: the probes' new
    # connections too, so /livez waited for the disk (2.5 s behind a 3 s stall, over
    # the 1 s default timeoutSeconds of a Kubernetes probe: the kubelet restarts a pod
    # whose only fault is a slow disk). Connections that never sent /kv are not paused.
    srv = await inproc(sync="always", writer_queue_max=2)
    release, entered = threading.Event(), threading.Event()
    real = _db_writes.WriteMethods.write_group

    def stalled(self: Any, *args: Any, **kwargs: Any) -> Any:
        entered.set()
        release.wait(TIMEOUT)
        return real(self, *args, **kwargs)

    monkeypatch.setattr(_db_writes.WriteMethods, "write_group", stalled)

    def scenario() -> list[bytes]:
        writers = [socket.create_connection(("127.0.0.1", srv.http_port)) for _ in range(8)]
        try:
            for i, sock in enumerate(writers):
                sock.sendall(
                    b"PUT /kv/stall-%d HTTP/1.1\r\nHost: t\r\nContent-Length: 1\r\n\r\nx" % i
                )
                assert entered.wait(TIMEOUT)  # the first one holds the writer; the rest queue
            deadline = time.monotonic() + TIMEOUT
            while not srv.writer_pressured and time.monotonic() < deadline:
                time.sleep(0.01)
            assert srv.writer_pressured
            probes = [
                exchange(
                    srv.http_port, b"GET %s HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n" % path
                )
                for path in (b"/livez", b"/readyz", b"/health")
            ]
            assert not release.is_set()  # answered while the disk still stalls
            return probes
        finally:
            release.set()
            for sock in writers:
                sock.close()

    try:
        probes = await asyncio.to_thread(scenario)
    finally:
        release.set()
    assert [status_of(p) for p in probes] == [200, 200, 200], probes


async def test_keep_alive_connection_paused_by_the_writer_is_not_reset(
    inproc: Callable[..., Awaitable[Server]], monkeypatch: pytest.MonkeyPatch
) -> None:
    # A keep-alive client sends its next PUT while the writer is over its mark: the
    # request sits unread (reading paused). Was: the idle timer (--http-keepalive)
    # fired, took the connection for idle and closed it with the request unread, so the
    # client got a reset instead of its 204 once the disk caught up.
    srv = await inproc(sync="always", writer_queue_max=2, http_keepalive=0.5)
    release, entered = threading.Event(), threading.Event()
    real = _db_writes.WriteMethods.write_group

    def stalled(self: Any, *args: Any, **kwargs: Any) -> Any:
        if not release.is_set():
            entered.set()
            release.wait(TIMEOUT)
        return real(self, *args, **kwargs)

    def scenario() -> bytes:
        with socket.create_connection(("127.0.0.1", srv.http_port), timeout=TIMEOUT) as idle:
            idle.sendall(b"GET /kv/kept HTTP/1.1\r\nHost: t\r\n\r\n")
            assert status_of(idle.recv(65536)) == 404
            monkeypatch.setattr(_db_writes.WriteMethods, "write_group", stalled)
            writers = [socket.create_connection(("127.0.0.1", srv.http_port)) for _ in range(8)]
            try:
                for i, sock in enumerate(writers):
                    sock.sendall(
                        b"PUT /kv/busy-%d HTTP/1.1\r\nHost: t\r\nContent-Length: 1\r\n\r\nx" % i
                    )
                    assert entered.wait(TIMEOUT)
                deadline = time.monotonic() + TIMEOUT
                while not srv.writer_pressured and time.monotonic() < deadline:
                    time.sleep(0.01)
                idle.sendall(b"PUT /kv/kept HTTP/1.1\r\nHost: t\r\nContent-Length: 1\r\n\r\nk")
                time.sleep(1.5)  # three keep-alive periods while paused
            finally:
                release.set()
                for sock in writers:
                    sock.close()
            return idle.recv(65536)

    try:
        reply = await asyncio.to_thread(scenario)
    finally:
        release.set()
    assert status_of(reply) == 204, reply


def test_a_repeated_query_parameter_counts_with_its_last_value(small: ServerProcess) -> None:
    put = b"PUT /kv/rep?ttl=5&ttl=60 HTTP/1.1\r\nHost: t\r\nConnection: close\r\nContent-Length: 1\r\n\r\nv"
    assert status_of(exchange(small.http_port, put)) == 204
    incr = b"POST /kv/rep-n?incr=1&incr=5 HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n"
    assert exchange(small.http_port, incr).endswith(b"\r\n\r\n5")
    with Conn(small.port) as c:
        assert 59 < c.call("ttl", b"rep") <= 60


async def test_request_half_read_when_the_writer_pauses_is_not_a_408(
    inproc: Callable[..., Awaitable[Server]], monkeypatch: pytest.MonkeyPatch
) -> None:
    # The head of a PUT is half read when the writer's pressure stops reading; the rest
    # waits in the socket. Was: the header deadline ran on while the server itself was
    # not reading, and the client, not slow at all, got a 408.
    srv = await inproc(sync="always", writer_queue_max=2, http_header_timeout=0.5)
    release, entered = threading.Event(), threading.Event()
    real = _db_writes.WriteMethods.write_group

    def stalled(self: Any, *args: Any, **kwargs: Any) -> Any:
        if not release.is_set():
            entered.set()
            release.wait(TIMEOUT)
        return real(self, *args, **kwargs)

    def scenario() -> bytes:
        with socket.create_connection(("127.0.0.1", srv.http_port), timeout=TIMEOUT) as sock:
            sock.sendall(b"GET /kv/half-read HTTP/1.1\r\nHost: t\r\n\r\n")
            assert status_of(sock.recv(65536)) == 404
            sock.sendall(b"PUT /kv/half-read HTTP/1.1\r\nHost: t\r\n")
            time.sleep(0.1)  # read: the header deadline runs
            monkeypatch.setattr(_db_writes.WriteMethods, "write_group", stalled)
            writers = [socket.create_connection(("127.0.0.1", srv.http_port)) for _ in range(8)]
            try:
                for i, w in enumerate(writers):
                    w.sendall(
                        b"PUT /kv/busy-%d HTTP/1.1\r\nHost: t\r\nContent-Length: 1\r\n\r\nx" % i
                    )
                    assert entered.wait(TIMEOUT)
                deadline = time.monotonic() + TIMEOUT
                while not srv.writer_pressured and time.monotonic() < deadline:
                    time.sleep(0.01)
                sock.sendall(b"Content-Length: 1\r\n\r\nh")
                time.sleep(1.0)  # two header deadlines while the server does not read
            finally:
                release.set()
                for w in writers:
                    w.close()
            return sock.recv(65536)

    try:
        reply = await asyncio.to_thread(scenario)
    finally:
        release.set()
    assert status_of(reply) == 204, reply
