"""What concurrent clients observe: real histories from clients of all three dialects
(binary, RESP, HTTP /kv) checked for linearizability (tests/server/_history.py), while
merges run and other keys expire, under every --sync policy; INCR under contention;
SIGKILL under mixed load (every acknowledged write survives, nothing never written
appears).
"""

from __future__ import annotations

import http.client
import random
import threading
import time
from collections.abc import Callable
from functools import partial
from typing import Any

import pytest
import redis
from redis.backoff import NoBackoff
from redis.retry import Retry

from tests.server._history import NAN, Call, Recorder, check, check_key
from tests.server.wire import Conn, RemoteError
from tests.serverproc import ServerProcess

# ---- the checker on hand-made histories ----


def _c(kind: str, arg: Any, result: Any, start: int, end: int | None, client: int = 0) -> Call:
    return Call(client, kind, b"k", arg, start, end, result)


def test_checker_accepts_a_read_of_a_concurrent_write() -> None:
    calls = [_c("write", b"1", True, 0, 10), _c("read", None, b"1", 5, 6)]
    assert check_key(calls) is None


def test_checker_refuses_a_stale_read_after_an_acknowledged_write() -> None:
    calls = [_c("write", b"1", True, 0, 10), _c("read", None, None, 20, 30)]
    assert check_key(calls) is not None


def test_checker_refuses_a_value_that_comes_back() -> None:
    # 1 then 2 were written one after another; a read sees 2, a later one 1 again
    calls = [
        _c("write", b"1", True, 0, 10),
        _c("write", b"2", True, 0, 40, client=1),
        _c("read", None, b"2", 15, 20, client=2),
        _c("read", None, b"1", 25, 30, client=2),
    ]
    assert check_key(calls) is not None


def test_checker_refuses_a_lost_increment() -> None:
    calls = [_c("incr", 1, 1, 0, 10), _c("incr", 1, 1, 5, 15, client=1)]
    assert check_key(calls) is not None
    calls[1].result = 2
    assert check_key(calls) is None


def test_checker_lets_a_pending_write_apply_or_not() -> None:
    pending = _c("write", b"1", None, 0, None)
    assert check_key([pending, _c("read", None, b"1", 20, 30)]) is None
    assert check_key([pending, _c("read", None, None, 20, 30)]) is None
    # ... but not apply before it was sent
    assert check_key([_c("read", None, b"1", 0, 5), _c("write", b"1", None, 10, None)]) is not None


def test_checker_models_setnx_delete_and_not_a_number() -> None:
    calls = [
        _c("write", b"x", True, 0, 1),
        _c("incr", 1, NAN, 2, 3),
        _c("setnx", b"y", False, 4, 5),
        _c("delete", None, True, 6, 7),
        _c("setnx", b"y", True, 8, 9),
        _c("delete", None, True, 10, 11),
        _c("delete", None, False, 12, 13),
        _c("incr", 5, 5, 14, 15),
    ]
    assert check_key(calls) is None
    calls[-2].result = True
    assert check_key(calls) is not None


# ---- one client per dialect, in the model's terms ----


class _Binary:
    def __init__(self, port: int) -> None:
        self.conn = Conn(port)

    def read(self, key: bytes) -> Any:
        return self.conn.call("get", key)

    def write(self, key: bytes, value: bytes) -> Any:
        return self.conn.call("put", key, value)

    def delete(self, key: bytes) -> Any:
        return self.conn.call("delete", key)

    def incr(self, key: bytes, n: int) -> Any:
        try:
            return self.conn.call("incr", key, n)
        except RemoteError as err:
            if err.name == "NOT_A_NUMBER":
                return NAN
            raise

    def setnx(self, key: bytes, value: bytes) -> Any:
        return self.conn.call("set", key, value, {"nx": True})

    def close(self) -> None:
        self.conn.close()


class _Resp:
    def __init__(self, port: int) -> None:
        # no retries: a call the server did not answer stays unanswered (pending)
        self.r = redis.Redis(port=port, socket_timeout=10, retry=Retry(NoBackoff(), 0))

    def read(self, key: bytes) -> Any:
        return self.r.get(key)

    def write(self, key: bytes, value: bytes) -> Any:
        return self.r.set(key, value)

    def delete(self, key: bytes) -> Any:
        return self.r.delete(key) == 1

    def incr(self, key: bytes, n: int) -> Any:
        try:
            return self.r.incrby(key, n)
        except redis.ResponseError as err:
            if "not an integer" in str(err):
                return NAN
            raise

    def setnx(self, key: bytes, value: bytes) -> Any:
        return bool(self.r.set(key, value, nx=True))

    def close(self) -> None:
        self.r.close()


