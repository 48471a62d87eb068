"""SIGTERM drains first: /readyz answers 503 while everything else is still served.

A real server process gets a drain delay far longer than the test needs; the test probes
during it, then a second SIGTERM ends the delay (no test waits on a clock). One test lets
a short delay run out by itself.
"""

from __future__ import annotations

import asyncio
import http.client
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Awaitable, Callable
from pathlib import Path

import pytest

import bitcask
from server import ConfigError, Server, ServerConfig
from tests.server.wire import Conn
from tests.serverproc import ServerProcess

LONG_DRAIN = "60"  # ended by the second SIGTERM long before
WAIT = 10.0  # bound of every polling loop here


def http_get(port: int, path: str, conn: http.client.HTTPConnection | None = None) -> int:
    own = conn is None
    c = conn or http.client.HTTPConnection("127.0.0.1", port, timeout=5)
    try:
        c.request("GET", path)
        resp = c.getresponse()
        resp.read()
        return resp.status
    finally:
        if own:
            c.close()


def wait_until(check: Callable[[], bool], what: str) -> None:
    deadline = time.monotonic() + WAIT
    while not check():
        assert time.monotonic() < deadline, f"not within {WAIT}s: {what}"
        time.sleep(0.02)


def writer_loop(port: int, acked: dict[bytes, bytes], stop: threading.Event) -> None:
    """Puts until stopped or refused; records every acknowledged write."""
    try:
        with Conn(port, timeout=10) as c:
            i = 0
            while not stop.is_set():
                key, value = b"drain:%d" % i, b"v%d" % i
                i += 1
                if c.call("put", key, value) is True:
                    acked[key] = value
    except Exception:  # refused or closed by the stop after the drain
        return


def test_sigterm_drains_then_exits_clean(server_factory: Callable[..., ServerProcess]) -> None:
    srv = server_factory(sync="always", extra=["--drain-seconds", LONG_DRAIN])
    assert srv.proc is not None
    keepalive = http.client.HTTPConnection("127.0.0.1", srv.http_port, timeout=5)
    assert http_get(srv.http_port, "/readyz", keepalive) == 200
    acked: dict[bytes, bytes] = {}
    stop = threading.Event()
    writer = threading.Thread(target=writer_loop, args=(srv.port, acked, stop))
    writer.start()
    try:
        wait_until(lambda: len(acked) >= 20, "writes acknowledged before SIGTERM")
        srv.proc.send_signal(signal.SIGTERM)
        wait_until(lambda: http_get(srv.http_port, "/readyz") == 503, "/readyz 503")
        # Draining: not ready, but alive and serving on both ports, new connections too.
        assert http_get(srv.http_port, "/readyz", keepalive) == 503
        assert http_get(srv.http_port, "/livez", keepalive) == 200
        assert http_get(srv.http_port, "/livez") == 200
        with Conn(srv.port) as fresh:
            assert fresh.call("put", b"during-drain", b"yes") is True
            assert fresh.call("get", b"during-drain") == b"yes"
        count = len(acked)
        wait_until(lambda: len(acked) > count + 10, "writes still acknowledged while draining")
        assert srv.proc.poll() is None
        srv.proc.send_signal(signal.SIGTERM)  # the second one ends the drain
        code = srv.proc.wait(30)
    finally:
        stop.set()
        writer.join(10)
        keepalive.close()
    assert code == 0, srv.log()
    log = srv.log()
    assert "draining: /readyz answers 503" in log and "drain ended" in log
    assert "stopped (clean)" in log
    with bitcask.open(srv.data, sync="never") as db:
        assert db.get(b"during-drain") == b"yes"
        lost = [k for k, v in acked.items() if db.get(k) != v]
    assert not lost, f"{len(lost)} of {len(acked)} acknowledged writes lost"


def test_drain_delay_runs_out_by_itself(server_factory: Callable[..., ServerProcess]) -> None:
    srv = server_factory(sync="never", extra=["--drain-seconds", "0.5"])
    assert srv.proc is not None
    srv.proc.send_signal(signal.SIGTERM)
    try:
        code = srv.proc.wait(30)
    except subprocess.TimeoutExpired:
        srv.kill()
        raise
    assert code == 0, srv.log()
    assert "draining" in srv.log() and "stopped (clean)" in srv.log()


def test_sigint_skips_the_drain(server_factory: Callable[..., ServerProcess]) -> None:
    srv = server_factory(sync="never", extra=["--drain-seconds", LONG_DRAIN])
    assert srv.stop(signal.SIGINT, timeout=30) == 0
    assert "draining" not in srv.log()


async def test_stop_with_drain_keeps_serving_until_cut(
    inproc: Callable[..., Awaitable[Server]],
) -> None:
    srv = await inproc(sync="never")
    stopping = asyncio.create_task(srv.stop(drain=60))
    await asyncio.sleep(0)
    assert srv.not_ready_reason() == "shutting down"
    assert not srv.draining  # listeners still open: the drain delay

    def use_both_ports() -> tuple[int, int, object]:
        with Conn(srv.port) as c:
            put = c.call("put", b"k", b"v")
        return http_get(srv.http_port, "/readyz"), http_get(srv.http_port, "/livez"), put

    assert await asyncio.to_thread(use_both_ports) == (503, 200, True)
    assert srv.cut_drain() is True
    assert await asyncio.wait_for(stopping, 30) is True
    assert srv.cut_drain() is False


def test_drain_seconds_flag_env_and_default() -> None:
    assert ServerConfig().drain_seconds == 5.0
    assert ServerConfig.from_args([], env={"BITCASK_DRAIN_SECONDS": "2.5"}).drain_seconds == 2.5
    assert ServerConfig.from_args(["--drain-seconds", "0"], env={}).drain_seconds == 0.0
    for bad in ("-1", "inf", "nan"):
        with pytest.raises(ConfigError, match="drain-seconds"):
            ServerConfig.from_args(["--drain-seconds", bad], env={})


# A server whose start-up receives a signal before its ports open: the signal handlers
# must already be in place (found by a loaded run: a SIGINT sent as soon as the port
# accepted connections met Python's default handler).
_SIGNAL_DURING_START = """
import os, signal, sys
from server import app, cli

start = app.Server.start

async def start_after_a_signal(self):
    os.kill(os.getpid(), getattr(signal, sys.argv[1]))
    await start(self)

app.Server.start = start_after_a_signal
sys.exit(cli.main(sys.argv[2:]))
"""


@pytest.mark.parametrize("sig", ["SIGTERM", "SIGINT"])
def test_a_signal_during_start_up_stops_the_server_cleanly(tmp_path: Path, sig: str) -> None:
    data = tmp_path / "data"
    data.mkdir()
    with bitcask.open(data) as db:
        db.put(b"k", b"v")
    # no drain either: nothing was routed to a server that never listened (Kubernetes
    # deleting a pod still recovering its store: the drain spent the grace period, and
    # the SIGKILL could land before the hint files were written)
    args = ["--data", str(data), "--port", "0", "--http-port", "0", "--drain-seconds", "600"]
    proc = subprocess.run(
        [sys.executable, "-c", _SIGNAL_DURING_START, sig, *args],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 0, proc.stderr
    assert f"{sig} received" in proc.stderr and "stopped (clean)" in proc.stderr, proc.stderr
    assert "draining" not in proc.stderr, proc.stderr
    assert "Traceback" not in proc.stderr
    with bitcask.open(data) as db:
        recovery = db.stats()["recovery"]
        assert db.get(b"k") == b"v"
        assert recovery["scanned_files"] == recovery["truncated_bytes"] == 0, recovery
