"""POST /kv/{key}?incr=N and ?append on the HTTP adapter: results, errors, atomicity."""

from __future__ import annotations

import json
import threading

from tests.server.test_http import JSON, call
from tests.server.wire import Conn
from tests.serverproc import ServerProcess


def test_incr(shared: ServerProcess) -> None:
    status, headers, body = call(shared, "POST", "/kv/http-incr?incr", b"")
    assert (status, body) == (200, b"1") and headers["content-type"].startswith("text/plain")
    status, _, body = call(shared, "POST", "/kv/http-incr?incr=10", b"")
    assert (status, body) == (200, b"11")
    status, _, body = call(shared, "POST", "/kv/http-incr?incr=-20", b"")
    assert (status, body) == (200, b"-9")
    status, _, body = call(shared, "POST", "/kv/http-incr?incr=2", b"", {"Accept": JSON})
    assert status == 200 and json.loads(body) == {"key": "http-incr", "value": -7}
    assert call(shared, "GET", "/kv/http-incr")[2] == b"-7"


def test_incr_errors(shared: ServerProcess) -> None:
    call(shared, "PUT", "/kv/http-word", b"abc")
    status, _, body = call(shared, "POST", "/kv/http-word?incr=1", b"")
    assert status == 409 and json.loads(body)["error"]["name"] == "NOT_A_NUMBER"
    status, _, body = call(shared, "POST", "/kv/http-word?incr=x", b"")
    assert status == 400 and json.loads(body)["error"]["name"] == "INVALID_PARAMS"
    status, _, body = call(shared, "POST", f"/kv/http-word?incr={2**63}", b"")
    assert status == 400 and json.loads(body)["error"]["name"] == "INVALID_PARAMS"
    for query in ("", "?ttl=5", "?incr=1&append"):
        assert call(shared, "POST", f"/kv/http-word{query}", b"")[0] == 400
    assert call(shared, "GET", "/kv/http-word")[2] == b"abc"


def test_incr_takes_plain_ascii_integers_only(shared: ServerProcess) -> None:
    # int() also takes "1_0" (10), " 5" and non-ASCII digits ("\u0663" is 3): Redis does not.
    call(shared, "PUT", "/kv/http-strict", b"5")
    for raw in ("1_0", "%D9%A3", "%205", "5%20", "0x10", "+"):
        status, _, body = call(shared, "POST", f"/kv/http-strict?incr={raw}", b"")
        assert status == 400 and json.loads(body)["error"]["name"] == "INVALID_PARAMS", raw
    assert call(shared, "GET", "/kv/http-strict")[2] == b"5"
    assert call(shared, "POST", "/kv/http-strict?incr=%2B2", b"")[2] == b"7"


def test_append(shared: ServerProcess) -> None:
    status, _, body = call(shared, "POST", "/kv/http-log?append", b"one,")
    assert (status, body) == (200, b"4")
    status, _, body = call(shared, "POST", "/kv/http-log?append", b"two")
    assert (status, body) == (200, b"7")
    assert call(shared, "GET", "/kv/http-log")[2] == b"one,two"


def test_concurrent_http_increments_are_atomic(shared: ServerProcess) -> None:
    errors: list[BaseException] = []

    def worker() -> None:
        try:
            for _ in range(50):
                assert call(shared, "POST", "/kv/http-race?incr=1", b"")[0] == 200
        except BaseException as exc:  # reported by the main thread
            errors.append(exc)

    threads = [threading.Thread(target=worker) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    assert not errors
    with Conn(shared.port) as c:
        assert c.call("get", b"http-race") == b"200"
