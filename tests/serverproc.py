"""Start a real bitcask-server in a child process on free loopback ports.

Used by the server, client and shell tests: they talk to it over real sockets.
Every wait here is bounded; a server that does not come up fails the test with
its own log output attached.
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

from server.cli import EXIT_BIND

START_TIMEOUT = 20.0
STOP_TIMEOUT = 20.0
BIND_ATTEMPTS = 5


_handed_out: set[int] = set()


def free_port(host: str = "127.0.0.1") -> int:
    """A port that was free a moment ago (the kernel picks it), and not one this process
    was handed before: the kernel may hand a just-freed port out again, and two calls in
    a row gave one server the same port twice ('port and http-port must differ')."""
    for _ in range(100):
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
            s.bind((host, 0))
            port = int(s.getsockname()[1])
        if port not in _handed_out:
            _handed_out.add(port)
            return port
    return port


def wait_for_port(host: str, port: int, timeout: float, proc: subprocess.Popen[bytes]) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"server exited with {proc.returncode} before listening")
        with contextlib.suppress(OSError), socket.create_connection((host, port), timeout=0.5):
            return
        time.sleep(0.05)
    raise TimeoutError(f"server did not listen on {host}:{port} within {timeout}s")


@dataclass
class ServerProcess:
    """One bitcask-server child. `start()` returns once both ports accept connections."""

    data: Path
    sync: str = "always"
    host: str = "127.0.0.1"
    port: int = 0
    http_port: int = 0
    extra: list[str] = field(default_factory=list)
    env: dict[str, str] = field(default_factory=dict)
    proc: subprocess.Popen[bytes] | None = None
    log_path: Path | None = None
    proc_code: int | None = None  # the exit code of a start that failed
    picked_http: bool = False  # this helper chose http_port (so a restart may move it)
    # the program: this interpreter's `server` package, or an installed bitcask-server
    program: list[str] = field(default_factory=lambda: [sys.executable, "-m", "server"])

    @property
    def url(self) -> str:
        return f"bitcask://{self.host}:{self.port}"

    def argv(self) -> list[str]:
        return [
            *self.program,
            "--data", str(self.data),
            "--host", self.host,
            "--port", str(self.port),
            "--http-port", str(self.http_port),
            "--sync", self.sync,
            *self.extra,
        ]  # fmt: skip

    def start(self) -> ServerProcess:
        # A port free_port() saw free can be taken before the server binds it (another
        # test's server or client: the suite runs on several workers). A server that
        # exits with EXIT_BIND on ports this helper picked is started again on new ones.
        pick = not self.port, not self.http_port
        self.picked_http = self.picked_http or pick[1]
        for attempt in range(1, BIND_ATTEMPTS + 1):
            if pick[0]:
                self.port = free_port(self.host)
            if pick[1]:
                self.http_port = free_port(self.host)
            try:
                return self._start_once()
            except RuntimeError:
                code = self.proc_code
                if code == EXIT_BIND and self.picked_http and "(--http-port)" in self.log():
                    # A restart keeps the binary port its clients know, but the HTTP port
                    # it held can be taken while it was down (a client's outgoing
                    # connection got it in one run): that one may move.
                    pick = pick[0], True
                if code != EXIT_BIND or not any(pick) or attempt == BIND_ATTEMPTS:
                    raise
        raise AssertionError("unreachable")

    def _start_once(self) -> ServerProcess:
        # beside the store: in the nearest directory that exists (a test may have the
        # server create --data and its parents)
        where = next(p for p in self.data.parents if p.is_dir())
        self.log_path = where / f"server-{self.port}.log"
        # No drain delay after SIGTERM unless a test asks (--drain-seconds beats the env).
        env = {"BITCASK_DRAIN_SECONDS": "0", **os.environ, "PYTHONUNBUFFERED": "1", **self.env}
        log = self.log_path.open("ab")
        self.proc = subprocess.Popen(
            self.argv(), stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, env=env
        )
        log.close()
        self.proc_code = None
        try:
            wait_for_port(self.host, self.port, START_TIMEOUT, self.proc)
            wait_for_port(self.host, self.http_port, START_TIMEOUT, self.proc)
            # both ports answered: make sure it was this server (not another process on a
            # port it then failed to bind)
            if self.proc.poll() is not None:
                raise RuntimeError(f"server exited with {self.proc.returncode} after listening")
        except Exception as exc:
            self.proc_code = self.proc.poll()
            self.kill()
            raise RuntimeError(f"{exc}\n--- server log ---\n{self.log()}") from exc
        return self

    def log(self) -> str:
        if self.log_path is None or not self.log_path.exists():
            return ""
        return self.log_path.read_text(errors="replace")

    def wait_for_log(self, text: str, timeout: float = START_TIMEOUT) -> str:
        """The log, once it holds `text`. start() returns when both ports answer, and
        the server writes its start-up lines (`listening`, `descriptors:`, damage
        found) just after binding them: a test reading one of those lines waits for
        it here. Raises AssertionError with the log after `timeout` seconds."""
        deadline = time.monotonic() + timeout
        while text not in (log := self.log()):
            if time.monotonic() > deadline:
                raise AssertionError(f"{text!r} not in the server log after {timeout} s:\n{log}")
            time.sleep(0.02)
        return log

    def stop(self, sig: int = signal.SIGTERM, timeout: float = STOP_TIMEOUT) -> int:
        """Send `sig` and wait; SIGKILL if it does not exit in time. Returns the exit code."""
        if self.proc is None:
            return 0
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)
        code = self.proc.returncode
        self.proc = None
        return code

    def kill(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(5)
        self.proc = None

    def restart(self) -> ServerProcess:
        self.stop()
        return self.start()

    def metric(self, name: str) -> float:
        """One unlabelled sample of the server's /metrics (its HTTP port)."""
        url = f"http://127.0.0.1:{self.http_port}/metrics"
        with urllib.request.urlopen(url, timeout=10) as page:
            for line in page.read().decode().splitlines():
                if line.startswith(name + " "):
                    return float(line.split()[1])
        raise AssertionError(f"{name} not in {url}")

    def peak_rss_bytes(self) -> int:
        """The server's peak resident set so far (VmHWM in /proc/<pid>/status; Linux)."""
        assert self.proc is not None, "the server is not running"
        with open(f"/proc/{self.proc.pid}/status") as status:
            for line in status:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) * 1024
        raise AssertionError("no VmHWM in /proc/<pid>/status")


