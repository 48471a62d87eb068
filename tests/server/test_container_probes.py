"""The probes and /metrics through a server's life, as kubelet and Prometheus see them.

A flood of client connections used to take every slot of --max-connections, the HTTP
port's included: /livez answered 503 TOO_MANY_CONNECTIONS, so kubelet restarted the
server the flood was aimed at (and every client reconnected to do it again), and
Prometheus lost its scrapes exactly when they mattered. Past the cap, up to
PROBE_RESERVE HTTP connections are now served the probes, /metrics and /stats (one
request each) and nothing else.

One server goes through the phases an orchestrator meets: serving, at the connection
cap, an online backup open, a merge, the drain after SIGTERM. At each, every probe
answers what docs/http.md's table says, and /metrics parses (prometheus_client's
parser, test_metrics_rules.check_page) with no counter going backwards. A data
directory removed or replaced under the running server fails readiness.
"""

from __future__ import annotations

import http.client
import json
import shutil
import signal
import socket
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from server.app import PROBE_RESERVE
from tests.server.test_limits import connect_within_cap
from tests.server.test_metrics_rules import Series, check_growth, check_page
from tests.server.wire import Conn
from tests.serverproc import ServerProcess

WAIT = 10.0  # bound of every polling loop here
CAP = 4


def get(port: int, path: str) -> tuple[int, bytes]:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=WAIT)
    try:
        conn.request("GET", path)
        resp = conn.getresponse()
        return resp.status, resp.read()
    finally:
        conn.close()


class Phases:
    """Scrapes /metrics at each phase; every counter only grows across them."""

    def __init__(self, srv: ServerProcess) -> None:
        self.srv = srv
        self.seen: Series = {}

    def check(self, live: int, ready: int) -> Series:
        port = self.srv.http_port
        assert get(port, "/livez")[0] == live, self.srv.log()
        assert get(port, "/readyz")[0] == ready, self.srv.log()
        status, page = get(port, "/metrics")
        assert status == 200, page
        series, types = check_page(page.decode())
        check_growth(self.seen, series, types)
        assert series[("bitcask_ready", "")] == (1 if ready == 200 else 0)
        self.seen = series
        return series


def test_the_probes_answer_in_every_phase(server_factory: Callable[..., ServerProcess]) -> None:
    srv = server_factory(extra=["--max-connections", str(CAP), "--drain-seconds", "600"])
    phases = Phases(srv)
    phases.check(200, 200)
    clients = [connect_within_cap(srv) for _ in range(CAP)]
    try:
        for i, c in enumerate(clients):
            assert c.call("put", b"key:%d" % i, b"v%d" % i) is True

        # at the cap: a new client is refused, the probes and the scrape are not
        with Conn(srv.port) as over:
            assert over.closed_by_peer()
        series = phases.check(200, 200)
        assert series[("bitcask_connections_refused_total", "")] >= 1
        status, body = get(srv.http_port, "/kv/key:0")
        assert status == 503 and json.loads(body)["error"]["name"] == "TOO_MANY_CONNECTIONS"
        assert get(srv.http_port, "/stats")[0] == 200
        assert get(srv.http_port, "/health")[0] == 200

        # the reserve is bounded: PROBE_RESERVE silent connections hold it, the next
        # probe is refused, and once they leave the probes answer again
        holders = [
            socket.create_connection(("127.0.0.1", srv.http_port)) for _ in range(PROBE_RESERVE)
        ]
        try:
            assert get(srv.http_port, "/livez")[0] == 503
        finally:
            for s in holders:
                s.close()
        deadline = time.monotonic() + WAIT
        while get(srv.http_port, "/livez")[0] != 200:
            assert time.monotonic() < deadline, "the probe reserve was not given back"
            time.sleep(0.05)

        # an online backup open (its files pinned), then a merge
        backup = clients[0]
        backup.call("snapshot_begin")
        phases.check(200, 200)
        assert phases.seen[("bitcask_snapshots_total", "")] == 1
        clients[1].call("merge")
        phases.check(200, 200)

        # every client still has its keys, and the last slot frees for a new one
        for i, c in enumerate(clients):
            assert c.call("get", b"key:%d" % i) == b"v%d" % i
        clients.pop().close()
        with connect_within_cap(srv) as late:
            assert late.call("get", b"key:0") == b"v0"
    finally:
        for c in clients:
            c.close()

    # SIGTERM: readiness false, liveness and the scrape go on until the listeners close
    assert srv.proc is not None
    srv.proc.send_signal(signal.SIGTERM)
    deadline = time.monotonic() + WAIT
    while get(srv.http_port, "/readyz")[0] != 503:
        assert time.monotonic() < deadline, srv.log()
        time.sleep(0.02)
    phases.check(200, 503)
    assert srv.stop() == 0, srv.log()  # the second SIGTERM ends the drain
    assert "stopped (clean)" in srv.log()


def _remove(data: Path) -> None:
    shutil.rmtree(data)


def _empty(data: Path) -> None:
    for entry in data.iterdir():
        entry.unlink()


def _replace(data: Path) -> None:
    data.rename(data.with_name("old"))
    data.mkdir()


@pytest.mark.parametrize(
    "change", [_remove, _empty, _replace], ids=["rm-rf", "emptied", "replaced"]
)
def test_a_data_directory_gone_under_the_server_fails_readiness(
    server_factory: Callable[..., ServerProcess], change: Callable[[Path], None]
) -> None:
    # a volume unmounted (or `rm -rf /data/*` in a `kubectl exec`) under a running
    # server: it went on answering 200 to /readyz and acknowledging writes into
    # unlinked files that the next start never saw
    srv = server_factory()
    with Conn(srv.port) as c:
        assert c.call("put", b"k", b"v") is True
    change(srv.data)
    status, body = get(srv.http_port, "/readyz")
    assert status == 503 and b"was removed or replaced" in body, body
    assert get(srv.http_port, "/livez")[0] == 200  # a restart would not bring it back
    assert get(srv.http_port, "/readyz")[0] == 503
    with Conn(srv.port) as c:  # reads still come from the open files
        assert c.call("get", b"k") == b"v"
    assert srv.log().count("ERROR bitcask.server: the data directory") == 1, srv.log()
