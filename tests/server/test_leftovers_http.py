"""HTTP request lines the adapter answered as HTTP/1.1, and HEAD refusals with a body.

On a real server: `GET /livez HTTP/2.0` and HTTP/0.9 (`GET /livez` with no version)
were answered 200 as HTTP/1.1 (llhttp takes both); HTTP/1.2 and HTTP/3.0 were a 400
"malformed". RFC 9110 15.6.6 / RFC 9112 2.3: 505 for a version the server does not
speak. An HTTP/1.1 request without a Host, or with two, was served; RFC 9112 3.2 says
400. A refusal raised while a HEAD request was parsed (414, 413, 501) carried its JSON
body after the headers: a HEAD reply never has one (RFC 9110 9.3.2). curl,
http.client and a Kubernetes-style probe (HTTP/1.1 with Host) are still served.
"""

from __future__ import annotations

import http.client as httplib
import os
import shutil
import socket
import subprocess

import pytest

from tests.server.wire import http, status_of
from tests.serverproc import ServerProcess


def _split(reply: bytes) -> tuple[int, dict[str, str], bytes]:
    head, _, body = reply.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    fields = dict(line.split(": ", 1) for line in lines[1:])
    return status_of(reply), fields, body


@pytest.mark.parametrize(
    "line",
    [
        pytest.param(b"GET /livez HTTP/2.0", id="2.0"),
        pytest.param(b"GET /livez HTTP/0.9", id="0.9"),
        pytest.param(b"GET /livez", id="no-version"),
        pytest.param(b"GET /livez HTTP/3.0", id="3.0"),
        pytest.param(b"GET /livez HTTP/1.2", id="1.2"),
    ],
)
def test_unsupported_version_is_505(shared: ServerProcess, line: bytes) -> None:
    status, fields, body = _split(http(shared.http_port, line + b"\r\nHost: t\r\n\r\n"))
    assert status == 505
    assert fields["connection"] == "close"
    assert b"is not supported: this server speaks HTTP/1.1" in body
    # HEAD: the same status, no body
    head = line.replace(b"GET", b"HEAD", 1) + b"\r\nHost: t\r\n\r\n"
    status, fields, body = _split(http(shared.http_port, head))
    assert (status, body) == (505, b"")
    assert int(fields["content-length"]) > 0


@pytest.mark.parametrize(
    ("hosts", "what"),
    [
        pytest.param(b"", b"no Host header", id="none"),
        pytest.param(b"Host: a\r\nHost: b\r\n", b"more than one Host header", id="two"),
        pytest.param(b"Host: a b\r\n", b"an invalid Host header", id="invalid"),
        pytest.param(b"Host: a/b\r\n", b"an invalid Host header", id="slash"),
    ],
)
def test_http11_without_exactly_one_valid_host_is_400(
    shared: ServerProcess, hosts: bytes, what: bytes
) -> None:
    reply = http(shared.http_port, b"GET /livez HTTP/1.1\r\n" + hosts + b"\r\n")
    status, fields, body = _split(reply)
    assert status == 400
    assert b"HTTP/1.1 request with " + what in body
    assert fields["connection"] == "close"


@pytest.mark.parametrize(
    "host",
    [b"Host: 10.0.0.5:8080\r\n", b"Host: [::1]:7380\r\n", b"Host: \r\n", b"Host: db.local\r\n"],
)
def test_valid_hosts_and_http10_without_host_are_served(shared: ServerProcess, host: bytes) -> None:
    raw = b"GET /livez HTTP/1.1\r\n" + host + b"Connection: close\r\n\r\n"
    assert _split(http(shared.http_port, raw))[::2] == (200, b"ok\n")
    assert _split(http(shared.http_port, b"GET /livez HTTP/1.0\r\n\r\n"))[::2] == (200, b"ok\n")


@pytest.mark.parametrize(
    ("raw", "status"),
    [
        pytest.param(b"HEAD /kv/" + b"k" * 70_000 + b" HTTP/1.1\r\nHost: t\r\n\r\n", 414, id="url"),
        pytest.param(
            b"HEAD /livez HTTP/1.1\r\nHost: t\r\nContent-Length: 99999999999\r\n\r\n",
            413,
            id="length",
        ),
        pytest.param(
            b"HEAD /livez HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: gzip\r\n\r\n", 501, id="coding"
        ),
        pytest.param(b"HEAD /livez HTTP/1.1\r\n\r\n", 400, id="no-host"),
    ],
)
def test_refusal_of_a_head_request_has_no_body(
    shared: ServerProcess, raw: bytes, status: int
) -> None:
    got, fields, body = _split(http(shared.http_port, raw))
    assert (got, body) == (status, b"")
    assert int(fields["content-length"]) > 0  # the body a GET would have had
    assert fields["connection"] == "close"


def test_http_client_and_a_kubernetes_probe_are_served(shared: ServerProcess) -> None:
    conn = httplib.HTTPConnection("127.0.0.1", shared.http_port, timeout=10)
    try:
        conn.request("GET", "/livez")
        resp = conn.getresponse()
        assert (resp.status, resp.read()) == (200, b"ok\n")
        conn.request("HEAD", "/readyz")
        resp = conn.getresponse()
        assert (resp.status, resp.read()) == (200, b"")
    finally:
        conn.close()
    # what kubelet's httpGet probe sends (pkg/probe/http): HTTP/1.1, Host is the pod IP
    probe = (
        b"GET /readyz HTTP/1.1\r\nHost: 10.244.0.7:%d\r\nUser-Agent: kube-probe/1.30\r\n"
        b"Accept: */*\r\nConnection: close\r\n\r\n" % shared.http_port
    )
    assert status_of(http(shared.http_port, probe)) == 200


def test_curl_is_served(shared: ServerProcess) -> None:
    curl = shutil.which("curl")
    if curl is None:
        if os.environ.get("CI") == "true":
            pytest.fail("curl not installed (Debian package curl)")
        pytest.skip("curl not installed (Debian package curl)")
    url = f"http://127.0.0.1:{shared.http_port}/livez"
    for flags in ([], ["--http1.0"], ["-I"]):
        done = subprocess.run(
            [curl, "-sS", "-o", "/dev/null", "-w", "%{http_code}", *flags, url],
            capture_output=True,
            timeout=30,
            check=True,
        )
        assert done.stdout == b"200", (flags, done.stderr)


def test_a_refused_version_leaves_other_clients_served(shared: ServerProcess) -> None:
    with socket.create_connection(("127.0.0.1", shared.http_port), timeout=10) as sock:
        sock.sendall(b"GET /livez HTTP/2.0\r\nHost: t\r\n\r\n")
        assert status_of(sock.recv(65536)) == 505
    assert status_of(http(shared.http_port, b"GET /livez HTTP/1.0\r\n\r\n")) == 200
