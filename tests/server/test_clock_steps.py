"""A real bitcask-server whose wall clock steps (NTP, a VM restore), over real sockets.

The server process gets a ``sitecustomize`` (first on its PYTHONPATH) that adds an
offset, read from a file at every call, to time.time() and time.time_ns(): the wall
clock steps when the test rewrites the file; time.monotonic() (asyncio's timers, the
sampler's period) is left alone, as a real step leaves CLOCK_MONOTONIC. (libfaketime
does the same from outside, but redis-server's jemalloc refuses it, so Redis's side of
a step is its source: expiries are absolute ms compared with mstime(), so a forward
step expires keys, a backward one keeps them longer, and TTL answers from the same.)

What is checked: a forward step expires keys for every command at once and active
expiry reclaims them (DBSIZE, INFO keyspace, expired_keys); a backward step keeps
them longer with their absolute expiry unchanged; after a restart the TTL commands
answer from the expiry each record carries, keys expired while the server was down
answer absent at once.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis

from tests.server.test_diskheal import get
from tests.server.test_redis_expiry import _keyspace, _poll
from tests.serverproc import ServerProcess

HOUR = 3600

SHIM = """\
import time

_PATH = {path!r}
_time, _time_ns = time.time, time.time_ns


def _offset():
    try:
        with open(_PATH) as f:
            return float(f.read() or 0)
    except (OSError, ValueError):
        return 0.0


time.time = lambda: _time() + _offset()
time.time_ns = lambda: _time_ns() + int(_offset() * 1e9)
"""


class SteppedClock:
    """The offset (seconds) the server's wall clock runs at; ``step(+HOUR)``."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.offset = 0.0
        path.write_text("0")

    def step(self, seconds: float) -> None:
        self.offset += seconds
        tmp = self.path.with_suffix(".tmp")
        tmp.write_text(repr(self.offset))
        os.replace(tmp, self.path)  # a reader sees the old offset or the new one

    def now_ms(self) -> int:
        return int((time.time() + self.offset) * 1000)


@pytest.fixture
def stepped(tmp_path: Path) -> Iterator[tuple[ServerProcess, SteppedClock]]:
    shim = tmp_path / "shim"
    shim.mkdir()
    clock = SteppedClock(tmp_path / "offset")
    (shim / "sitecustomize.py").write_text(SHIM.format(path=str(clock.path)))
    path = os.pathsep.join(p for p in (str(shim), os.environ.get("PYTHONPATH", "")) if p)
    data = tmp_path / "data"
    data.mkdir()
    srv = ServerProcess(data=data, sync="never", env={"PYTHONPATH": path})
    srv.start()
    yield srv, clock
    srv.kill()


def _client(srv: ServerProcess) -> redis.Redis:
    return redis.Redis(host="127.0.0.1", port=srv.port, socket_timeout=10, protocol=2)


def test_the_shim_steps_the_servers_clock(stepped: tuple[ServerProcess, SteppedClock]) -> None:
    srv, clock = stepped
    r = _client(srv)
    before = r.time()[0]
    clock.step(HOUR)
    assert r.time()[0] - before >= HOUR  # the test checks what it says
    r.close()


def test_a_forward_step_expires_keys_everywhere_and_active_expiry_reclaims_them(
    stepped: tuple[ServerProcess, SteppedClock],
) -> None:
    srv, clock = stepped
    r = _client(srv)
    pipe = r.pipeline(transaction=False)
    for i in range(50):
        pipe.set(f"s:{i}", "x", ex=10)
    pipe.set("long", "y", ex=2 * HOUR)
    pipe.set("plain", "z")
    pipe.execute()
    assert _keyspace(r)["expires"] == 51
    clock.step(HOUR)
    assert (r.get("s:7"), r.exists("s:7"), r.ttl("s:7"), r.pttl("s:7")) == (None, 0, -2, -2)
    assert r.mget("s:1", "long", "plain") == [None, b"y", b"z"]
    assert 0 < r.ttl("long") <= HOUR
    _poll(lambda: r.dbsize() == 2)  # only the sampler takes them out of memory
    assert r.info("stats")["expired_keys"] == 50
    assert _keyspace(r)["keys"] == 2 and _keyspace(r)["expires"] == 1
    r.close()


def test_a_backward_step_keeps_keys_longer_with_the_same_absolute_expiry(
    stepped: tuple[ServerProcess, SteppedClock],
) -> None:
    srv, clock = stepped
    r = _client(srv)
    r.set("k", "v", ex=10)
    at = r.pexpiretime("k")
    clock.step(-HOUR)
    assert r.pexpiretime("k") == at  # absolute: the step does not move it
    assert HOUR < r.ttl("k") <= HOUR + 10
    time.sleep(0.3)  # a few sampler cycles (every 100 ms): none may take k
    assert (r.get("k"), r.dbsize(), r.info("stats")["expired_keys"]) == (b"v", 1, 0)
    assert _keyspace(r)["keys"] == 1
    r.close()


