"""/metrics and /stats: labels from a fixed set, unique families, errors and process metrics.

The page is parsed with prometheus_client's own text parser, the one a scrape would use.
"""

from __future__ import annotations

import http.client
import json
import os
import socket
from collections.abc import Callable

import pytest
from prometheus_client.parser import text_string_to_metric_families

from server._metrics import LABELS, OTHER, Histogram, Metrics, process_metrics, route_label
from tests.server.wire import Conn, RemoteError, status_of
from tests.server.wire import http as raw_http
from tests.serverproc import ServerProcess


def get(conn: http.client.HTTPConnection, path: str, token: str | None = None) -> tuple[int, bytes]:
    headers = {} if token is None else {"Authorization": f"Bearer {token}"}
    conn.request("GET", path, headers=headers)
    resp = conn.getresponse()
    return resp.status, resp.read()


def scrape(srv: ServerProcess) -> str:
    conn = http.client.HTTPConnection("127.0.0.1", srv.http_port, timeout=10)
    try:
        status, body = get(conn, "/metrics")
    finally:
        conn.close()
    assert status == 200
    return body.decode()


def samples(text: str) -> list[str]:
    return [line for line in text.splitlines() if line and not line.startswith("#")]


def error_count(text: str, method: str, code: str) -> float:
    for family in text_string_to_metric_families(text):
        if family.name != "bitcask_request_errors":
            continue
        for s in family.samples:
            if s.labels == {"method": method, "code": code}:
                return s.value
    return 0.0


# ---- units ----


@pytest.mark.parametrize(
    ("path", "label"),
    [
        pytest.param(b"/kv/secret-key", "kv", id="kv-key-dropped"),
        pytest.param(b"/readyz", "readyz", id="probe"),
        pytest.param(b"/metrics/", "metrics", id="trailing-slash"),
        pytest.param(b"/", OTHER, id="root"),
        pytest.param(b"/no/such/route", OTHER, id="unknown"),
        pytest.param(b"/kvx", OTHER, id="prefix-only"),
        pytest.param(b"/\xff\xfe", OTHER, id="binary"),
    ],
)
def test_route_label(path: bytes, label: str) -> None:
    assert route_label(path) == label


def test_labels_outside_the_set_count_as_other() -> None:
    m = Metrics()
    m.request("get", 0.001)
    for i in range(100):
        m.request(f"made-up-{i}", 0.001, "UNKNOWN_METHOD")
    m.requests_done("not-a-method", 0.001, 5)
    assert m.requests == {"get": 1, OTHER: 105}
    assert m.errors == {(OTHER, "UNKNOWN_METHOD"): 100}
    text = m.render({}, ready=True)
    assert "made-up" not in text and "not-a-method" not in text
    assert {"get", "put", "kv", "health", OTHER} <= LABELS


def test_histogram_render_is_cumulative() -> None:
    h = Histogram((1, 2))
    for v in (0.5, 1.5, 1.7, 9):
        h.observe(v)
    assert h.render("x") == [
        'x_bucket{le="1"} 1',
        'x_bucket{le="2"} 3',
        'x_bucket{le="+Inf"} 4',
        "x_sum 12.7",
        "x_count 4",
    ]


@pytest.mark.skipif(not os.path.isdir("/proc/self/fd"), reason="process metrics read /proc")
def test_process_metrics_read_proc() -> None:
    found = {name: (kind, value) for name, kind, _, value in process_metrics()}
    assert set(found) == {
        "process_cpu_seconds_total",
        "process_virtual_memory_bytes",
        "process_resident_memory_bytes",
        "process_start_time_seconds",
        "process_open_fds",
        "process_max_fds",
    }
    assert found["process_cpu_seconds_total"][0] == "counter"
    assert found["process_resident_memory_bytes"][1] > 0
    assert found["process_open_fds"][1] >= 3


def test_process_metrics_without_proc(tmp_path: object) -> None:
    names = {name for name, *_ in process_metrics(proc="/nonexistent/proc")}
    assert names <= {"process_max_fds"}


# ---- against a real server ----


def test_metrics_parse_with_unique_families_and_types(server: ServerProcess) -> None:
    with Conn(server.port) as c:
        c.call("put", b"k", b"v")
        c.call("get", b"k")
    text = scrape(server)
    families = list(text_string_to_metric_families(text))
    names = [f.name for f in families]
    assert len(names) == len(set(names)), sorted(n for n in names if names.count(n) > 1)
    types = {f.name: f.type for f in families}
    expected = {
        "bitcask_requests": "counter",
        "bitcask_request_errors": "counter",
        "bitcask_request_duration_seconds": "histogram",
        "bitcask_http_responses": "counter",
        "bitcask_group_commit_requests": "histogram",
        "bitcask_fsync_duration_seconds": "histogram",
        "bitcask_group_commit_lingers": "counter",
        "bitcask_group_commit_linger_timeouts": "counter",
        "bitcask_writer_queue_depth": "gauge",
        "bitcask_connections": "gauge",
        "bitcask_connections_accepted": "counter",
        "bitcask_connections_refused": "counter",
        "bitcask_keys": "gauge",
        "bitcask_readonly": "gauge",
        "bitcask_ready": "gauge",
        "bitcask_uptime_seconds": "gauge",
        "bitcask_build_info": "gauge",
    }
    if os.path.isdir("/proc/self/fd"):
        expected |= {
            "process_cpu_seconds": "counter",
            "process_resident_memory_bytes": "gauge",
            "process_virtual_memory_bytes": "gauge",
            "process_open_fds": "gauge",
            "process_max_fds": "gauge",
            "process_start_time_seconds": "gauge",
        }
    assert {name: types.get(name) for name in expected} == expected
    by_name = {f.name: f for f in families}
    (build,) = by_name["bitcask_build_info"].samples
    assert build.value == 1 and build.labels["version"]
    methods = {s.labels["method"] for s in by_name["bitcask_requests"].samples}
    assert {"put", "get"} <= methods <= LABELS
    if "process_open_fds" in by_name:
        assert by_name["process_open_fds"].samples[0].value > 0


