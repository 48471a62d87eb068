"""Redis expiry over real sockets: active expiry reclaims keys in the background,
DBSIZE/INFO keyspace count as Redis does, the TTL family is exact, WATCH sees a
watched key expire, MSETNX works inside MULTI; checked against redis-server where
the answers do not depend on timing.

Waits are bounded polls (the sampler runs every 100 ms), never timing assertions.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import redis

from tests.protocol._redis_server import redis_server
from tests.serverproc import ServerProcess

TIMEOUT = 10.0
WAIT = 20.0  # seconds a poll may take before the test fails


def _client(port: int) -> redis.Redis:
    return redis.Redis(host="127.0.0.1", port=port, socket_timeout=TIMEOUT, protocol=2)


@pytest.fixture
def ours(server_factory: Callable[..., ServerProcess]) -> Iterator[redis.Redis]:
    srv = server_factory(sync="never")
    client = _client(srv.port)
    yield client
    client.close()


@pytest.fixture
def both(ours: redis.Redis, tmp_path: Path) -> Iterator[tuple[redis.Redis, redis.Redis]]:
    """(bitcask-server, redis-server), both empty."""
    with redis_server(tmp_path) as port:
        theirs = _client(port)
        yield ours, theirs
        theirs.close()


def _poll(check: Callable[[], bool]) -> None:
    deadline = time.monotonic() + WAIT
    while not check():
        assert time.monotonic() < deadline, "condition not reached in time"
        time.sleep(0.05)


def _keyspace(r: redis.Redis) -> dict[str, int]:
    """INFO keyspace's db0 line as redis-py parses it ({} when there is none)."""
    return dict(r.info("keyspace").get("db0", {}))


def test_active_expiry_reclaims_keys_in_the_background(ours: redis.Redis) -> None:
    pipe = ours.pipeline(transaction=False)
    for i in range(300):
        pipe.set(f"short:{i}", "x", px=100)
    for i in range(10):
        pipe.set(f"long:{i}", "y", ex=1000)
        pipe.set(f"plain:{i}", "z")
    pipe.execute()
    # Nothing reads the short keys: only the sampler can take them out of memory.
    _poll(lambda: ours.dbsize() == 20)
    assert _keyspace(ours)["expires"] == 10
    info = ours.info("stats")
    assert info["expired_keys"] == 300
    # avg_ttl: the sampler's estimate from the live keys it met (ms), as in Redis
    _poll(lambda: 0 < _keyspace(ours)["avg_ttl"] <= 1_000_000)
    assert ours.get("long:3") == b"y" and ours.get("plain:3") == b"z"


def test_dbsize_counts_expired_keys_until_reclaimed_as_redis(ours: redis.Redis) -> None:
    ours.set("k", "v", px=1)
    ours.set("p", "v")
    # DBSIZE may still count k (not yet reclaimed), never more; EXISTS never does.
    assert ours.dbsize() in (1, 2)
    _poll(lambda: ours.exists("k") == 0)
    _poll(lambda: ours.dbsize() == 1)
    assert _keyspace(ours) == {"keys": 1, "expires": 0, "avg_ttl": 0}


def test_keyspace_line_agrees_with_redis(both: tuple[redis.Redis, redis.Redis]) -> None:
    for r in both:
        assert _keyspace(r) == {}, "no line for an empty database"
        r.set("a", "1", ex=1000)
        r.set("b", "2", px=5_000_000)
        r.set("c", "3")
    got = [_keyspace(r) for r in both]
    assert [list(g) for g in got] == [["keys", "expires", "avg_ttl"]] * 2
    assert [(g["keys"], g["expires"]) for g in got] == [(3, 2), (3, 2)]
    assert all(0 <= g["avg_ttl"] <= 5_000_000 for g in got)
    assert both[0].info("stats")["expired_keys"] == both[1].info("stats")["expired_keys"] == 0


def test_ttl_family_is_exact(both: tuple[redis.Redis, redis.Redis]) -> None:
    at = int(time.time() * 1000) + 100_000_123
    for r in both:
        r.set("k", "v", pxat=at)
        r.set("n", "v")
    for r in both:
        assert r.pexpiretime("k") == at
        assert r.expiretime("k") == (at + 500) // 1000
        assert 100_000_123 - 60_000 < r.pttl("k") <= 100_000_123
        assert r.ttl("k") in range(100_000 - 60, 100_001)
        assert (r.pttl("n"), r.ttl("n"), r.pexpiretime("n")) == (-1, -1, -1)
        assert (r.pttl("none"), r.expiretime("none")) == (-2, -2)


def test_watch_sees_a_watched_key_expire(both: tuple[redis.Redis, redis.Redis]) -> None:
    for r in both:
        r.set("w", "1", px=200)
        with r.pipeline() as pipe:
            pipe.watch("w")
            _poll(lambda r=r: r.exists("w") == 0)  # type: ignore[misc]
            pipe.multi()
            pipe.set("x", "1")
            with pytest.raises(redis.WatchError):
                pipe.execute()
        assert r.get("x") is None


def test_reclaiming_a_key_already_expired_at_watch_is_no_change(
    both: tuple[redis.Redis, redis.Redis],
) -> None:
    for r in both:
        r.set("w", "1", px=1)
        _poll(lambda r=r: r.exists("w") == 0)  # type: ignore[misc]
        with r.pipeline() as pipe:
            pipe.watch("w")
            time.sleep(0.3)  # let both samplers run (reclaiming w, if not yet done)
            pipe.multi()
            pipe.set("x", "1")
            assert pipe.execute() == [True]


def test_msetnx_inside_multi(both: tuple[redis.Redis, redis.Redis]) -> None:
    replies = []
    for r in both:
        with r.pipeline(transaction=True) as pipe:
            pipe.msetnx({"a": "1", "b": "2"})
            pipe.msetnx({"b": "3", "c": "4"})
            pipe.mget("a", "b", "c")
            replies.append(pipe.execute())
    assert replies[0] == replies[1] == [True, False, [b"1", b"2", None]]
