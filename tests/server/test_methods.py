"""Every method of the binary protocol over a real loopback socket, and its errors."""

from __future__ import annotations

import itertools
from collections.abc import Callable, Iterator

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


def test_hello(conn: Conn) -> None:
    info = conn.call("hello", {"protocol": 1, "client": "tests"})
    assert info["server"] == "bitcask" and info["protocol"] == 1
    assert info["auth_required"] is False and info["authenticated"] is True
    assert set(info["limits"]) == {"max_key_size", "max_value_size", "max_frame", "max_batch"}
    assert conn.call("hello")["protocol"] == 1


def test_hello_with_unknown_version(conn: Conn) -> None:
    assert conn.error("hello", {"protocol": 99}).name == "UNSUPPORTED_VERSION"
    assert conn.call("ping") == "PONG"


def test_ping(conn: Conn) -> None:
    assert conn.call("ping") == "PONG"
    assert conn.call("ping", b"payload") == b"payload"


def test_put_get_delete_exists(conn: Conn) -> None:
    key = fresh("pgd")
    assert conn.call("get", key) is None
    assert conn.call("exists", key) is False
    assert conn.call("put", key, b"\x00\xffvalue") is True
    assert conn.call("get", key) == b"\x00\xffvalue"
    assert conn.call("exists", key) is True
    assert conn.call("delete", key) is True
    assert conn.call("delete", key) is False
    assert conn.call("get", key) is None


def test_str_keys_and_values_are_utf8(conn: Conn) -> None:
    key = fresh("str") + "é".encode()
    assert conn.call("put", key.decode(), "välue") is True
    assert conn.call("get", key) == "välue".encode()


def test_ttl(conn: Conn) -> None:
    key = fresh("ttl")
    assert conn.call("ttl", key) == -2
    conn.call("put", key, b"v")
    assert conn.call("ttl", key) == -1
    conn.call("put", key, b"v", {"ttl": 100})
    left = conn.call("ttl", key)
    assert isinstance(left, float) and 99 < left <= 100


def test_mget_mput(conn: Conn) -> None:
    a, b, c = fresh("m"), fresh("m"), fresh("m")
    assert conn.call("mput", {a: b"1", b: b"2"}) is True
    assert conn.call("mget", [a, b, c]) == [b"1", b"2", None]
    assert conn.call("mput", [[c, b"3"]]) is True
    assert conn.call("mget", [c]) == [b"3"]


def test_batch(conn: Conn) -> None:
    a, b = fresh("b"), fresh("b")
    conn.call("put", b, b"old")
    ops = [
        ["put", a, b"1"],
        ["put", a, b"2", {"ttl": 50}],
        ["delete", b],
        ["delete", b"never-there"],
    ]
    assert conn.call("batch", ops) == [True, True, True, False]
    assert conn.call("get", a) == b"2" and conn.call("get", b) is None


def test_scan_pages_in_order(conn: Conn) -> None:
    prefix = fresh("scan") + b"/"
    keys = sorted(prefix + b"%03d" % i for i in range(25))
    conn.call("mput", {k: b"v" for k in keys})
    seen: list[bytes] = []
    pages: list[int] = []
    cursor = None
    for _ in range(10):
        opts = {"prefix": prefix, "count": 10}
        if cursor is not None:
            opts["cursor"] = cursor
        cursor, page = conn.call("scan", opts)
        seen.extend(page)
        pages.append(len(page))
        if cursor is None:
            break
    assert seen == keys
    assert pages == [10, 10, 5]


def test_scan_last_full_page_answers_the_finished_cursor(conn: Conn) -> None:
    prefix = fresh("scanfull") + b"/"
    keys = sorted(prefix + b"%d" % i for i in range(4))
    conn.call("mput", {k: b"v" for k in keys})
    cursor, page = conn.call("scan", {"prefix": prefix, "count": 2})
    assert (cursor, page) == (keys[1], keys[:2])
    assert conn.call("scan", {"prefix": prefix, "count": 2, "cursor": cursor}) == [None, keys[2:]]


def test_stats_has_engine_and_server_counters(conn: Conn) -> None:
    conn.call("put", fresh("stats"), b"v")
    stats = conn.call("stats")
    for key in ("keys", "live_bytes", "dead_bytes", "disk_bytes", "readonly_reason", "recovery"):
        assert key in stats
    server = stats["server"]
    assert server["requests"]["put"] >= 1 and server["connections"] >= 1
    assert server["group_commits"] >= 1


