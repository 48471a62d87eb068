"""The method table and validate_params: every method, good and bad params."""

from __future__ import annotations

import time
from typing import Any

import pytest

from protocol import (
    IDEMPOTENT_METHODS,
    METHODS,
    ErrorCode,
    FrameDecoder,
    ProtocolError,
    Request,
    encode_request,
    validate_params,
)
from protocol.methods import MAX_EXPIRY_MS

CONTRACT_METHODS = {
    "hello", "auth", "ping", "get", "put", "delete", "exists", "ttl",
    "mget", "mput", "batch", "scan", "stats", "merge", "sync",
    "set", "incr", "incr_float", "append", "get_delete", "expire", "persist", "rename",
    "clear", "watch", "unwatch", "commit",
}  # fmt: skip
CONTRACT_IDEMPOTENT = {
    "hello", "auth", "ping", "get", "exists", "ttl", "mget", "scan", "stats", "sync"
}  # fmt: skip
# Online backup (issue 14)
CONTRACT_METHODS |= {"snapshot_begin", "snapshot_read", "snapshot_end"}
CONTRACT_IDEMPOTENT |= {"snapshot_read", "snapshot_end"}

GOOD: list[Any] = [
    pytest.param("hello", [], (None, None, None), id="hello-empty"),
    pytest.param(
        "hello", [{"protocol": 1, "auth": "tok", "client": "t"}], (1, b"tok", "t"), id="hello-full"
    ),
    pytest.param("auth", ["tok"], (b"tok",), id="auth"),
    pytest.param("ping", [], (), id="ping"),
    pytest.param("ping", [b"hi"], (b"hi",), id="ping-payload"),
    pytest.param("get", ["k"], (b"k",), id="get-str"),
    pytest.param("get", [b"\x00"], (b"\x00",), id="get-bin"),
    pytest.param("put", [b"k", b"v"], (b"k", b"v", None), id="put"),
    pytest.param("put", [b"k", "v", {"ttl": 2}], (b"k", b"v", 2.0), id="put-ttl"),
    pytest.param("put", [b"k", b"v", {"ttl": None}], (b"k", b"v", None), id="put-ttl-none"),
    pytest.param("delete", [b"k"], (b"k",), id="delete"),
    pytest.param("exists", [b"k"], (b"k",), id="exists"),
    pytest.param("ttl", [b"k"], (b"k",), id="ttl"),
    pytest.param("mget", [[b"a", "b"]], ([b"a", b"b"],), id="mget"),
    pytest.param("mget", [[]], ([],), id="mget-empty"),
    pytest.param("mput", [{b"a": b"1", "b": "2"}], ([(b"a", b"1"), (b"b", b"2")],), id="mput-map"),
    pytest.param("mput", [[[b"a", b"1"]]], ([(b"a", b"1")],), id="mput-pairs"),
    pytest.param(
        "batch",
        [[["put", b"a", b"1"], ["put", b"b", b"2", {"ttl": 1.5}], ["delete", b"c"]]],
        ([("put", b"a", b"1", None), ("put", b"b", b"2", 1.5), ("delete", b"c")],),
        id="batch",
    ),
    pytest.param("scan", [], (b"", None, 100), id="scan-defaults"),
    pytest.param(
        "scan", [{"prefix": "p", "cursor": b"p1", "count": 5}], (b"p", b"p1", 5), id="scan-full"
    ),
    pytest.param("stats", [], (), id="stats"),
    pytest.param("merge", [], (), id="merge"),
    pytest.param("sync", [], (), id="sync"),
    pytest.param("set", [b"k", b"v"], (b"k", b"v", False, False, False, False, None, None),
                 id="set"),
    pytest.param("set", ["k", "v", {"nx": True, "get": True, "ttl": 2}],
                 (b"k", b"v", True, False, True, False, 2.0, None), id="set-options"),
    pytest.param("set", [b"k", b"v", {"xx": True, "keep_ttl": True}],
                 (b"k", b"v", False, True, False, True, None, None), id="set-keep-ttl"),
    pytest.param("set", [b"k", b"v", {"at_ms": 5}], (b"k", b"v", False, False, False, False,
                 None, 5), id="set-at-ms"),
    pytest.param("incr", [b"k"], (b"k", 1), id="incr"),
    pytest.param("incr", [b"k", -(2**63)], (b"k", -(2**63)), id="incr-min"),
    pytest.param("incr_float", [b"k", 2], (b"k", 2.0), id="incr-float-int"),
    pytest.param("append", [b"k", "x"], (b"k", b"x"), id="append"),
    pytest.param("get_delete", [b"k"], (b"k",), id="get-delete"),
    pytest.param("expire", [b"k", {"ttl": 3}], (b"k", 3.0, None, ""), id="expire-ttl"),
    pytest.param("expire", [b"k", {"at_ms": 9, "cond": "gt"}], (b"k", None, 9, "gt"),
                 id="expire-at-ms-gt"),
    pytest.param("persist", [b"k"], (b"k",), id="persist"),
    pytest.param("rename", [b"a", "b"], (b"a", b"b", False), id="rename"),
    pytest.param("rename", [b"a", b"b", {"nx": True}], (b"a", b"b", True), id="rename-nx"),
    pytest.param("clear", [], (), id="clear"),
    pytest.param("watch", [[b"a", "b"]], ([b"a", b"b"],), id="watch"),
    pytest.param("unwatch", [], (None,), id="unwatch-all"),
    pytest.param("unwatch", [7], (7,), id="unwatch-one"),
    pytest.param("commit", [[["incr", b"n"], ["put", b"k", b"v"], ["delete", b"d"]]],
                 ([("incr", b"n", 1), ("put", b"k", b"v", None), ("delete", b"d")], None),
                 id="commit"),
    pytest.param("commit", [[], {"watch": 3}], ([], 3), id="commit-watch"),
]  # fmt: skip

