"""Start-up of real bitcask-server processes: store failures, a full disk, descriptors, flags.

Exit 3 is "the store cannot be opened", 4 only "a port cannot be bound". The read-only
and full-disk cases mount a small tmpfs, which only root can do (the CI runs as root);
elsewhere they skip with the reason.
"""

from __future__ import annotations

import contextlib
import os
import re
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

import bitcask
from server.app import FD_RESERVE, fit_connections
from server.config import ConfigError
from tests.server.wire import Conn, RemoteError, http, status_of
from tests.serverproc import ServerProcess, free_port

IS_ROOT = hasattr(os, "geteuid") and os.geteuid() == 0
needs_root = pytest.mark.skipif(not IS_ROOT, reason="mounting a tmpfs needs root (the CI is root)")


def run_server(args: list[str], timeout: float = 30) -> subprocess.CompletedProcess[str]:
    ports = ["--port", str(free_port()), "--http-port", str(free_port())]
    env = {**os.environ, "BITCASK_DRAIN_SECONDS": "0"}
    return subprocess.run(
        [sys.executable, "-m", "server", *args, *ports],
        capture_output=True,
        text=True,
        timeout=timeout,
        env=env,
    )


def assert_store_failure(result: subprocess.CompletedProcess[str], path: object) -> None:
    assert result.returncode == 3, result.stderr
    assert "cannot listen" not in result.stderr
    assert f"store directory {path}" in result.stderr or f"store at {path}" in result.stderr


@contextlib.contextmanager
def tmpfs(where: Path, size: str, readonly: bool = False) -> Iterator[Path]:
    where.mkdir()
    opts = f"size={size}" + (",ro" if readonly else "")
    subprocess.run(["mount", "-t", "tmpfs", "-o", opts, "tmpfs", str(where)], check=True)
    try:
        yield where
    finally:
        subprocess.run(["umount", "-l", str(where)], check=False)


# ---- the store cannot be opened: exit 3 ----


def test_data_is_a_file_exits_3(tmp_path: Path) -> None:
    data = tmp_path / "a-file"
    data.write_bytes(b"not a store\n")
    result = run_server(["--data", str(data)])
    assert_store_failure(result, data)
    assert "not a directory" in result.stderr
    assert data.read_bytes() == b"not a store\n"


def test_data_under_proc_exits_3() -> None:
    if not os.path.isdir("/proc/self"):
        pytest.skip("no /proc on this system")
    result = run_server(["--data", "/proc/x"])
    assert_store_failure(result, "/proc/x")


def test_unwritable_directory_exits_3(tmp_path: Path) -> None:
    if IS_ROOT:
        pytest.skip("root ignores directory permissions: the read-only mount test covers it")
    data = tmp_path / "locked-down"
    data.mkdir(mode=0o500)
    try:
        result = run_server(["--data", str(data)])
    finally:
        data.chmod(0o700)
    assert_store_failure(result, data)
    assert "not writable" in result.stderr


@needs_root
def test_read_only_file_system_exits_3(tmp_path: Path) -> None:
    with tmpfs(tmp_path / "ro", "1m", readonly=True) as mnt:
        result = run_server(["--data", str(mnt)])
        assert_store_failure(result, mnt)
        assert "not writable" in result.stderr
        result = run_server(["--data", str(mnt / "sub")])
        assert_store_failure(result, mnt / "sub")


def test_lock_error_names_the_pid_once(server_factory: Callable[..., ServerProcess]) -> None:
    srv = server_factory(sync="never")
    assert srv.proc is not None
    result = run_server(["--data", str(srv.data)])
    assert result.returncode == 3, result.stderr
    assert "locked" in result.stderr and "cannot listen" not in result.stderr
    assert len(re.findall(rf"\b{srv.proc.pid}\b", result.stderr)) == 1, result.stderr


# ---- a full disk at start: read-only, reads served ----


