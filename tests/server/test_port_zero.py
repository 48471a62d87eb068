"""--port 0 / --http-port 0: the kernel picks free ports, and every report of the
port says the one bound (INFO's tcp_port, stats' server.port), not 0."""

from __future__ import annotations

import json
import re
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import msgpack

LISTENING = re.compile(rb"listening binary=127\.0\.0\.1:(\d+) http=127\.0\.0\.1:(\d+)")


def _ask(port: int, data: bytes, until: bytes) -> bytes:
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        sock.sendall(data)
        got = b""
        while until not in got:
            chunk = sock.recv(65536)
            assert chunk, got
            got += chunk
    return got


def test_the_ports_picked_for_port_zero_are_the_ones_reported(tmp_path: Path) -> None:
    argv = [sys.executable, "-m", "server", "--data", str(tmp_path / "db"), "--port", "0",
            "--http-port", "0", "--drain-seconds", "0"]  # fmt: skip
    proc = subprocess.Popen(argv, stderr=subprocess.PIPE, stdout=subprocess.DEVNULL)
    try:
        assert proc.stderr is not None
        line, deadline = b"", time.monotonic() + 20
        while not LISTENING.search(line) and time.monotonic() < deadline:
            line = proc.stderr.readline()
            assert line, "the server exited before listening"
        found = LISTENING.search(line)
        assert found is not None, line
        port, http_port = int(found.group(1)), int(found.group(2))
        assert port and http_port and port != http_port

        info = _ask(port, b"INFO server\r\n", b"uptime_in_days")
        assert f"tcp_port:{port}\r\n".encode() in info, info

        body = msgpack.packb([0, 1, "stats", []])
        reply = _ask(port, len(body).to_bytes(4, "big") + body, b"http_port")
        stats = msgpack.unpackb(reply[4:])[3]
        assert (stats["server"]["port"], stats["server"]["http_port"]) == (port, http_port)

        with urllib.request.urlopen(f"http://127.0.0.1:{http_port}/stats", timeout=10) as resp:
            server = json.loads(resp.read())["server"]
        assert (server["port"], server["http_port"]) == (port, http_port)
    finally:
        proc.terminate()
        proc.wait(timeout=20)
