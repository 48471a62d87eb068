"""bitcask-server under the limits a container platform sets: few descriptors
(`ulimit -n`, `prlimit --nofile`), a memory cap (`ulimit -v`), a stuck stop.

The start-up log says what is in force, hitting a limit is a refusal, and a stop
under memory pressure still closes the store: the forced-exit watchdog's thread was
started at SIGTERM, which a process at its `ulimit -v` could not do (a traceback, the
store never closed, exit 1), and so was the thread that joins the default executor
at exit (a traceback and exit 1 after "stopped (clean)").
"""

from __future__ import annotations

import http.client
import json
import signal
import subprocess
import sys
import time
from pathlib import Path

import bitcask
from tests.protocol._redis_server import require_binary
from tests.server.test_container_probes import get
from tests.server.wire import Conn
from tests.serverproc import ServerProcess, free_port

WAIT = 30.0  # bound of every child process and polling loop here


def _args(data: Path, *extra: str) -> list[str]:
    return [
        "--data", str(data), "--port", str(free_port()), "--http-port", str(free_port()),
        "--drain-seconds", "0", *extra,
    ]  # fmt: skip


def _patched_server(data: Path, script: str) -> ServerProcess:
    """A started server whose process runs `script` (a patch, then cli.main)."""
    srv = ServerProcess(data=data)
    srv.argv = lambda: [  # type: ignore[method-assign]
        sys.executable, "-c", script,
        "--data", str(data), "--port", str(srv.port), "--http-port", str(srv.http_port),
    ]  # fmt: skip
    return srv.start()


def test_too_few_descriptors_is_one_line_and_exit_2(tmp_path: Path) -> None:
    prlimit = require_binary("prlimit", "util-linux")
    proc = subprocess.run(
        [prlimit, "--nofile=64:64", sys.executable, "-m", "server", *_args(tmp_path / "d")],
        capture_output=True,
        text=True,
        timeout=WAIT,
    )
    assert proc.returncode == 2, proc.stderr
    lines = proc.stderr.splitlines()
    assert len(lines) == 1 and "raise `ulimit -n` above 64" in lines[0], proc.stderr


def test_a_low_descriptor_limit_caps_connections_and_says_so(tmp_path: Path) -> None:
    prlimit = require_binary("prlimit", "util-linux")
    srv = ServerProcess(data=tmp_path / "data", extra=["--max-connections", "5000"])
    argv = srv.argv
    srv.argv = lambda: [prlimit, "--nofile=80:80", *argv()]  # type: ignore[method-assign]
    srv.start()
    try:
        log = srv.wait_for_log("descriptors: ")
        assert "max-connections 5000 needs 5064 descriptors, the limit is 80" in log
        assert "descriptors: limit 80, max-connections 16, 64 kept for the store" in log
        clients = []
        try:
            for _ in range(16):
                clients.append(Conn(srv.port))
                assert clients[-1].call("ping") is not None
            with Conn(srv.port) as over:  # refused in a line, not a reset
                assert over.closed_by_peer()
                assert over.buf.startswith(b"-ERR max number of clients reached")
            assert get(srv.http_port, "/livez")[0] == 200
            assert clients[0].call("put", b"k", b"v") is True
        finally:
            for c in clients:
                c.close()
        with Conn(srv.port) as c:
            assert c.call("get", b"k") == b"v"
    finally:
        assert srv.stop() == 0, srv.log()


# After start-up no thread can be started any more, as in a process at its ulimit -v.
_NO_THREADS_AFTER_START = """
import sys, threading
from server import app, cli

start = app.Server.start

async def start_then_no_threads(self):
    await start(self)
    original = threading.Thread.start
    def refuse(thread):
        if thread.name.startswith("bitcask-stop-watchdog"):
            return original(thread)
        raise RuntimeError("can't start new thread")
    threading.Thread.start = refuse

app.Server.start = start_then_no_threads
sys.exit(cli.main(sys.argv[1:]))
"""


