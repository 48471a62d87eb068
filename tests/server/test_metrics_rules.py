"""The whole /metrics page against the exposition rules, scraped across a server's life.

Each scrape is parsed by prometheus_client's text parser (what a scraper runs) and
checked line by line for the rules it does not enforce: one HELP and one TYPE per
family, before its samples, counters named *_total, no series twice, no NaN, histogram
buckets sorted, cumulative and ending at +Inf equal to _count. Between scrapes the
server takes writes, reads, errors of every front end, expiring keys and a merge;
every counter and histogram series seen once must still be there and never decrease.
"""

from __future__ import annotations

import http.client
import math
import re
import socket
import time
from pathlib import Path

from prometheus_client.parser import text_string_to_metric_families

from tests.server.wire import Conn, RemoteError
from tests.serverproc import ServerProcess

SAMPLE = re.compile(r"^([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(.*)\})? (\S+)$")
LE = re.compile(r',?le="([^"]*)"')

Series = dict[tuple[str, str], float]


def scrape(srv: ServerProcess) -> str:
    conn = http.client.HTTPConnection("127.0.0.1", srv.http_port, timeout=10)
    try:
        conn.request("GET", "/metrics")
        resp = conn.getresponse()
        assert resp.status == 200
        assert resp.getheader("content-type", "").startswith("text/plain; version=0.0.4")
        return resp.read().decode()
    finally:
        conn.close()


def check_page(text: str) -> tuple[Series, dict[str, str]]:
    """(series -> value, family -> type); asserts every rule of the module docstring."""
    list(text_string_to_metric_families(text))  # raises on what the parser refuses
    helps: set[str] = set()
    types: dict[str, str] = {}
    series: Series = {}
    family = ""
    assert text.endswith("\n") and "\n\n" not in text
    for line in text.splitlines():
        if line.startswith("# HELP "):
            name = line.split()[2]
            assert name not in helps, f"HELP twice: {name}"
            helps.add(name)
        elif line.startswith("# TYPE "):
            _, _, family, kind = line.split()
            assert family in helps and family not in types, f"TYPE out of place: {family}"
            assert kind != "counter" or family.endswith("_total"), f"counter {family}"
            types[family] = kind
        else:
            match = SAMPLE.match(line)
            assert match, f"not a sample line: {line!r}"
            name, labels, value = match.groups()
            suffixes = ("_bucket", "_sum", "_count") if types[family] == "histogram" else ()
            assert name == family or name in {family + s for s in suffixes}, (family, line)
            key = (name, labels or "")
            assert key not in series, f"series twice: {key}"
            series[key] = float(value)
            assert not math.isnan(series[key]), line
    for name, kind in types.items():
        if kind != "histogram":
            continue
        groups: dict[str, list[tuple[float, float]]] = {}
        for (sample, labels), value in series.items():
            if sample == name + "_bucket":
                le = LE.search(labels)
                assert le, labels
                groups.setdefault(LE.sub("", labels), []).append((float(le.group(1)), value))
        # a labelled histogram has no series until its first label is used
        assert groups or name == "bitcask_request_duration_seconds", f"{name}: no buckets"
        for rest, buckets in groups.items():
            bounds = [b for b, _ in buckets]
            counts = [n for _, n in buckets]
            assert bounds == sorted(bounds) and bounds[-1] == math.inf, (name, rest, bounds)
            assert counts == sorted(counts), f"{name}{{{rest}}} not cumulative: {counts}"
            assert series[(name + "_count", rest)] == counts[-1], (name, rest)
            assert (name + "_sum", rest) in series, (name, rest)
    return series, types


def check_growth(before: Series, after: Series, types: dict[str, str]) -> None:
    growing = {n for n, k in types.items() if k == "counter"} | {
        n + s for n, k in types.items() if k == "histogram" for s in ("_bucket", "_count")
    }
    for key, value in before.items():
        if key[0] in growing:
            assert key in after, f"series vanished: {key}"
            assert after[key] >= value, f"counter went down: {key} {value} -> {after[key]}"


def http_errors(srv: ServerProcess) -> None:
    for method, path in (
        ("PUT", "/kv/rules?ttl=bad"),
        ("GET", "/no/such/route"),
        ("POST", "/health"),
        ("GET", "/kv/a%zz"),
    ):
        conn = http.client.HTTPConnection("127.0.0.1", srv.http_port, timeout=10)
        conn.request(method, path, body=b"v")
        conn.getresponse().read()
        conn.close()
    with socket.create_connection(("127.0.0.1", srv.http_port), timeout=10) as sock:
        sock.sendall(b"FOO / HTTP/1.1\r\nHost: t\r\n\r\n")
        assert sock.recv(4096).startswith(b"HTTP/1.1 400")


def test_metrics_page_keeps_the_rules_and_counters_only_grow(server: ServerProcess) -> None:
    seen, types = check_page(scrape(server))
    with Conn(server.port) as c:
        for i in range(200):
            c.call("put", b"rules-%d" % (i % 20), b"v" * 100)
            c.call("get", b"rules-%d" % i)
        c.call("put", b"short-lived", b"v", {"ttl": 0.05})
        for bad in (("no-such-method",), ("get",)):
            try:
                c.call(*bad)
            except RemoteError:
                pass
    http_errors(server)
    after, types = check_page(scrape(server))
    check_growth(seen, after, types)
    assert after[("bitcask_request_errors_total", 'method="other",code="UNKNOWN_METHOD"')] >= 1
    time.sleep(0.1)  # the short-lived key expires
    with Conn(server.port) as c:
        assert c.call("get", b"short-lived") is None
        c.call("merge")
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:  # the merge runs in a worker thread
        final, types = check_page(scrape(server))
        if final[("bitcask_dead_bytes", "")] < after[("bitcask_dead_bytes", "")]:
            break
        time.sleep(0.05)
    check_growth(after, final, types)
    assert final[("bitcask_requests_total", 'method="merge"')] == 1


def test_every_metric_the_docs_name_exists_and_every_family_is_documented(
    server: ServerProcess,
) -> None:
    with Conn(server.port) as c:
        c.call("put", b"k", b"v")
    _, types = check_page(scrape(server))
    root = Path(__file__).resolve().parents[2] / "docs"
    named: set[str] = set()
    for doc in ("http.md", "operations.md"):
        named |= set(re.findall(r"\b((?:bitcask|process)_[a-z_]+)", (root / doc).read_text()))
    # the old name of bitcask_connections_accepted_total, named only to say so;
    # BITCASK_* environment variables lower-cased never match (the pattern is lower-case)
    named -= {"bitcask_connections_total"}
    families = set(types)
    samples = {f + s for f in families for s in ("_bucket", "_sum", "_count")}
    assert named - families - samples == set()
    assert families - named == set()
