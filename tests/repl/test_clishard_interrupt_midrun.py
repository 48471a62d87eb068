"""Ctrl-C in the middle of a `bitcask` command: status 130, one line when something is
left in doubt (a write sent but not answered, a merge the server goes on with, a
backup's partial copy), no traceback; and the store's state afterwards.

A relay between the command and a real server passes the handshake both ways, then
passes the command's request to the server but holds back the reply: the request is
known to be applied when SIGINT is sent, and the command is known to be waiting.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from tests.repl.conftest import ROOT, TIMEOUT
from tests.serverproc import ServerProcess

WAIT = 30.0


class _Relay:
    """127.0.0.1:port -> the server: the first reply (hello's) goes back, none after;
    `request_seen` is set once the client sent something after that reply."""

    def __init__(self, server_port: int) -> None:
        self.server_port = server_port
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = self.listener.getsockname()[1]
        self.request_seen = threading.Event()
        self._sockets: list[socket.socket] = [self.listener]
        threading.Thread(target=self._serve, daemon=True).start()

    def _serve(self) -> None:
        try:
            client, _ = self.listener.accept()
        except OSError:
            return
        upstream = socket.create_connection(("127.0.0.1", self.server_port), WAIT)
        self._sockets += [client, upstream]
        replied = threading.Event()

        def up() -> None:
            while data := _recv(client):
                if replied.is_set():
                    self.request_seen.set()
                upstream.sendall(data)

        def down() -> None:
            first = _recv(upstream)
            replied.set()  # before the client can see it and send its request
            client.sendall(first)  # hello's reply
            while _recv(upstream):  # the command's reply: held back (dropped)
                pass

        threading.Thread(target=up, daemon=True).start()
        down()

    def close(self) -> None:
        for s in self._sockets:
            s.close()


def _recv(sock: socket.socket) -> bytes:
    try:
        return sock.recv(65536)
    except OSError:
        return b""


@pytest.fixture
def relay(server: ServerProcess) -> Iterator[_Relay]:
    r = _Relay(server.port)
    yield r
    r.close()


def _cli(env: dict[str, str], cwd: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "repl.cli", *args], capture_output=True,
                          text=True, env=env, cwd=cwd, timeout=TIMEOUT)  # fmt: skip


def _interrupt(
    argv: list[str], env: dict[str, str], cwd: Path, ready: Callable[[], bool]
) -> tuple[int, str, str]:
    """Start `bitcask ARGV`, send SIGINT once `ready()` (polled, bounded), collect it."""
    proc = subprocess.Popen(
        [sys.executable, "-m", "repl.cli", *argv],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env, cwd=cwd,
    )  # fmt: skip
    try:
        deadline = time.monotonic() + WAIT
        while time.monotonic() < deadline and not ready():
            time.sleep(0.02)
        assert ready(), f"bitcask {' '.join(argv)} never got to the point to interrupt"
        proc.send_signal(signal.SIGINT)
        out, err = proc.communicate(timeout=WAIT)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(WAIT)
    return proc.returncode, out, err


def _interrupt_when_sent(
    relay: _Relay, env: dict[str, str], cwd: Path, *args: str
) -> tuple[int, str, str]:
    """Interrupt `bitcask ARGS` once its request reached the server (and was applied)."""

    def sent() -> bool:
        if not relay.request_seen.is_set():
            return False
        time.sleep(0.2)  # the relay passed it on: let the server apply it
        return True

    argv = ["--port", str(relay.port), "--timeout", "60", *args]
    return _interrupt(argv, env, cwd, sent)


@pytest.mark.parametrize(
    ("args", "line"),
    [
        pytest.param(
            ("put", "k", "new"),
            "(error) interrupted: put was sent to 127.0.0.1:{port} and may or may not have "
            "been applied; check before running it again",
            id="put",
        ),
        pytest.param(
            ("merge",),
            "(error) interrupted: the merge goes on in 127.0.0.1:{port} (the server finishes it)",
            id="merge",
        ),
    ],
)
def test_ctrl_c_with_a_change_in_doubt_is_one_line_and_130(
    server: ServerProcess,
    relay: _Relay,
    home_env: dict[str, str],
    tmp_path: Path,
    args: tuple[str, ...],
    line: str,
) -> None:
    direct = ("--port", str(server.port))
    assert _cli(home_env, tmp_path, *direct, "put", "k", "old").returncode == 0
    assert _cli(home_env, tmp_path, *direct, "put", "other", "kept").returncode == 0
    code, out, err = _interrupt_when_sent(relay, home_env, tmp_path, *args)
    assert (code, out, err) == (130, "", line.format(port=relay.port) + "\n")
    # the store afterwards: the put was applied (the server got it), the rest intact
    expected = {"k": "new\n" if args[0] == "put" else "old\n", "other": "kept\n"}
    for key, value in expected.items():
        r = _cli(home_env, tmp_path, *direct, "--raw", "get", key)
        assert (r.returncode, r.stdout) == (0, value)


def test_ctrl_c_on_a_read_is_quiet_130(
    server: ServerProcess, relay: _Relay, home_env: dict[str, str], tmp_path: Path
) -> None:
    """Nothing is in doubt after an interrupted read: no line at all."""
    code, out, err = _interrupt_when_sent(relay, home_env, tmp_path, "get", "k")
    assert (code, out, err) == (130, "", "")


def test_ctrl_c_during_a_backup_says_nothing_was_kept(
    server: ServerProcess, home_env: dict[str, str], tmp_path: Path
) -> None:
    value = "x" * 200
    lines = "".join(json.dumps({"key": f"k{i}", "value": value}) + "\n" for i in range(20_000))
    (tmp_path / "dump.jsonl").write_text(lines)
    direct = ("--port", str(server.port))
    assert _cli(home_env, tmp_path, *direct, "import", "dump.jsonl").returncode == 0
    dest = tmp_path / "bk"
    argv = [*direct, "backup", str(dest), "--rate", "0.5"]  # its staging directory: .bk.*
    code, out, err = _interrupt(argv, home_env, ROOT, lambda: any(tmp_path.glob(".bk*")))
    assert (code, out) == (130, "")
    assert err == f"backup to {str(dest)!r} interrupted: nothing was kept (run it again)\n"
    assert not dest.exists() and not any(tmp_path.glob(".bk*"))  # nothing left behind
    r = _cli(home_env, tmp_path, *direct, "--raw", "get", "k19999")
    assert (r.returncode, r.stdout) == (0, "x" * 200 + "\n")


def test_ctrl_c_on_a_write_in_the_shell_says_it_may_have_been_applied(
    server: ServerProcess, home_env: dict[str, str]
) -> None:
    """The interactive shell (a real pty): the server hangs (SIGSTOP) under a put, Ctrl-C
    cancels it and says the put may have been applied; the shell stays, and the put
    is indeed applied or not, nothing else."""
    from tests.repl.test_shell_e2e import Screen

    s = Screen(server.port, home_env)
    try:
        s.prompt()
        s.run("put a 1", "OK")
        s.prompt()
        assert server.proc is not None
        os.kill(server.proc.pid, signal.SIGSTOP)
        try:
            s.child.send("put a 2\r")
            s.expect(r"put a 2\n")  # accepted: the command is running
            time.sleep(0.3)
            s.child.send("\x03")
            s.expect(
                rf"\(error\) interrupted: put was sent to 127\.0\.0\.1:{server.port} and may "
                r"or may not have been applied; check before running it again"
            )
        finally:
            os.kill(server.proc.pid, signal.SIGCONT)
        s.prompt()
        s.run("put b 3", "OK")  # the shell goes on
    finally:
        s.close()
    r = _cli(home_env, ROOT, "--port", str(server.port), "--raw", "mget", "a", "b")
    assert r.returncode == 0 and r.stdout in ("1\n3\n", "2\n3\n"), r.stdout