def test_distinct_paths_add_no_lines(server: ServerProcess) -> None:
    conn = http.client.HTTPConnection("127.0.0.1", server.http_port, timeout=10)
    try:
        assert get(conn, "/no-such-route-0")[0] == 404
        get(conn, "/stats")
        scrape(server)  # the first scrape adds the "metrics" label and status 200
        before = samples(scrape(server))
        stats_before = json.loads(get(conn, "/stats")[1])["server"]
        for i in range(1, 1001):
            assert get(conn, f"/no-such-route-{i}/x{i}")[0] == 404
        after_text = scrape(server)
        stats_raw = get(conn, "/stats")[1]
    finally:
        conn.close()
    after = samples(after_text)
    assert len(after) == len(before)
    assert "no-such-route" not in after_text
    stats_after = json.loads(stats_raw)["server"]
    assert b"no-such-route" not in stats_raw
    for section in ("requests", "errors", "http_responses"):
        assert stats_after[section].keys() == stats_before[section].keys(), section
    assert error_count(after_text, OTHER, "UNKNOWN_METHOD") >= 1001


def test_unauthenticated_key_never_reaches_metrics_or_stats(
    server_factory: Callable[..., ServerProcess],
) -> None:
    srv = server_factory(extra=["--auth", "s3cret"])
    conn = http.client.HTTPConnection("127.0.0.1", srv.http_port, timeout=10)
    try:
        assert get(conn, "/kv/secret-key-name")[0] == 401
        assert get(conn, "/kv/secret-key-name", token="wrong")[0] == 401
        status, stats = get(conn, "/stats")
        metrics = get(conn, "/metrics")[1].decode()
    finally:
        conn.close()
    assert status == 200
    assert "secret-key-name" not in metrics
    assert b"secret-key-name" not in stats
    assert error_count(metrics, "kv", "AUTH_REQUIRED") == 1
    assert error_count(metrics, "kv", "AUTH_FAILED") == 1
    errors = json.loads(stats)["server"]["errors"]
    assert errors["kv:AUTH_REQUIRED"] == 1


def test_binary_unknown_methods_share_one_label(server: ServerProcess) -> None:
    with Conn(server.port) as c:
        for i in range(20):
            with pytest.raises(RemoteError):
                c.call(f"no-such-method-{i}")
    text = scrape(server)
    assert "no-such-method" not in text
    assert error_count(text, OTHER, "UNKNOWN_METHOD") == 20


def test_http_4xx_counted_as_errors(server: ServerProcess) -> None:
    raw = {
        # Connection: close, or the server keeps the connection for its idle timeout
        400: b"GET /kv/%zz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
        405: b"PATCH /kv/k HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\nConnection: close\r\n\r\n",
        414: b"GET /kv/" + b"a" * 20_000 + b" HTTP/1.1\r\nHost: x\r\n\r\n",
    }
    for status, request in raw.items():
        assert status_of(raw_http(server.http_port, request)) == status
    malformed = raw_http(server.http_port, b"NOT HTTP AT ALL\r\n\r\n")
    assert status_of(malformed) == 400
    text = scrape(server)
    assert error_count(text, "kv", "INVALID_PARAMS") == 1  # 400
    assert error_count(text, "kv", "UNKNOWN_METHOD") == 1  # 405
    assert error_count(text, "http_error", "PROTOCOL_ERROR") == 2  # 414 and the malformed one
    statuses = {
        s.labels["code"]: s.value
        for f in text_string_to_metric_families(text)
        if f.name == "bitcask_http_responses"
        for s in f.samples
    }
    assert {"400", "405", "414"} <= set(statuses)


def test_connection_counter_and_gauge(server: ServerProcess) -> None:
    with socket.create_connection(("127.0.0.1", server.port), timeout=5):
        text = scrape(server)
    by_name = {f.name: f for f in text_string_to_metric_families(text)}
    assert by_name["bitcask_connections"].samples[0].value >= 2  # this socket + the scrape
    accepted = by_name["bitcask_connections_accepted"].samples[0]
    assert accepted.name == "bitcask_connections_accepted_total" and accepted.value >= 2