class _Http:
    def __init__(self, port: int) -> None:
        self.h = http.client.HTTPConnection("127.0.0.1", port, timeout=10)

    def _do(self, method: str, key: bytes, body: bytes | None = None, query: str = "") -> Any:
        self.h.request(method, "/kv/" + key.decode() + query, body=body)
        resp = self.h.getresponse()
        return resp.status, resp.read()

    def read(self, key: bytes) -> Any:
        status, body = self._do("GET", key)
        assert status in (200, 404), (status, body)
        return body if status == 200 else None

    def write(self, key: bytes, value: bytes) -> Any:
        status, body = self._do("PUT", key, value)
        assert status == 204, (status, body)
        return True

    def delete(self, key: bytes) -> Any:
        status, body = self._do("DELETE", key)
        assert status in (204, 404), (status, body)
        return status == 204

    def incr(self, key: bytes, n: int) -> Any:
        status, body = self._do("POST", key, b"", f"?incr={n}")
        if status == 409:
            return NAN
        assert status == 200, (status, body)
        return int(body)

    def close(self) -> None:
        self.h.close()


DIALECTS: dict[str, Callable[[int, int], Any]] = {
    "binary": lambda port, http_port: _Binary(port),
    "resp": lambda port, http_port: _Resp(port),
    "http": lambda port, http_port: _Http(http_port),
}


def _workload(
    rec: Recorder,
    client: int,
    api: Any,
    keys: list[bytes],
    counters: list[bytes],
    n: int,
    seed: int,
    epoch: int = 0,
) -> None:
    """`n` random calls: registers get reads, writes, deletes and setnx; counters reads,
    increments and (now and then) a write of a number or a delete. With `epoch`, every
    `epoch` calls move to fresh keys (a long run, yet few calls per key to check)."""
    rnd = random.Random(seed)
    can_setnx = hasattr(api, "setnx")  # HTTP has no conditional put
    for i in range(n):
        era = b"" if not epoch else b"-%d" % (i // epoch)
        if rnd.random() < 0.6:
            key = rnd.choice(keys) + era
            value = b"c%d-%d" % (client, i)
            kind = rnd.choice(
                ["read", "read", "write", "delete", "setnx" if can_setnx else "write"]
            )
        else:
            key = rnd.choice(counters) + era
            kind = rnd.choice(["read", "incr", "incr", "incr", "write", "delete"])
            value = b"%d" % rnd.randrange(100)
        if kind == "read":
            rec.run(client, kind, key, None, partial(api.read, key))
        elif kind == "write":
            rec.run(client, kind, key, value, partial(api.write, key, value))
        elif kind == "delete":
            rec.run(client, kind, key, None, partial(api.delete, key))
        elif kind == "setnx":
            rec.run(client, kind, key, value, partial(api.setnx, key, value))
        else:
            d = rnd.randrange(-3, 10)
            rec.run(client, kind, key, d, partial(api.incr, key, d))


def _background(srv: ServerProcess, stop: threading.Event, errors: list[BaseException]) -> None:
    """Merges and expiring keys while the history is recorded."""
    try:
        with Conn(srv.port) as conn:
            i = 0
            while i < 40 or not stop.is_set():  # at least enough to seal files and merge
                i += 1
                conn.call("mput", [[b"filler%d" % j, b"x" * 200] for j in range(20)])
                conn.call("put", b"soon%d" % i, b"gone", {"ttl": 0.02})
                if i % 5 == 0:
                    try:
                        conn.call("merge")
                    except RemoteError as err:
                        if err.name != "MERGE_IN_PROGRESS":
                            raise
    except BaseException as exc:
        errors.append(exc)


def _record(srv: ServerProcess, calls_per_client: int, seed: int) -> Recorder:
    keys = [b"reg%d" % i for i in range(4)]
    counters = [b"cnt%d" % i for i in range(2)]
    rec = Recorder()
    plan = ["binary", "resp", "http", "binary", "resp", "http"]
    apis = [DIALECTS[d](srv.port, srv.http_port) for d in plan]
    start = threading.Barrier(len(apis) + 1)
    errors: list[BaseException] = []
    stop = threading.Event()

    def client(i: int) -> None:
        try:
            start.wait(10)
            _workload(rec, i, apis[i], keys, counters, calls_per_client, seed * 100 + i, epoch=25)
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=client, args=(i,)) for i in range(len(apis))]
    bg = threading.Thread(target=_background, args=(srv, stop, errors))
    bg.start()
    for t in threads:
        t.start()
    start.wait(10)
    for t in threads:
        t.join(120)
    stop.set()
    bg.join(60)
    for api in apis:
        api.close()
    assert not errors, errors
    return rec


