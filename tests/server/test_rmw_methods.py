"""The atomic read-modify-write methods over real loopback sockets: results, errors,
concurrency, and optimistic transactions (watch / commit) across connections."""

from __future__ import annotations

import itertools
import threading
import time
from collections.abc import Iterator

import pytest

from tests.server.wire import Conn
from tests.serverproc import ServerProcess

_ids = itertools.count()


def fresh(prefix: str) -> bytes:
    """A key no other test in the module uses (the server is shared)."""
    return f"{prefix}:{next(_ids)}".encode()


@pytest.fixture
def conn(shared: ServerProcess) -> Iterator[Conn]:
    with Conn(shared.port) as c:
        yield c


def test_set_conditions_and_get(conn: Conn) -> None:
    key = fresh("set")
    assert conn.call("set", key, b"1", {"xx": True}) is False
    assert conn.call("get", key) is None
    assert conn.call("set", key, b"1", {"nx": True}) is True
    assert conn.call("set", key, b"2", {"nx": True}) is False
    assert conn.call("get", key) == b"1"
    assert conn.call("set", key, b"3", {"xx": True, "get": True}) == b"1"
    assert conn.call("set", key, b"4", {"nx": True, "get": True}) == b"3"  # not applied
    assert conn.call("get", key) == b"3"
    assert conn.call("set", fresh("set"), b"v", {"get": True}) is None
    assert conn.call("set", key, b"5") is True


def test_set_ttl_keep_ttl_and_at_ms(conn: Conn) -> None:
    key = fresh("setttl")
    assert conn.call("set", key, b"v", {"ttl": 100}) is True
    assert 90 < conn.call("ttl", key) <= 100
    assert conn.call("set", key, b"w", {"keep_ttl": True}) is True
    assert 90 < conn.call("ttl", key) <= 100
    assert conn.call("set", key, b"x") is True
    assert conn.call("ttl", key) == -1
    at = int(time.time() * 1000) + 500_000
    assert conn.call("set", key, b"y", {"at_ms": at}) is True
    assert 490 < conn.call("ttl", key) <= 500
    assert conn.call("set", key, b"z", {"at_ms": 1}) is True  # in the past: deleted
    assert conn.call("get", key) is None


@pytest.mark.parametrize(
    "params",
    [
        pytest.param([b"k", b"v", {"nx": True, "xx": True}], id="nx-and-xx"),
        pytest.param([b"k", b"v", {"keep_ttl": True, "ttl": 5}], id="keep-ttl-and-ttl"),
        pytest.param([b"k", b"v", {"ttl": 5, "at_ms": 10**12}], id="ttl-and-at-ms"),
        pytest.param([b"k", b"v", {"nx": 1}], id="nx-int"),
        pytest.param([b"k", b"v", {"at_ms": 0}], id="at-ms-zero"),
        pytest.param([b"k", b"v", {"px": 5}], id="unknown-option"),
    ],
)
def test_set_bad_options(conn: Conn, params: list[object]) -> None:
    assert conn.error("set", *params).name == "INVALID_PARAMS"


def test_an_option_sent_as_nil_is_left_out(conn: Conn) -> None:
    """docs/protocol.md section 3: nil for an option is the option left out, for the
    bool options (nx, xx, get, keep_ttl) as for ttl, at_ms and cond. A JavaScript
    client sends {"nx": undefined} as nil; the bool ones answered INVALID_PARAMS."""
    key, dst = fresh("nil"), fresh("nil")
    nils = {"nx": None, "xx": None, "get": None, "keep_ttl": None, "ttl": None, "at_ms": None}
    assert conn.call("set", key, b"1", nils) is True
    assert conn.call("set", key, b"2", {**nils, "ttl": 100}) is True
    assert conn.call("set", key, b"3", {**nils, "nx": True}) is False
    assert conn.call("rename", key, dst, {"nx": None}) is True
    assert conn.call("expire", dst, {"ttl": 50, "cond": None}) is True
    assert conn.call("commit", [["set", key, b"4", {"get": None, "nx": None}]]) == [True]
    assert [conn.call("get", k) for k in (key, dst)] == [b"4", b"2"]
    assert conn.call("ttl", key) == -1 and 40 < conn.call("ttl", dst) <= 50
    assert conn.error("set", key, b"5", {"nx": 0}).name == "INVALID_PARAMS"
    assert conn.call("get", key) == b"4"


def test_incr_and_its_errors(conn: Conn) -> None:
    key = fresh("incr")
    assert conn.call("incr", key) == 1
    assert conn.call("incr", key, 41) == 42
    assert conn.call("incr", key, -50) == -8
    assert conn.call("get", key) == b"-8"
    word = fresh("incr")
    conn.call("put", word, b"abc")
    err = conn.error("incr", word)
    assert (err.code, err.name) == (410, "NOT_A_NUMBER")
    big = fresh("incr")
    conn.call("put", big, str(2**63 - 1).encode())
    assert conn.error("incr", big).name == "NOT_A_NUMBER"  # overflow
    assert conn.call("get", big) == str(2**63 - 1).encode()
    assert conn.error("incr", key, 2**63).name == "INVALID_PARAMS"
    assert conn.error("incr", key, 1.5).name == "INVALID_PARAMS"
    assert conn.call("ping") == "PONG"


