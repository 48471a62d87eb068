"""SCAN's guarantee against bitcask-server AND a real redis-server (docs/redis.md,
section 8): a full iteration returns every key present from its start to its end at
least once, whatever happens meanwhile (writes, deletes, other iterations, the server
forgetting or losing the cursor), and a cursor is a number any client can send later.

Bounded: at most a few thousand keys and pipelined cursors; each client has a timeout.
"""

from __future__ import annotations

import random
from collections.abc import Callable, Iterator

import pytest
import redis

from server._redis_keyspace import SCAN_CURSOR_BYTES, TAG_BITS, ScanCursors, prefix_of
from tests.protocol._redis_server import redis_server
from tests.serverproc import ServerProcess

TIMEOUT = 10.0
MAX_PAGES = 10_000  # bound of every iteration loop


def _client(port: int) -> redis.Redis:
    return redis.Redis(host="127.0.0.1", port=port, socket_timeout=TIMEOUT, protocol=2)


@pytest.fixture(params=["bitcask", "redis"])
def port(
    request: pytest.FixtureRequest,
    server_factory: Callable[..., ServerProcess],
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[int]:
    if request.param == "bitcask":
        yield server_factory(sync="never").port
    else:
        with redis_server(tmp_path_factory.mktemp("redis")) as p:
            yield p


def _scan_all(r: redis.Redis, cursor: int = 0, count: int = 10, between=None) -> list[bytes]:
    seen: list[bytes] = []
    for step in range(MAX_PAGES):
        cursor, page = r.scan(cursor, count=count)
        seen.extend(page)
        if between is not None:
            between(step)
        if cursor == 0:
            return seen
    raise AssertionError("the iteration did not end")


def test_keys_present_throughout_are_returned_despite_writes_and_other_scans(
    port: int,
) -> None:
    r, other = _client(port), _client(port)
    rng = random.Random(7)
    stable = [f"user:{i:06d}".encode() for i in range(1500)]
    doomed = [f"user:{i:06d}x".encode() for i in range(0, 1500, 3)]
    r.mset({k: b"v" for k in stable + doomed})
    cursors: list[int] = []

    def meddle(step: int) -> None:
        # deletes before and after the cursor, new keys everywhere, other scans
        gone = doomed[step * 3 : step * 3 + 3]
        if gone:
            other.delete(*gone)
        other.mset({f"user:{rng.randrange(10**6):06d}n".encode(): b"n" for _ in range(5)})
        c, _ = other.scan(cursors[-1] if cursors else 0, count=7)
        cursors.append(c)

    seen = _scan_all(r, count=13, between=meddle)
    assert set(stable) <= set(seen)
    assert r.exists(*stable) == len(stable)  # meddling spared them
    r.close()
    other.close()


def test_a_cursor_pushed_out_by_others_still_continues(port: int) -> None:
    # 4,096 other iterations used to push a cursor out: it then answered `0`, no keys,
    # and the first iteration ended with 20 of 2,300 keys, without a word. Here 4,200
    # iterations start, and 300 go on after keys of 60 KB (18 MB of keys: past what
    # the server holds for its cursors, SCAN_CURSOR_BYTES).
    r = _client(port)
    keys = [f"key:{i:05d}".encode() for i in range(2000)]
    spread = [b"\x10" + i.to_bytes(2, "big") + b"x" * 60_000 for i in range(300)]
    assert len(spread) * len(spread[0]) > SCAN_CURSOR_BYTES
    for chunk in range(0, 300, 50):
        r.mset({k: b"v" for k in spread[chunk : chunk + 50]})
    r.mset({k: b"v" for k in keys})
    cursor, first = r.scan(0, count=20)
    assert cursor != 0
    with r.pipeline(transaction=False) as p:
        for _ in range(4200):  # other iterations starting
            p.scan(0, count=1)
        for key in spread:  # and going on, each from its own point
            p.scan(int.from_bytes(key[:3], "big") << TAG_BITS | 1, count=1)
        p.execute()
    rest = _scan_all(r, cursor=cursor, count=100)
    assert set(first) | set(rest) == set(keys + spread)
    r.close()


def test_a_cursor_continues_after_a_restart(server_factory: Callable[..., ServerProcess]) -> None:
    srv = server_factory(sync="always")
    r = _client(srv.port)
    keys = [f"k{i:04d}".encode() for i in range(600)]
    r.mset({k: b"v" for k in keys})
    seen: list[bytes] = []
    cursor = 0
    for _ in range(5):
        cursor, page = r.scan(cursor, count=50)
        seen.extend(page)
    r.close()
    assert cursor != 0 and len(seen) == 250
    srv.restart()
    r = _client(srv.port)
    rest = _scan_all(r, cursor=cursor, count=50)
    assert set(seen) | set(rest) == set(keys)
    assert len(rest) < len(keys) + 50  # it went on, not over from the start... twice
    r.close()


def test_cursors_are_exact_doubles_and_never_zero() -> None:
    cursors = ScanCursors(size=4)
    for key in (b"", b"\0", b"\xff" * 70, b"a", b"user:1"):
        c = cursors.new(key)
        assert 0 < c < 2**52 and float(c) == c
        assert cursors.after(c) == key
        assert prefix_of(c) <= key  # forgotten: at or before the key, never past it
    forgotten = ScanCursors().after(cursors.new(b"user:1"))
    assert forgotten == b"use"


def test_cursors_hold_a_bounded_count_and_bytes_of_keys() -> None:
    cursors = ScanCursors(size=3, nbytes=100)
    first = cursors.new(b"a" * 60)
    second = cursors.new(b"b" * 60)  # 120 bytes: the first is forgotten
    assert cursors.after(first) == b"aaa" and cursors.after(second) == b"b" * 60
    small = [cursors.new(k) for k in (b"c", b"d", b"e")]  # 3 at most: the 60 go
    assert cursors.after(second) == b"bbb"
    assert [cursors.after(c) for c in small] == [b"c", b"d", b"e"]
