"""docs/scaling.md's monitoring advice, followed against a real nutcracker and real
bitcask-servers: the proxy's stats port (one JSON document per connection, not HTTP,
refreshed every `--stats-interval`) names the failing shard, and each shard's own
`/metrics` gives its keys and readiness.

Loopback ports only; every process is killed when its test ends.
"""

from __future__ import annotations

import json
import signal
import socket
import time
from collections.abc import Callable
from typing import Any

from tests.serverproc import ServerProcess, free_port
from tests.sharding.conftest import Proc, Resp, RespError, nutcracker_yaml

NAMES = ("shard-a", "shard-b", "shard-c")
DOC_EXTRA = ("backlog: 1024", "preconnect: true", "server_connections: 1")
INTERVAL_MS = 200
POLLS = 100  # 0.1 s each


def _stats(port: int) -> dict[str, Any]:
    """What `nc 127.0.0.1 PORT` prints: one JSON document, then the connection closes."""
    chunks = []
    with socket.create_connection(("127.0.0.1", port), 10) as conn:
        conn.settimeout(10)
        while chunk := conn.recv(65536):
            chunks.append(chunk)
    return dict(json.loads(b"".join(chunks)))


def _poll(stats_port: int, done: Callable[[dict[str, Any]], bool]) -> dict[str, Any]:
    pool: dict[str, Any] = {}
    for _ in range(POLLS):
        pool = _stats(stats_port)["bitcask"]
        if done(pool):
            return pool
        time.sleep(0.1)
    raise AssertionError(f"the stats never showed it: {pool}")


def test_the_stats_port_and_each_shards_metrics_name_the_failing_shard(
    server_factory: Callable[..., ServerProcess], nutcracker: Callable[..., Proc]
) -> None:
    shards = {name: server_factory() for name in NAMES}
    listen, stats_port = free_port(), free_port()
    text = nutcracker_yaml("bitcask", listen, [(shards[n].port, 1, n) for n in NAMES], DOC_EXTRA)
    proxy = nutcracker(text, listen, stats_port=stats_port,
                       args=["--stats-interval", str(INTERVAL_MS)])  # fmt: skip
    keys = [b"%d:mon" % i for i in range(300)]
    conn = Resp(proxy.port)
    try:
        assert conn.pipeline([("SET", k, b"v") for k in keys]) == [b"OK"] * len(keys)
        # every shard's /metrics: its share of the keys, and ready
        assert sum(s.metric("bitcask_keys") for s in shards.values()) == len(keys)
        assert all(s.metric("bitcask_ready") == 1 for s in shards.values())
        # the stats port is not HTTP: an HTTP client without HTTP/0.9 cannot read it
        doc = _stats(stats_port)
        assert doc["service"] == "nutcracker" and set(NAMES) <= set(doc["bitcask"])
        pool = _poll(stats_port, lambda p: all(p[n]["requests"] > 0 for n in NAMES))
        assert all(pool[n]["server_err"] == 0 for n in NAMES), pool
        # shard-b killed, shard-c wedged: each shows under its own name
        shards["shard-b"].kill()
        proc = shards["shard-c"].proc
        assert proc is not None
        proc.send_signal(signal.SIGSTOP)
        try:
            replies = conn.pipeline([("GET", k) for k in keys])
        finally:
            proc.send_signal(signal.SIGCONT)
        assert any(isinstance(r, RespError) for r in replies)
        pool = _poll(
            stats_port,
            lambda p: (
                p["shard-b"]["server_err"] + p["shard-b"]["server_eof"] > 0
                and p["shard-c"]["server_timedout"] > 0
            ),
        )
        assert pool["shard-b"]["server_connections"] == 0, pool["shard-b"]
        assert pool["shard-a"]["server_err"] == pool["shard-a"]["server_timedout"] == 0
        assert pool["server_ejects"] == 0, pool
        # the dead shard's /metrics cannot be scraped: the scrape failing is the alert
        try:
            shards["shard-b"].metric("bitcask_ready")
        except OSError:
            pass
        else:
            raise AssertionError("a killed shard's /metrics answered")
        shards["shard-b"].start()
        assert shards["shard-b"].metric("bitcask_ready") == 1
        assert conn.pipeline([("GET", k) for k in keys]) == [b"v"] * len(keys)
        _poll(stats_port, lambda p: p["shard-b"]["server_connections"] == 1)
    finally:
        conn.close()
