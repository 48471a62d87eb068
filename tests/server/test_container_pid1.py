"""bitcask-server as PID 1 of its own PID namespace, as a container runtime without an
init runs it (`unshare --pid --fork --mount-proc`), and stopped as Kubernetes stops it.

PID 1 differs from any other process in two ways that matter here: the kernel drops
every signal it has no handler for (SIGQUIT, which elsewhere dumps core, did nothing:
an image's `STOPSIGNAL SIGQUIT` then waited for the SIGKILL), and every orphan of the
namespace becomes its child (a `kubectl exec -- sh -c 'job &'`), a zombie until it is
waited for. Each test starts the real server under `unshare` and signals it by its pid
outside the namespace (unshare itself ignores SIGTERM and forwards nothing).
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

import pytest

import bitcask
from tests.protocol._redis_server import require_binary
from tests.server.wire import Conn, request
from tests.serverproc import ServerProcess

WAIT = 15.0  # bound of every polling loop and child process here


def _namespaces_unavailable() -> str | None:
    require_binary("unshare", "util-linux")
    require_binary("nsenter", "util-linux")
    probe = subprocess.run(
        ["unshare", "--pid", "--fork", "--mount-proc", "true"], capture_output=True, timeout=WAIT
    )
    if probe.returncode != 0:
        return "cannot make a PID namespace here (needs root): " + probe.stderr.decode().strip()
    return None


@pytest.fixture(scope="module")
def pid_namespaces() -> None:
    reason = _namespaces_unavailable()
    if reason is not None:
        if os.environ.get("CI") == "true":
            pytest.fail(reason + ", required under CI=true")
        pytest.skip(reason)


@dataclass
class Pid1Server(ServerProcess):
    """A server that is PID 1 of a new PID namespace; `proc` is the unshare around it."""

    def argv(self) -> list[str]:
        return ["unshare", "--pid", "--fork", "--kill-child", "--mount-proc", *super().argv()]

    @property
    def pid(self) -> int:
        """The server's pid as seen from here (unshare's only child)."""
        assert self.proc is not None
        deadline = time.monotonic() + WAIT
        while True:
            children = Path(f"/proc/{self.proc.pid}/task/{self.proc.pid}/children").read_text()
            if children.split():
                return int(children.split()[0])
            assert time.monotonic() < deadline, "unshare started no child"
            time.sleep(0.02)

    def stop(self, sig: int = signal.SIGTERM, timeout: float = WAIT) -> int:
        """Signal the server itself; its exit code (unshare exits with it)."""
        if self.proc is None:
            return 0
        os.kill(self.pid, sig)
        try:
            self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.kill()  # the whole namespace dies with unshare's child
            raise AssertionError(
                f"{signal.Signals(sig).name} did not stop it:\n{self.log()}"
            ) from None
        code = self.proc.returncode
        self.proc = None
        return code

    def kill(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            try:
                os.kill(self.pid, signal.SIGKILL)
            except (OSError, AssertionError):
                self.proc.kill()
            self.proc.wait(WAIT)
        self.proc = None


def _children(pid: int) -> dict[int, str]:
    """pid -> state letter of every child of `pid` (R, S, Z, ...)."""
    out = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:  # it ended meanwhile
            continue
        fields = stat[stat.rindex(")") + 2 :].split()
        if int(fields[1]) == pid:
            out[int(entry.name)] = fields[0]
    return out


def _server(tmp_path: Path, *extra: str) -> Pid1Server:
    data = tmp_path / "data"
    return Pid1Server(data=data, extra=list(extra)).start()


def test_orphans_it_adopts_as_pid_1_are_reaped(pid_namespaces: None, tmp_path: Path) -> None:
    # every `kubectl exec` shell that left a job behind made a zombie that stayed until
    # the pod restarted: with enough of them, the pod's pids limit refused every fork
    srv = _server(tmp_path)
    try:
        shell = subprocess.run(
            ["nsenter", "-t", str(srv.pid), "-p", "sh", "-c", "sleep 0.2 & sleep 0.2 & exit 0"],
            capture_output=True,
            timeout=WAIT,
        )
        assert shell.returncode == 0, shell.stderr
        deadline = time.monotonic() + WAIT
        while _children(srv.pid):
            assert time.monotonic() < deadline, f"left as zombies: {_children(srv.pid)}"
            time.sleep(0.05)
        with Conn(srv.port) as c:
            assert c.call("put", b"k", b"v") is True
    finally:
        assert srv.stop() == 0, srv.log()
    assert "stopped (clean)" in srv.log()


@pytest.mark.parametrize(
    "sig", [signal.SIGTERM, signal.SIGINT, signal.SIGQUIT], ids=lambda s: s.name
)
def test_every_stop_signal_stops_pid_1_cleanly(
    pid_namespaces: None, tmp_path: Path, sig: signal.Signals
) -> None:
    # SIGHUP and SIGPIPE change nothing; SIGTERM, SIGINT and SIGQUIT stop it cleanly:
    # exit 0, every write kept, hint files written (no scan at the next start)
    srv = _server(tmp_path, "--drain-seconds", "0")
    try:
        with Conn(srv.port) as c:
            assert c.call("put", b"before", b"1") is True
        for ignored in (signal.SIGHUP, signal.SIGPIPE):
            os.kill(srv.pid, ignored)
        deadline = time.monotonic() + WAIT
        while "SIGHUP ignored" not in srv.log():
            assert time.monotonic() < deadline, srv.log()
            time.sleep(0.02)
        with Conn(srv.port) as c:
            assert c.call("put", b"after", b"2") is True
            assert c.call("get", b"before") == b"1"
    finally:
        code = srv.stop(sig)
    log = srv.log()
    assert code == 0, log
    assert f"{sig.name} received" in log and "stopped (clean)" in log, log
    assert "Traceback" not in log
    with bitcask.open(tmp_path / "data") as db:
        assert sorted(db.keys()) == [b"after", b"before"]
        assert (db.get(b"before"), db.get(b"after")) == (b"1", b"2")
        assert db.stats()["recovery"]["scanned_files"] == 0


def test_sigquit_stops_cleanly_outside_a_container_too(tmp_path: Path) -> None:
    # its default there dumped core: no log line, no hints, exit -3
    srv = ServerProcess(data=tmp_path / "data").start()
    with Conn(srv.port) as c:
        assert c.call("put", b"k", b"v") is True
    assert srv.stop(signal.SIGQUIT) == 0, srv.log()
    assert "SIGQUIT received" in srv.log() and "stopped (clean)" in srv.log()


def test_a_second_sigterm_during_the_graceful_stop_exits_at_once(
    pid_namespaces: None, tmp_path: Path
) -> None:
    # a peer that reads none of its replies holds the graceful stop for half of a long
    # --shutdown-timeout; kubelet sends nothing more before SIGKILL, an operator may
    srv = _server(tmp_path, "--drain-seconds", "0", "--shutdown-timeout", "600")
    with Conn(srv.port) as c:
        assert c.call("put", b"big", b"x" * (1 << 20)) is True
    stuck = socket.create_connection(("127.0.0.1", srv.port))
    try:
        stuck.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        stuck.sendall(b"".join(request(i, "get", [b"big"]) for i in range(64)))
        os.kill(srv.pid, signal.SIGTERM)
        deadline = time.monotonic() + WAIT
        while "shutting down:" not in srv.log():
            assert time.monotonic() < deadline, srv.log()
            time.sleep(0.02)
        assert srv.stop(signal.SIGTERM) == 1
    finally:
        stuck.close()
    assert "second SIGTERM: exiting now" in srv.log(), srv.log()
    with bitcask.open(tmp_path / "data") as db:
        assert db.get(b"big") == b"x" * (1 << 20)