def test_incr_keeps_the_ttl(conn: Conn) -> None:
    key = fresh("incrttl")
    conn.call("put", key, b"1", {"ttl": 100})
    assert conn.call("incr", key) == 2
    assert 90 < conn.call("ttl", key) <= 100


def test_incr_float(conn: Conn) -> None:
    key = fresh("fl")
    assert conn.call("incr_float", key, 10.5) == b"10.5"
    assert conn.call("incr_float", key, 0.1) == b"10.6"
    assert conn.call("incr_float", key, -5) == b"5.6"
    conn.call("put", key, b"nope")
    assert conn.error("incr_float", key, 1.0).name == "NOT_A_NUMBER"
    assert conn.error("incr_float", key, float("nan")).name == "INVALID_PARAMS"


def test_append_and_its_limit(conn: Conn, shared: ServerProcess) -> None:
    key = fresh("app")
    assert conn.call("append", key, b"ab") == 2
    assert conn.call("append", key, b"cd") == 4
    assert conn.call("get", key) == b"abcd"
    limit = conn.call("hello")["limits"]["max_value_size"]
    assert conn.error("append", key, b"x" * (limit + 1)).name == "VALUE_TOO_LARGE"
    # The result would be too large: refused alone, the value stays as it was.
    assert conn.error("append", key, b"x" * limit).name == "VALUE_TOO_LARGE"
    assert conn.call("get", key) == b"abcd"


def test_get_delete(conn: Conn) -> None:
    key = fresh("gd")
    assert conn.call("get_delete", key) is None
    conn.call("put", key, b"v")
    assert conn.call("get_delete", key) == b"v"
    assert conn.call("exists", key) is False


def test_expire_persist(conn: Conn) -> None:
    key = fresh("exp")
    assert conn.call("expire", key, {"ttl": 10}) is False  # absent
    conn.call("put", key, b"v")
    assert conn.call("expire", key, {"ttl": 100, "cond": "xx"}) is False
    assert conn.call("expire", key, {"ttl": 100, "cond": "nx"}) is True
    assert conn.call("expire", key, {"ttl": 50, "cond": "gt"}) is False
    assert conn.call("expire", key, {"ttl": 50, "cond": "lt"}) is True
    assert 40 < conn.call("ttl", key) <= 50
    assert conn.call("persist", key) is True
    assert conn.call("persist", key) is False
    assert conn.call("ttl", key) == -1
    assert conn.call("expire", key, {"at_ms": 1}) is True  # in the past: deleted
    assert conn.call("exists", key) is False
    assert conn.error("expire", key, {}).name == "INVALID_PARAMS"
    assert conn.error("expire", key, {"ttl": 1, "cond": "maybe"}).name == "INVALID_PARAMS"
    assert conn.error("expire", key, {"ttl": -1}).name == "INVALID_PARAMS"


def test_rename(conn: Conn) -> None:
    src, dst = fresh("ren"), fresh("ren")
    err = conn.error("rename", src, dst)
    assert (err.code, err.name) == (411, "NO_SUCH_KEY")
    conn.call("put", src, b"v", {"ttl": 100})
    assert conn.call("rename", src, dst) is True
    assert conn.call("get", src) is None
    assert conn.call("get", dst) == b"v"
    assert 90 < conn.call("ttl", dst) <= 100
    conn.call("put", src, b"w")
    assert conn.call("rename", src, dst, {"nx": True}) is False
    assert conn.call("get", src) == b"w"


def test_size_limits_apply_to_every_method(conn: Conn) -> None:
    limit = conn.call("hello")["limits"]["max_key_size"]
    big = b"k" * (limit + 1)
    for method, params in [
        ("set", [big, b"v"]),
        ("incr", [big]),
        ("get_delete", [big]),
        ("rename", [b"a", big]),
        ("watch", [[big]]),
        ("commit", [[["incr", big]]]),
    ]:
        assert conn.error(method, *params).name == "KEY_TOO_LARGE", method


def test_commit_applies_ops_with_per_op_results(conn: Conn) -> None:
    n, s, w = fresh("c"), fresh("c"), fresh("c")
    conn.call("put", w, b"word")
    results = conn.call(
        "commit",
        [
            ["incr", n, 5],
            ["put", s, b"x"],
            ["incr", w],
            ["set", s, b"y", {"get": True}],
            ["append", s, b"z"],
            ["delete", n],
        ],
    )
    assert results[0] == 5 and results[1] is True
    assert results[2] == {"error": [410, "NOT_A_NUMBER", results[2]["error"][2]]}
    assert results[3:] == [b"x", 2, True]
    assert conn.call("get", s) == b"yz"
    assert conn.call("get", n) is None
    assert conn.error("commit", [["get", n]]).name == "INVALID_PARAMS"
    assert conn.error("commit", [["incr", n, "x"]]).name == "INVALID_PARAMS"
    assert conn.call("commit", []) == []