def test_sync_and_merge(conn: Conn) -> None:
    key = fresh("merge")
    for i in range(20):
        conn.call("put", key, b"v%d" % i)
    assert conn.call("sync") is True
    report = conn.call("merge")
    assert isinstance(report, dict)
    assert conn.call("get", key) == b"v19"


@pytest.mark.parametrize(
    ("method", "params", "code"),
    [
        pytest.param("nope", [], "UNKNOWN_METHOD", id="unknown-method"),
        pytest.param("get", [], "INVALID_PARAMS", id="missing-param"),
        pytest.param("get", [1], "INVALID_PARAMS", id="int-key"),
        pytest.param("put", [b"k"], "INVALID_PARAMS", id="put-no-value"),
        pytest.param("put", [b"k", b"v", {"ttl": -1}], "INVALID_PARAMS", id="negative-ttl"),
        pytest.param("put", [b"k", b"v", {"bogus": 1}], "INVALID_PARAMS", id="unknown-option"),
        pytest.param("batch", [[["frobnicate", b"k"]]], "INVALID_PARAMS", id="bad-batch-op"),
        pytest.param("scan", [{"count": 0}], "INVALID_PARAMS", id="scan-count-0"),
        pytest.param("mput", [7], "INVALID_PARAMS", id="mput-int"),
        pytest.param("put", [b"k" * (64 * 1024 + 1), b"v"], "KEY_TOO_LARGE", id="key-too-large"),
    ],
)
def test_bad_requests_fail_alone(conn: Conn, method: str, params: list[object], code: str) -> None:
    err = conn.error(method, *params)
    assert err.name == code
    assert conn.call("ping") == "PONG", "the connection stays usable"


def test_bad_request_in_a_pipeline_fails_alone(conn: Conn) -> None:
    good1, good2 = fresh("alone"), fresh("alone")
    conn.send("put", good1, b"1")
    conn.send("put", b"k" * (64 * 1024 + 1), b"v")
    conn.send("put", good2, b"2")
    replies = [conn.read_message() for _ in range(3)]
    assert [r[2] is None for r in replies] == [True, False, True]
    assert replies[1][2][1] == "KEY_TOO_LARGE"
    assert conn.call("mget", [good1, good2]) == [b"1", b"2"]


def test_value_too_large(server_factory: Callable[..., ServerProcess]) -> None:
    # The engine's default value limit (64 MiB) is too big to send in a unit test; the
    # server's frame limit is the first wall a large value meets, so check both paths.
    srv = server_factory(extra=["--max-frame", "4096"])
    with Conn(srv.port) as c:
        assert c.call("put", b"k", b"x" * 3000) is True
        c.send("put", b"k", b"x" * 5000)
        msg = c.read_message()
        assert msg[2][1] == "FRAME_TOO_LARGE"
        assert c.closed_by_peer()


def test_batch_too_large(server_factory: Callable[..., ServerProcess]) -> None:
    srv = server_factory(sync="never", extra=["--max-batch", "3"])
    with Conn(srv.port) as c:
        assert (
            c.error("mput", {b"a": b"1", b"b": b"2", b"c": b"3", b"d": b"4"}).name
            == "BATCH_TOO_LARGE"
        )
        assert c.error("mget", [b"a", b"b", b"c", b"d"]).name == "BATCH_TOO_LARGE"
        ops = [["put", b"k%d" % i, b"v"] for i in range(4)]
        assert c.error("batch", ops).name == "BATCH_TOO_LARGE"
        assert c.call("batch", ops[:3]) == [True, True, True]
        assert c.call("get", b"a") is None, "a refused mput wrote nothing"


@pytest.mark.parametrize("sync", ["interval", "never"])
def test_other_sync_policies_serve(server_factory: Callable[..., ServerProcess], sync: str) -> None:
    srv = server_factory(
        sync=sync, extra=["--sync-interval-ms", "50"] if sync == "interval" else []
    )
    with Conn(srv.port) as c:
        assert c.call("batch", [["put", b"a", b"1"], ["put", b"b", b"2"]]) == [True, True]
        assert c.call("mget", [b"a", b"b"]) == [b"1", b"2"]
        assert c.call("stats")["sync"] == sync
    assert srv.stop() == 0
    srv.start()
    with Conn(srv.port) as c:
        assert c.call("mget", [b"a", b"b"]) == [b"1", b"2"], "a clean stop keeps every write"