@needs_root
def test_full_disk_at_start_serves_reads(tmp_path: Path) -> None:
    with tmpfs(tmp_path / "small", "512k") as mnt:
        data = mnt  # the store is the mount, so the server's log (beside it) is not on it
        with bitcask.open(data) as db:
            db.put(b"kept", b"acknowledged")
        with contextlib.suppress(OSError), (mnt / "filler").open("wb", buffering=0) as f:
            for _ in range(1024):  # 4 MiB at most: the 512 KiB tmpfs fills long before
                f.write(b"x" * 4096)
        srv = ServerProcess(data=data, sync="always")
        srv.start()
        try:
            with Conn(srv.port) as c:
                assert c.call("get", b"kept") == b"acknowledged"
                with pytest.raises(RemoteError) as err:
                    c.call("put", b"new", b"v")
                assert err.value.name == "READ_ONLY"
            health = http(
                srv.http_port, b"GET /health HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
            )
            assert status_of(health) == 503
            assert b"disk full at start" in health
            stats = http(
                srv.http_port, b"GET /stats HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
            )
            assert b'"readonly_reason": "disk full at start' in stats
            ready = http(
                srv.http_port, b"GET /readyz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
            )
            assert status_of(ready) == 503
            assert srv.stop() == 0
            assert "serving reads only: disk full at start" in srv.log()
        finally:
            srv.kill()


# ---- descriptors ----


def test_fit_connections() -> None:
    assert fit_connections(1024, 65536) == 1024
    assert fit_connections(1024, 1024) == 1024 - FD_RESERVE
    assert fit_connections(10, 10 + FD_RESERVE) == 10
    with pytest.raises(ConfigError, match="ulimit"):
        fit_connections(1024, FD_RESERVE)


@dataclass
class LimitedServer(ServerProcess):
    """A server started with RLIMIT_NOFILE lowered to (soft, hard) before exec."""

    soft: int = 100
    hard: int = 200

    def argv(self) -> list[str]:
        setlimit = (
            "import os, resource, sys; "
            f"resource.setrlimit(resource.RLIMIT_NOFILE, ({self.soft}, {self.hard})); "
            "os.execv(sys.argv[1], sys.argv[1:])"
        )
        return [sys.executable, "-c", setlimit, *super().argv()]


def connect_admitted(port: int) -> Conn:
    """A binary connection the server admitted (probe sockets of start() may linger)."""
    for _ in range(50):
        conn = Conn(port)
        conn.send("ping")
        try:  # refused: the limit's line, then a close (or a reset while our ping is unread)
            if conn.read_message()[2] is None:
                return conn
        except ConnectionError:
            pass
        conn.close()
        time.sleep(0.1)
    raise AssertionError("no connection admitted in 5 s")


def test_descriptor_limit_raised_and_connections_fitted(tmp_path: Path) -> None:
    data = tmp_path / "data"
    srv = LimitedServer(data=data, sync="always", extra=["--max-file-size", "4096"])
    srv.start()
    conns: list[Conn] = []
    flood: list[socket.socket] = []
    try:
        log = srv.wait_for_log("descriptors: ")
        cap = 200 - FD_RESERVE
        assert "descriptors: limit 200 (raised from 100)" in log, log
        assert f"max-connections {cap}" in log
        assert f"max-connections lowered to {cap}" in log
        conns = [connect_admitted(srv.port) for _ in range(cap)]
        with socket.create_connection(("127.0.0.1", srv.port), timeout=5) as refused:
            assert refused.recv(100) == b"-ERR max number of clients reached\r\n"
        # A flood past the cap, held open by the client, is refused; with every slot
        # taken, file rotations still get their descriptors and the store stays writable.
        for _ in range(100):
            flood.append(socket.create_connection(("127.0.0.1", srv.port), timeout=5))
        writer = conns[0]
        for i in range(200):
            assert writer.call("put", b"k%d" % i, b"v" * 100) is True
        assert len([p for p in data.iterdir() if p.suffix == ".data"]) > 3
        assert writer.call("stats")["readonly_reason"] is None
        assert writer.call("get", b"k0") == b"v" * 100
    finally:
        for sock in flood:
            sock.close()
        for c in conns:
            c.close()
        srv.kill()


# ---- flags ----


def test_version_and_help() -> None:
    version = subprocess.run(
        [sys.executable, "-m", "server", "--version"], capture_output=True, text=True, timeout=30
    )
    assert version.returncode == 0
    assert re.fullmatch(r"bitcask-server \S+ \(Python 3\.\S+\)\n", version.stdout)
    help_text = subprocess.run(
        [sys.executable, "-m", "server", "--help"], capture_output=True, text=True, timeout=30
    ).stdout
    flat = " ".join(help_text.split())
    assert "--sync-interval-ms" in flat and "(default 1000)" in flat
    assert "--drain-seconds" in flat and "(default 5)" in flat