def test_a_stop_that_cannot_start_a_thread_still_closes_the_store(tmp_path: Path) -> None:
    data = tmp_path / "data"
    srv = _patched_server(data, _NO_THREADS_AFTER_START)
    with Conn(srv.port) as c:
        assert c.call("put", b"k", b"v") is True
    code = srv.stop(signal.SIGTERM)
    log = srv.log()
    assert code == 0, log
    assert "stopped (clean)" in log and "Traceback" not in log, log
    with bitcask.open(data) as db:
        assert db.get(b"k") == b"v"
        assert db.stats()["recovery"]["scanned_files"] == 0  # hints were written


_STUCK_STOP = """
import sys, time
from server import app, cli

async def stuck_stop(self, drain=0.0):
    time.sleep(600)  # the event loop itself is stuck

app.Server.stop = stuck_stop
sys.exit(cli.main(sys.argv[1:]))
"""


def test_a_stuck_stop_is_forced_out_after_its_budget(tmp_path: Path) -> None:
    data = tmp_path / "data"
    args = _args(data, "--shutdown-timeout", "0.1")
    proc = subprocess.Popen(
        [sys.executable, "-c", _STUCK_STOP, *args], stderr=subprocess.PIPE, text=True
    )
    try:
        deadline = time.monotonic() + WAIT
        port = int(args[args.index("--http-port") + 1])
        while True:
            try:
                if get(port, "/livez")[0] == 200:
                    break
            except OSError:
                pass
            assert time.monotonic() < deadline and proc.poll() is None
            time.sleep(0.05)
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=WAIT)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(WAIT)
    assert proc.returncode == 1, err
    assert "shutdown exceeded its budget: forcing exit" in err


_NO_THREADS_AT_ALL = """
import sys, threading
from server import cli

def refuse(thread):
    raise RuntimeError("can't start new thread")

threading.Thread.start = refuse
sys.exit(cli.main(sys.argv[1:]))
"""


def test_no_memory_for_a_thread_at_start_is_one_line_and_exit_1(tmp_path: Path) -> None:
    # prlimit --as=200000000 on a 2-core test machine: the writer's thread could not
    # start, and the server died in a 20-line traceback
    proc = subprocess.run(
        [sys.executable, "-c", _NO_THREADS_AT_ALL, *_args(tmp_path / "data")],
        capture_output=True,
        text=True,
        timeout=WAIT,
    )
    assert proc.returncode == 1, proc.stderr
    assert "Traceback" not in proc.stderr, proc.stderr
    assert "cannot start: out of memory (can't start new thread)" in proc.stderr


# A body whose buffer cannot grow past 1 MiB, as at the process's ulimit -v.
_NO_MEMORY_PAST_1_MIB = """
import sys
from server import cli, http

on_body = http.HttpProtocol.on_body

def on_body_at_the_limit(self, body):
    if self._body_size + len(body) > 1 << 20:
        raise MemoryError
    on_body(self, body)

http.HttpProtocol.on_body = on_body_at_the_limit
sys.exit(cli.main(sys.argv[1:]))
"""


def test_a_body_the_memory_cannot_hold_is_a_503_and_nothing_else(tmp_path: Path) -> None:
    # under prlimit --as, four concurrent 60 MB PUTs were each a 500 INTERNAL with a
    # traceback in the log (DESIGN.md: no input produces INTERNAL)
    srv = _patched_server(tmp_path / "data", _NO_MEMORY_PAST_1_MIB)
    try:
        conn = http.client.HTTPConnection("127.0.0.1", srv.http_port, timeout=WAIT)
        conn.request("PUT", "/kv/big", body=b"x" * (2 << 20))
        resp = conn.getresponse()
        body = json.loads(resp.read())
        conn.close()
        assert resp.status == 503 and resp.getheader("retry-after") == "1"
        assert body["error"]["name"] == "BUSY"
        conn = http.client.HTTPConnection("127.0.0.1", srv.http_port, timeout=WAIT)
        conn.request("PUT", "/kv/small", body=b"v")
        assert conn.getresponse().status == 204
        conn.close()
        with Conn(srv.port) as c:
            assert c.call("get", b"big") is None
            assert c.call("get", b"small") == b"v"
    finally:
        assert srv.stop() == 0, srv.log()
    assert "out of memory reading an HTTP request: refused with 503 BUSY" in srv.log()
    assert "Traceback" not in srv.log()