@pytest.mark.parametrize("sync", ["always", "interval", "never"])
def test_mixed_dialect_history_is_linearizable(
    server_factory: Callable[..., ServerProcess], sync: str
) -> None:
    srv = server_factory(sync=sync, extra=["--max-file-size", "65536"])
    for seed in range(2):
        rec = _record(srv, 150, seed)
        problems = check(rec.calls)
        assert not problems, problems[0]
        # the next round starts from what this one left: clear it
        with Conn(srv.port) as conn:
            conn.call("clear")
    with Conn(srv.port) as conn:
        assert conn.call("stats")["merges"] > 0  # the histories were taken across merges


# ---- INCR under contention ----


def test_no_increment_is_lost_across_dialects(server_factory: Callable[..., ServerProcess]) -> None:
    srv = server_factory(sync="always")
    plan = ["binary", "binary", "binary", "resp", "resp", "resp", "http", "http"]
    apis = [DIALECTS[d](srv.port, srv.http_port) for d in plan]
    each = 150
    answers: list[list[int]] = [[] for _ in apis]
    start = threading.Barrier(len(apis))
    errors: list[BaseException] = []

    def client(i: int) -> None:
        try:
            start.wait(10)
            for _ in range(each):
                answers[i].append(apis[i].incr(b"hits", 1))
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=client, args=(i,)) for i in range(len(apis))]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    assert not errors, errors
    total = len(apis) * each
    assert apis[0].read(b"hits") == str(total).encode()
    got = sorted(n for a in answers for n in a)
    assert got == list(range(1, total + 1))  # every increment answered its own value
    for a in answers:  # and one connection's answers grow
        assert a == sorted(a)
    for api in apis:
        api.close()


# ---- SIGKILL under mixed load ----


_CRASHED = (OSError, EOFError, redis.ConnectionError, http.client.HTTPException)


def _batches(port: int, stop: threading.Event) -> None:
    """Atomic writes until the kill: a binary mput of five keys and a RESP MULTI/EXEC
    of two, each time one new value for all of them."""
    try:
        with Conn(port) as conn:
            r = redis.Redis(port=port, socket_timeout=10, retry=Retry(NoBackoff(), 0))
            i = 0
            while not stop.is_set():
                i += 1
                conn.call("mput", [[b"batch%d" % j, b"v%d" % i] for j in range(5)])
                pipe = r.pipeline(transaction=True)
                pipe.set("tx0", i)
                pipe.set("tx1", i)
                pipe.execute()
    except _CRASHED:
        pass


def _answered_writes(rec: Recorder) -> int:
    return sum(c.done is not None and c.kind != "read" for c in list(rec.calls))


@pytest.mark.parametrize(
    ("sync", "after"), [("always", 0.1), ("always", 0.3), ("interval", 0.2), ("never", 0.2)]
)
def test_sigkill_keeps_every_acknowledged_write(
    server_factory: Callable[..., ServerProcess], sync: str, after: float
) -> None:
    # every policy promises that an answered write survives a crash of the process
    srv = server_factory(sync=sync, extra=["--max-file-size", "65536"])
    keys = [b"reg%d" % i for i in range(4)]
    counters = [b"cnt%d" % i for i in range(2)]
    rec = Recorder()
    plan = ["binary", "resp", "http", "binary", "resp", "http"]
    apis = [DIALECTS[d](srv.port, srv.http_port) for d in plan]
    start = threading.Barrier(len(apis) + 1)
    stop = threading.Event()

    def client(i: int) -> None:
        start.wait(10)
        # runs until the kill ends it with an error: its last call stays pending
        try:
            _workload(rec, i, apis[i], keys, counters, 100_000, 7000 + i, epoch=25)
        except _CRASHED:
            pass

    threads = [threading.Thread(target=client, args=(i,)) for i in range(len(apis))]
    threads.append(threading.Thread(target=_batches, args=(srv.port, stop)))
    for t in threads:
        t.start()
    start.wait(10)
    time.sleep(after)
    deadline = time.monotonic() + 10  # a loaded machine: let one write be answered first
    while not _answered_writes(rec) and time.monotonic() < deadline:
        time.sleep(0.02)
    assert srv.proc is not None
    srv.proc.kill()  # SIGKILL mid-load
    srv.proc.wait(10)
    stop.set()
    for t in threads:
        t.join(60)
    assert not any(t.is_alive() for t in threads)
    for api in apis:
        api.close()
    srv.proc = None
    srv.start()
    written = sorted({c.key for c in rec.calls})
    with Conn(srv.port) as conn:
        for key in written:
            rec.run(99, "read", key, None, partial(conn.call, "get", key))
        # the batches: all of one or none of it
        assert len(set(conn.call("mget", [b"batch%d" % j for j in range(5)]))) == 1
        assert len(set(conn.call("mget", [b"tx0", b"tx1"]))) == 1
    problems = check(rec.calls)
    assert not problems, problems[0]
    assert _answered_writes(rec) > 0  # answered writes to check
    assert any(c.done is None for c in rec.calls)  # the kill came mid-load