def test_ttl_answers_right_after_a_restart(stepped: tuple[ServerProcess, SteppedClock]) -> None:
    srv, clock = stepped
    r = _client(srv)
    far = clock.now_ms() + 50 * HOUR * 1000 + 123
    r.set("abs", "a", pxat=far)
    r.set("rel", "b", ex=10 * HOUR)
    r.set("kept", "c", ex=10 * HOUR)
    r.set("kept", "c2", keepttl=True)
    r.set("persisted", "d", ex=10 * HOUR)
    r.persist("persisted")
    r.set("plain", "e")
    for i in range(20):
        r.set(f"short:{i}", "x", ex=60)
    before = {k: r.pexpiretime(k) for k in ("abs", "rel", "kept", "persisted", "plain")}
    r.close()
    assert srv.stop() == 0
    clock.step(2 * HOUR)  # the server is down while the short keys expire
    srv.start()
    r = _client(srv)
    assert {k: r.pexpiretime(k) for k in before} == before
    assert before["abs"] == far and before["persisted"] == before["plain"] == -1
    assert 7 * HOUR < r.ttl("rel") <= 8 * HOUR and 7 * HOUR < r.ttl("kept") <= 8 * HOUR
    assert (r.ttl("short:3"), r.pttl("short:3"), r.exists("short:3")) == (-2, -2, 0)
    assert r.mget("abs", "kept", "persisted", "short:0") == [b"a", b"c2", b"d", None]
    # DBSIZE counts the expired keys until the sampler's first pass (Redis's RDB load
    # skips them at once), which counts them in expired_keys (docs/redis.md).
    _poll(lambda: r.dbsize() == 5)
    assert r.info("stats")["expired_keys"] == 20
    assert _keyspace(r)["keys"] == 5 and _keyspace(r)["expires"] == 3
    r.close()


def test_uptime_does_not_follow_the_wall_clock(
    stepped: tuple[ServerProcess, SteppedClock],
) -> None:
    # INFO's uptime_in_seconds, /stats and /metrics read time.time() - start: an hour
    # stepped back answered -3600 (uptime_in_days -1), one forward an hour too many.
    srv, clock = stepped
    r = _client(srv)
    clock.step(-HOUR)
    info = r.info("server")
    assert 0 <= info["uptime_in_seconds"] < HOUR and info["uptime_in_days"] == 0
    clock.step(2 * HOUR)
    assert 0 <= r.info("server")["uptime_in_seconds"] < HOUR
    status, body = get(srv.http_port, "/stats")
    assert status == 200 and 0 <= json.loads(body)["server"]["uptime_seconds"] < HOUR
    status, body = get(srv.http_port, "/metrics")
    line = next(x for x in body.decode().splitlines() if x.startswith("bitcask_uptime_seconds "))
    assert 0 <= float(line.split()[1]) < HOUR
    r.close()


def test_the_later_write_wins_across_a_backward_step_and_a_restart(
    stepped: tuple[ServerProcess, SteppedClock],
) -> None:
    srv, clock = stepped
    r = _client(srv)
    r.mset({"k": "v1", "b": "v1"})
    clock.step(-HOUR)
    r.set("k", "v2")
    with r.pipeline(transaction=True) as tx:  # an atomic batch under the stepped clock
        tx.set("b", "v2").incr("n").execute()
    r.close()
    assert srv.stop() == 0
    clock.step(HOUR)
    srv.start()
    r = _client(srv)
    assert r.mget("k", "b", "n") == [b"v2", b"v2", b"1"]
    r.close()


def test_a_clock_before_1970_takes_every_write(
    stepped: tuple[ServerProcess, SteppedClock],
) -> None:
    # Every write answered "-ERR int too large to convert" (the record's u64 timestamp);
    # an expiry before 1970 cannot be stored: SET EX is refused as Redis refuses it
    # once now + ttl <= 0, EXPIRE stores 1 ms past the epoch (docs/redis.md).
    srv, clock = stepped
    r = _client(srv)
    clock.step(-time.time() - 200 * 86400)  # 1969-06-15
    assert r.time()[0] < 0
    assert r.set("k", "v") and r.mset({"a": "1", "b": "2"}) and r.incr("n") == 1
    assert r.append("a", "x") == 2 and r.delete("b") == 1
    with r.pipeline(transaction=True) as tx:
        assert tx.set("t", "1").incr("n").execute() == [True, 2]
    with pytest.raises(redis.ResponseError, match="invalid expire time in 'set'"):
        r.set("e", "v", ex=100)
    assert r.expire("k", 100) and r.pexpiretime("k") == 1
    assert r.mget("k", "a", "b", "n", "t", "e") == [b"v", b"1x", None, b"2", b"1", None]
    r.close()
    assert srv.stop() == 0
    srv.start()  # every record it wrote loads
    r = _client(srv)
    assert r.mget("k", "a", "b", "n", "t") == [b"v", b"1x", None, b"2", b"1"]
    r.close()