BAD: list[Any] = [
    pytest.param("hello", [{"protocol": "1"}], id="hello-str-version"),
    pytest.param("hello", [{"bogus": 1}], id="hello-unknown-option"),
    pytest.param("hello", [[]], id="hello-array"),
    pytest.param("auth", [], id="auth-missing"),
    pytest.param("auth", [5], id="auth-int"),
    pytest.param("ping", [1], id="ping-int"),
    pytest.param("ping", [b"a", b"b"], id="ping-two"),
    pytest.param("get", [], id="get-missing"),
    pytest.param("get", [1], id="get-int-key"),
    pytest.param("get", [None], id="get-nil-key"),
    pytest.param("get", [b"a", b"b"], id="get-two"),
    pytest.param("put", [b"k"], id="put-no-value"),
    pytest.param("put", [b"k", 1], id="put-int-value"),
    pytest.param("put", [b"k", b"v", {"ttl": 0}], id="put-ttl-zero"),
    pytest.param("put", [b"k", b"v", {"ttl": -1}], id="put-ttl-negative"),
    pytest.param("put", [b"k", b"v", {"ttl": True}], id="put-ttl-bool"),
    pytest.param("put", [b"k", b"v", {"ttl": float("inf")}], id="put-ttl-inf"),
    pytest.param("put", [b"k", b"v", {"ttl": float("nan")}], id="put-ttl-nan"),
    pytest.param("put", [b"k", b"v", {"ttl": 1e300}], id="put-ttl-1e300"),
    pytest.param("put", [b"k", b"v", {"ttl": 10**17}], id="put-ttl-past-int64-ms"),
    pytest.param("put", [b"k", b"v", {"ttl": 10**400}], id="put-ttl-huge-int"),
    pytest.param("batch", [[["put", b"k", b"v", {"ttl": 1e17}]]], id="batch-ttl-past-int64-ms"),
    pytest.param("put", [b"k", b"v", {"tll": 1}], id="put-typo-option"),
    pytest.param("put", [b"k", b"v", 5], id="put-int-options"),
    pytest.param("mget", [b"k"], id="mget-not-array"),
    pytest.param("mget", [[1]], id="mget-int-key"),
    pytest.param("mput", [[[b"a"]]], id="mput-short-pair"),
    pytest.param("mput", [b"a"], id="mput-bin"),
    pytest.param("batch", [[["get", b"a"]]], id="batch-get"),
    pytest.param("batch", [[["put", b"a"]]], id="batch-short-put"),
    pytest.param("batch", [[[]]], id="batch-empty-op"),
    pytest.param("batch", [{}], id="batch-map"),
    pytest.param("scan", [{"count": 0}], id="scan-count-zero"),
    pytest.param("scan", [{"count": 10**6}], id="scan-count-huge"),
    pytest.param("scan", [{"prefix": 1}], id="scan-int-prefix"),
    pytest.param("stats", [1], id="stats-arg"),
    pytest.param("get", {"key": b"k"}, id="params-map"),
    pytest.param("set", [b"k", b"v", {"nx": True, "xx": True}], id="set-nx-xx"),
    pytest.param("set", [b"k", b"v", {"keep_ttl": True, "ttl": 1}], id="set-keep-ttl-ttl"),
    pytest.param("set", [b"k", b"v", {"ttl": 1, "at_ms": 5}], id="set-ttl-at-ms"),
    pytest.param("set", [b"k", b"v", {"get": 1}], id="set-get-int"),
    pytest.param("set", [b"k", b"v", {"at_ms": 0}], id="set-at-ms-zero"),
    pytest.param("set", [b"k", b"v", {"at_ms": 2**63}], id="set-at-ms-huge"),
    pytest.param("incr", [b"k", 2**63], id="incr-overflow"),
    pytest.param("incr", [b"k", 1.0], id="incr-float-delta"),
    pytest.param("incr", [b"k", True], id="incr-bool"),
    pytest.param("incr_float", [b"k", float("inf")], id="incr-float-inf"),
    pytest.param("incr_float", [b"k"], id="incr-float-no-delta"),
    pytest.param("append", [b"k", 1], id="append-int"),
    pytest.param("expire", [b"k", {}], id="expire-nothing"),
    pytest.param("expire", [b"k", {"ttl": 1, "cond": "ge"}], id="expire-bad-cond"),
    pytest.param("expire", [b"k", {"ttl": 0}], id="expire-ttl-zero"),
    pytest.param("rename", [b"a"], id="rename-one"),
    pytest.param("rename", [b"a", b"b", {"xx": True}], id="rename-xx"),
    pytest.param("clear", [1], id="clear-arg"),
    pytest.param("watch", [[]], id="watch-none"),
    pytest.param("watch", [b"k"], id="watch-bin"),
    pytest.param("unwatch", [0], id="unwatch-zero"),
    pytest.param("commit", [[["get", b"k"]]], id="commit-get"),
    pytest.param("commit", [[["incr"]]], id="commit-incr-no-key"),
    pytest.param("commit", [[[]]], id="commit-empty-op"),
    pytest.param("commit", [[], {"watch": "1"}], id="commit-watch-str"),
    pytest.param("commit", [[], {"w": 1}], id="commit-unknown-option"),
]