@contextlib.contextmanager
def running_server(data: Path, **kwargs: object) -> Iterator[ServerProcess]:
    srv = ServerProcess(data=data, **kwargs)  # type: ignore[arg-type]
    srv.start()
    try:
        yield srv
    finally:
        srv.kill()


def attach_strace(
    strace: str, pid: int, call: str, inject: str, timeout: float = 15.0
) -> subprocess.Popen[bytes]:
    """``strace -f -qq -e trace=CALL -e inject=CALL:INJECT -p PID``, returned once strace
    is attached to every thread of ``pid`` (their TracerPid is strace's; -qq prints
    nothing to wait for, and a fixed sleep was outrun on a loaded machine), or once
    strace ended (an injected kill came during the attach). The caller waits for it or
    terminates it (which detaches)."""
    tracer = subprocess.Popen(
        [strace, "-f", "-qq", "-o", os.devnull, "-e", f"trace={call}",
         "-e", f"inject={call}:{inject}", "-p", str(pid)],
        stderr=subprocess.DEVNULL,
    )  # fmt: skip
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and tracer.poll() is None:
        try:
            tasks = list(Path(f"/proc/{pid}/task").iterdir())
        except FileNotFoundError:  # killed at its point and reaped: nothing to wait for
            return tracer
        tracers = set()
        for task in tasks:
            try:
                status = (task / "status").read_text()
            except OSError:  # a thread that just ended
                continue
            tracers.add(int(status.split("TracerPid:")[1].split()[0]))
        if tracers == {tracer.pid}:
            return tracer
        time.sleep(0.05)
    if tracer.poll() is None:
        tracer.kill()
        tracer.wait(10)
        raise TimeoutError(f"strace did not attach to every thread of {pid} within {timeout}s")
    return tracer
