"""What a client can make the server log: nothing per request, one line per kind of
fault every 10 s (bitcask/logthrottle.py), never a secret.

Real servers on loopback; each hostile path runs a bounded loop and the test counts
the server's stderr lines around it (docs/operations.md, Log lines).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import re
import socket
import struct
from pathlib import Path

import pytest

import bitcask
from server._outcome import error_info, loop_exception_handler
from tests.server.test_startup import needs_root, tmpfs
from tests.server.wire import Conn, Inline, http
from tests.serverproc import ServerProcess, running_server

ROUNDS = 200
TOKEN = "log-volume-token-0123"


def with_token(tmp_path: Path, *extra: str) -> contextlib.AbstractContextManager[ServerProcess]:
    """A server in tmp_path/data that asks for TOKEN (given as a client would not see
    it: in the environment), with `extra` flags."""
    return running_server(tmp_path / "data", env={"BITCASK_AUTH": TOKEN}, extra=list(extra))


def fill(path: Path) -> None:
    """Write zeros to `path` until its volume is full, to the last block."""
    with contextlib.suppress(OSError), path.open("wb") as f:
        for _ in range(1024):  # at most 64 MiB: the test's volume fills first
            f.write(b"\0" * 65536)
            f.flush()


@needs_root
def test_a_merge_refused_on_a_full_disk_is_logged_once(tmp_path: Path) -> None:
    # MERGE (and a backup's cut) on a full disk whose active file still has room fails
    # alone; each one logged "cannot start a new data file" and "merge failed": two
    # WARNING lines, 348 bytes, per request (1,000 MERGEs: 2,006 lines). Now one each.
    vol = tmp_path / "vol"  # the server's log stays outside it
    with tmpfs(vol, "4m,mode=0755"), running_server(vol, extra=["--merge-trigger", "0"]) as srv:
        with Conn(srv.port) as c, Conn(srv.port) as other:
            assert c.call("put", b"before", b"1") is True
            fill(vol / "fill")
            assert c.call("put", b"full", b"the active file still has room") is True
            refused = [c.error("merge") for _ in range(ROUNDS)]
            assert {e.name for e in refused} == {"IO_ERROR"}
            assert all("nothing changed" in e.message for e in refused)
            assert other.call("put", b"after", b"still writable") is True
            assert c.call("mget", [b"before", b"full", b"after"]) == [
                b"1",
                b"the active file still has room",
                b"still writable",
            ]
        assert srv.stop() == 0
        log = srv.log()
        assert log.count("cannot start a new data file in") == 1, log
        assert log.count("merge failed in") == 1, log
        assert "read-only" not in log
        assert len(log.splitlines()) <= 10, log


class _LogVolumeBug(Exception):
    """An exception no handler expects (a fresh type: a kind of its own)."""


def test_an_internal_error_per_request_is_one_traceback(caplog: pytest.LogCaptureFixture) -> None:
    # a bug a client hits once per request wrote "internal error" and its traceback
    # (~1 KB) per request; now one line with the traceback per type every 10 s
    caplog.set_level(logging.DEBUG, logger="bitcask.server")
    for _ in range(ROUNDS):
        try:
            raise _LogVolumeBug("boom")
        except _LogVolumeBug as exc:
            info = error_info(exc)
        assert info.name == "INTERNAL" and info.message == "internal error: _LogVolumeBug"
    mine = [r for r in caplog.records if "_LogVolumeBug" in r.getMessage()]
    assert len(mine) == 1, [r.getMessage() for r in mine]
    assert mine[0].levelno == logging.ERROR and mine[0].exc_info is not None


def test_hostile_clients_leave_no_line_per_request(tmp_path: Path) -> None:
    # every path a client can repeat without the token, or with it and bad input,
    # ROUNDS times: the log grows by nothing (Redis's own volume per client)
    with with_token(tmp_path, "--max-frame", "4096", "--http-max-header-bytes", "2048") as srv:
        before = srv.log()
        resp_auth = b"*2\r\n$4\r\nAUTH\r\n$%d\r\n%s\r\n" % (len(TOKEN), TOKEN.encode())
        with Inline(srv.port) as r:
            for _ in range(ROUNDS):
                assert str(r.cmd(b"AUTH not-the-token")).startswith("WRONGPASS")
            r.send(resp_auth)
            assert r.reply() == "OK"
            for _ in range(ROUNDS):
                assert str(r.cmd(b"NOSUCHCOMMAND a b")).startswith("ERR unknown command")
                assert str(r.cmd(b"GET")).startswith("ERR wrong number")
        head = b"GET /kv/a HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer wrong-%d\r\n\r\n"
        for i in range(ROUNDS // 10):
            with socket.create_connection(("127.0.0.1", srv.http_port), timeout=10) as s:
                s.sendall(b"".join(head % (i * 10 + j) for j in range(10)))
                s.shutdown(socket.SHUT_WR)
                with contextlib.suppress(OSError):
                    while s.recv(65536):
                        pass
        for _ in range(ROUNDS // 4):
            assert http(srv.http_port, b"GARBAGE\r\n\r\n").startswith(b"HTTP/1.1 400")
            assert http(srv.http_port, b"GET / HTTP/1.1\r\nX: " + b"a" * 4000 + b"\r\n\r\n")[
                :12
            ] in (b"HTTP/1.1 431", b"HTTP/1.1 400")
            for bad in (struct.pack(">I", 3) + b"\xc1\xc1\xc1", struct.pack(">I", 1 << 20)):
                with Conn(srv.port) as c:
                    c.send_raw(bad)
                    assert c.closed_by_peer()
            socket.create_connection(("127.0.0.1", srv.port)).close()
        assert srv.stop() == 0
        added = srv.log()[len(before) :].splitlines()
        said = [re.sub(r"\d+ connections", "N connections", ln.split(": ", 1)[1]) for ln in added]
        assert said == [
            "SIGTERM received",
            "shutting down: N connections open",
            "stopped (clean)",
        ], added
        assert TOKEN not in srv.log() and "not-the-token" not in srv.log()
        assert "wrong-" not in srv.log()


LINE = re.compile(
    r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d{3} (DEBUG|INFO|WARNING|ERROR) bitcask[\w.]*: \S"
)


def test_a_start_and_a_stop_say_each_fact_once(tmp_path: Path) -> None:
    # the start line names what an operator needs to match a log to a deployment: the
    # version that runs and whether it asks for a token (it said neither)
    with with_token(tmp_path) as srv:
        assert srv.stop() == 0
        lines = srv.log().splitlines()
        assert all(LINE.match(ln) for ln in lines), lines
        said = [ln.split(": ", 1)[1] for ln in lines]
        (start,) = [s for s in said if s.startswith("bitcask-server listening ")]
        assert f" data={tmp_path / 'data'} " in start and " sync=always " in start
        assert " auth=on " in start and f" version={bitcask.__version__} " in start
        assert sum(s.startswith("descriptors: limit ") for s in said) == 1
        for event in ("SIGTERM received", "stopped (clean)"):
            assert said.count(event) == 1, said
        assert sum(s.startswith("shutting down: ") for s in said) == 1
        assert TOKEN not in srv.log()


def test_a_client_closed_for_a_limit_is_counted_not_logged(tmp_path: Path) -> None:
    # --auth-timeout and --idle-timeout closed connections without a trace: no line
    # above DEBUG (right: a client can repeat it) and no counter either
    with with_token(tmp_path, "--auth-timeout", "0.3", "--idle-timeout", "1") as srv:
        before = srv.log()
        anonymous = [Conn(srv.port) for _ in range(3)]
        assert all(c.closed_by_peer() for c in anonymous)
        with Inline(srv.port) as r:
            assert r.cmd(b"AUTH " + TOKEN.encode()) == "OK"
            with Conn(srv.port) as idle:  # its auth deadline comes first
                assert idle.closed_by_peer()
            r.sock.settimeout(10)
            assert r.sock.recv(1) == b"", "an authenticated idle client is closed too"
        for c in anonymous:
            c.close()
        assert srv.metric("bitcask_auth_timeouts_total") == 4
        assert srv.metric("bitcask_idle_timeouts_total") == 1
        assert srv.log() == before
        assert srv.stop() == 0


def test_no_token_reaches_the_log_even_at_debug(tmp_path: Path) -> None:
    # the server's token, tokens clients sent (Redis AUTH and HELLO, the binary hello
    # and auth, an HTTP Authorization header of either scheme, an AUTH cut short at the
    # auth deadline): none of them in any line, at the most verbose level
    with with_token(tmp_path, "--log-level", "debug", "--auth-timeout", "0.5") as srv:
        with Inline(srv.port) as r:
            for cmd in (b"AUTH sent-1", b"AUTH default sent-2", b"HELLO 3 AUTH default sent-3"):
                assert str(r.cmd(cmd)).startswith("WRONGPASS")
            assert r.cmd(b"AUTH " + TOKEN.encode()) == "OK"
        with Conn(srv.port) as c:
            assert c.error("hello", {"auth": "sent-4"}).name == "AUTH_FAILED"
            assert c.error("auth", "sent-5").name == "AUTH_FAILED"
            assert c.call("auth", TOKEN) is not None
        for value in (b"Bearer sent-6", b"Basic c2VudC03", b"Bearer " + TOKEN.encode()):
            raw = b"GET /kv/a HTTP/1.1\r\nHost: x\r\nConnection: close\r\nAuthorization: "
            assert http(srv.http_port, raw + value + b"\r\n\r\n")[:12] in (
                b"HTTP/1.1 401",
                b"HTTP/1.1 404",
            )
        with Conn(srv.port) as c:  # cut short: closed at the auth deadline, logged at DEBUG
            c.send_raw(b"*2\r\n$4\r\nAUTH\r\n$10\r\nsent-8")
            assert c.closed_by_peer()
        assert srv.stop() == 0
        log = srv.log()
        assert "DEBUG" in log, "the debug level was not on"
        assert TOKEN not in log and "sent-" not in log and "c2VudC03" not in log, log


class _Buggy(asyncio.Protocol):
    def data_received(self, data: bytes) -> None:
        raise _LogVolumeBug("a bug in data_received")


async def test_an_exception_the_loop_catches_is_one_traceback(
    caplog: pytest.LogCaptureFixture,
) -> None:
    # a protocol callback that raises is caught by the event loop, which logged
    # "Fatal error: protocol.data_received() call failed." and a traceback for every
    # connection that reached it; the server's handler keeps one per kind every 10 s
    caplog.set_level(logging.DEBUG, logger="asyncio")
    loop = asyncio.get_running_loop()
    loop.set_exception_handler(loop_exception_handler)
    server = await loop.create_server(_Buggy, "127.0.0.1", 0)
    try:
        port = server.sockets[0].getsockname()[1]
        for _ in range(ROUNDS // 4):
            reader, writer = await asyncio.open_connection("127.0.0.1", port)
            writer.write(b"x")
            assert await asyncio.wait_for(reader.read(), 10) == b""  # the loop closed it
            writer.close()
    finally:
        server.close()
        await server.wait_closed()
        loop.set_exception_handler(None)
    mine = [r for r in caplog.records if r.exc_info and r.exc_info[0] is _LogVolumeBug]
    assert len(mine) == 1, [r.getMessage() for r in mine]
    assert "data_received" in mine[0].getMessage()


@pytest.mark.parametrize("level", ["debug", "info"])
def test_a_rotation_is_one_debug_line(tmp_path: Path, level: str) -> None:
    with running_server(
        tmp_path / "data", extra=["--max-file-size", "4096", "--log-level", level]
    ) as srv:
        with Conn(srv.port) as c:
            for i in range(20):
                assert c.call("put", b"k%02d" % i, b"v" * 1000) is True
            assert c.call("get", b"k00") == b"v" * 1000
        assert srv.stop() == 0
        rotated = [ln for ln in srv.log().splitlines() if " rotated in " in ln]
        files = sorted((tmp_path / "data").glob("*.data"))
        if level == "info":
            assert rotated == []
            return
        assert len(rotated) == len(files) - 1 >= 3, (rotated, files)
        assert all(" DEBUG bitcask: " in ln and " sealed at " in ln for ln in rotated)