def test_watch_commit_applies_when_nothing_changed(conn: Conn) -> None:
    key = fresh("w")
    conn.call("put", key, b"1")
    wid = conn.call("watch", [key])
    assert isinstance(wid, int)
    assert conn.call("commit", [["put", key, b"2"]], {"watch": wid}) == [True]
    assert conn.call("get", key) == b"2"
    # The watch is consumed by its commit: a second commit with it aborts.
    assert conn.call("commit", [["put", key, b"3"]], {"watch": wid}) is None
    assert conn.call("get", key) == b"2"


def test_commit_aborts_after_another_connections_write(shared: ServerProcess) -> None:
    key = fresh("w")
    with Conn(shared.port) as a, Conn(shared.port) as b:
        a.call("put", key, b"10")
        wid = a.call("watch", [key, fresh("other")])
        seen = a.call("get", key)
        b.call("put", key, seen)  # the same value still counts as a write
        assert a.call("commit", [["put", key, b"11"]], {"watch": wid}) is None
        assert a.call("get", key) == b"10"
        # Retry, as a client's transaction loop does.
        wid = a.call("watch", [key])
        assert a.call("commit", [["incr", key]], {"watch": wid}) == [11]


def test_own_pipelined_write_before_watch_does_not_abort(conn: Conn) -> None:
    key = fresh("w")
    conn.send("put", key, b"1")
    conn.send("watch", [key])
    conn.reply()
    _, wid = conn.reply()
    assert conn.call("commit", [["incr", key]], {"watch": wid}) == [2]


def test_watch_and_commit_pipelined_in_one_write(conn: Conn) -> None:
    key = fresh("w")
    wid = 1 + _last_watch(conn)  # ids count up per connection
    conn.send("put", key, b"5")
    conn.send("watch", [key])
    conn.send("commit", [["incr", key]], {"watch": wid})
    replies = [conn.reply()[1] for _ in range(3)]
    assert replies[0] is True and replies[2] == [6]


def _last_watch(conn: Conn) -> int:
    wid = conn.call("watch", [b"probe"])
    assert conn.call("unwatch", wid) is True
    return int(wid)


def test_unwatch_and_unknown_ids(conn: Conn) -> None:
    key = fresh("w")
    wid = conn.call("watch", [key])
    assert conn.call("unwatch", wid) is True
    assert conn.call("commit", [["put", key, b"x"]], {"watch": wid}) is None
    assert conn.call("unwatch") is True
    assert conn.call("commit", [["put", key, b"x"]], {"watch": 12345}) is None
    assert conn.error("watch", []).name == "INVALID_PARAMS"
    assert conn.error("unwatch", 0).name == "INVALID_PARAMS"


def test_watch_ids_belong_to_their_connection(shared: ServerProcess) -> None:
    key = fresh("w")
    with Conn(shared.port) as a, Conn(shared.port) as b:
        wid = a.call("watch", [key])
        assert b.call("commit", [["put", key, b"b"]], {"watch": wid}) is None
        assert a.call("commit", [["put", key, b"a"]], {"watch": wid}) == [True]


def test_clear(tmp_path_factory: pytest.TempPathFactory) -> None:
    data = tmp_path_factory.mktemp("clear")
    srv = ServerProcess(data=data).start()
    try:
        with Conn(srv.port) as c:
            c.call("mput", {b"a": b"1", b"b": b"2", b"c": b"3"})
            assert c.call("clear") == 3
            assert c.call("scan") == [None, []]
            assert c.call("clear") == 0
    finally:
        srv.kill()


def test_8_connections_x_200_incr_on_one_key_is_1600(shared: ServerProcess) -> None:
    key = fresh("race")
    errors: list[BaseException] = []

    def worker() -> None:
        try:
            with Conn(shared.port) as c:
                for _ in range(200):
                    c.call("incr", key)
        except BaseException as exc:  # reported by the main thread
            errors.append(exc)

    threads = [threading.Thread(target=worker) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    assert not errors
    with Conn(shared.port) as c:
        assert c.call("get", key) == b"1600"


def test_8_connections_x_50_watched_increments_is_400(shared: ServerProcess) -> None:
    # An optimistic read-modify-write loop: get, compute, commit if unchanged, retry.
    key = fresh("optimistic")
    errors: list[BaseException] = []
    aborted = [0]

    def worker() -> None:
        try:
            with Conn(shared.port) as c:
                done = 0
                for _ in range(5000):  # bounded: retries included
                    if done == 50:
                        return
                    wid = c.call("watch", [key])
                    n = int(c.call("get", key) or b"0")
                    if c.call("commit", [["put", key, str(n + 1).encode()]], {"watch": wid}):
                        done += 1
                    else:
                        aborted[0] += 1
                raise AssertionError("too many retries")
        except BaseException as exc:  # reported by the main thread
            errors.append(exc)

    threads = [threading.Thread(target=worker) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    assert not errors
    with Conn(shared.port) as c:
        assert c.call("get", key) == b"400"
