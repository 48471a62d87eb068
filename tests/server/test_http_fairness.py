"""An HTTP pipelining flood does not starve the binary/Redis port.

Counted, not timed, as tests/server/test_hostile.py does for the binary port: how
many requests the server handled between two INFOs of a Redis connection while one
HTTP connection pipelines FLOOD GETs.
"""

from __future__ import annotations

import threading
from collections.abc import Callable

from tests.server.test_hostile import (
    check_good,
    start_good,
    steps_during_flood,
)
from tests.server.wire import Inline
from tests.serverproc import ServerProcess

FLOOD = 100_000  # pipelined HTTP GETs of one connection, 3.6 MB: 12 reads of 256 KiB

_ATTACKER = """
import socket, sys, threading
port, n = int(sys.argv[1]), int(sys.argv[2])
s = socket.create_connection(("127.0.0.1", port), timeout=120)
req = b"GET /kv/k HTTP/1.1\\r\\nHost: x\\r\\n\\r\\n" * 1000
t = threading.Thread(target=lambda: [s.sendall(req) for _ in range(n // 1000)], daemon=True)
t.start()
print("started", flush=True)
got, tail = 0, b""
while got < n:
    chunk = s.recv(1 << 20)
    if not chunk:
        sys.exit("closed after %d responses" % got)
    data = tail + chunk
    got += data.count(b"HTTP/1.1 2")
    tail = data[-9:] if not data[-9:].startswith(b"HTTP/1.1 ") else b""
print("done", flush=True)
"""


def test_an_http_pipeline_does_not_starve_the_redis_port(
    server_factory: Callable[..., ServerProcess],
) -> None:
    server = server_factory(sync="never")
    # The binary port yields the loop after a full read buffer that took a while
    # (ReadPause.yield_turn); the HTTP port did not: 95,881 and 117,991 of 200,000
    # pipelined HTTP GETs went by between two INFOs of a Redis connection. Now about
    # 8,300 (one 256 KiB read of requests) at most.
    stop = threading.Event()
    good = start_good(server.port, stop)
    with Inline(server.port) as c:
        assert c.cmd(b"SET k v") == "OK"
    steps = steps_during_flood(server.port, _ATTACKER, server.http_port, FLOOD)
    stop.set()
    check_good(server.port, good)
    assert sum(steps) >= FLOOD, steps
    assert max(steps) < FLOOD // 4, steps