def test_table_matches_contract() -> None:
    assert set(METHODS) == CONTRACT_METHODS
    assert set(IDEMPOTENT_METHODS) == CONTRACT_IDEMPOTENT
    for name, spec in METHODS.items():
        assert spec.name == name and spec.doc and spec.params and spec.result


@pytest.mark.parametrize(("method", "params", "expected"), GOOD)
def test_good_params(method: str, params: list[Any], expected: tuple[Any, ...]) -> None:
    assert validate_params(method, params) == expected
    assert validate_params(method, tuple(params)) == expected


@pytest.mark.parametrize(("method", "params", "expected"), GOOD)
def test_every_method_round_trips_on_the_wire(
    method: str, params: list[Any], expected: tuple[Any, ...]
) -> None:
    (msg,) = FrameDecoder().feed(encode_request(12, method, params))
    assert isinstance(msg, Request)
    assert validate_params(msg.method, msg.params) == expected


@pytest.mark.parametrize(("method", "params"), BAD)
def test_bad_params(method: str, params: Any) -> None:
    with pytest.raises(ProtocolError) as info:
        validate_params(method, params)
    assert info.value.code is ErrorCode.INVALID_PARAMS


def test_unknown_method() -> None:
    with pytest.raises(ProtocolError) as info:
        validate_params("flushall", [])
    assert info.value.code is ErrorCode.UNKNOWN_METHOD


def test_ttl_bound_is_an_int64_of_ms_since_the_epoch() -> None:
    # The same bound as Redis: the expiry in ms since the epoch fits a signed 64-bit int.
    now = time.time()
    fits = (MAX_EXPIRY_MS / 1000 - now) / 2
    assert validate_params("put", [b"k", b"v", {"ttl": fits}])[2] == fits
    with pytest.raises(ProtocolError) as info:
        validate_params("put", [b"k", b"v", {"ttl": MAX_EXPIRY_MS / 1000 - now + 3600}])
    assert info.value.code == ErrorCode.INVALID_PARAMS
