"""Crash safety: SIGKILL under concurrent write load (--sync always) loses no acknowledged write."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable

from tests.server.wire import Conn, RemoteError, request
from tests.serverproc import ServerProcess

ROUNDS = 10
WRITERS = 4
DEPTH = 4  # pipelined puts in flight per writer


def writer(port: int, tag: bytes, stop: threading.Event, acked: dict[bytes, bytes]) -> None:
    """Pipelined puts of unique keys; a key is recorded only once its reply said ok."""
    try:
        conn = Conn(port, timeout=5)
    except OSError:
        return
    i = 0
    inflight: list[tuple[bytes, bytes]] = []
    try:
        while not stop.is_set():
            while len(inflight) < DEPTH:
                key, value = b"%s:%d" % (tag, i), b"value-%s-%d" % (tag, i)
                conn.send_raw(request(i % 1000, "put", [key, value]))
                inflight.append((key, value))
                i += 1
            _, _, err, result = conn.read_message()
            key, value = inflight.pop(0)
            if err is None and result is True:
                acked[key] = value
    except (OSError, ConnectionError, RemoteError, AssertionError):
        pass  # the server died under us: whatever was not acknowledged may be lost
    finally:
        conn.close()


def verify(srv: ServerProcess, acked: dict[bytes, bytes]) -> None:
    keys = sorted(acked)
    with Conn(srv.port) as c:
        for start in range(0, len(keys), 1000):
            chunk = keys[start : start + 1000]
            got = c.call("mget", chunk)
            missing = [k for k, v in zip(chunk, got, strict=True) if v != acked[k]]
            assert not missing, f"{len(missing)} acknowledged writes lost, e.g. {missing[:3]}"


def test_sigkill_under_write_load(server_factory: Callable[..., ServerProcess]) -> None:
    srv = server_factory(sync="always")
    acked: dict[bytes, bytes] = {}
    for round_no in range(ROUNDS):
        stop = threading.Event()
        threads = [
            threading.Thread(
                target=writer, args=(srv.port, b"r%d-w%d" % (round_no, w), stop, acked)
            )
            for w in range(WRITERS)
        ]
        before = len(acked)
        for t in threads:
            t.start()
        deadline = time.monotonic() + 5
        while len(acked) - before < 50 and time.monotonic() < deadline:
            time.sleep(0.01)
        srv.kill()  # SIGKILL mid-load
        stop.set()
        for t in threads:
            t.join(10)
            assert not t.is_alive()
        assert len(acked) > before, f"round {round_no}: no write was acknowledged before the kill"
        srv.start()
        verify(srv, acked)
    assert "recovery" in srv.log()
