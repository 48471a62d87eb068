"""The method table: every method's params, result, idempotency and doc, in one place.

Strategy: `METHODS` is the single source of truth. The server validates incoming
params with `validate_params` (which returns them normalised: keys and values as
bytes, optional fields filled in), the client reads the `idempotent` flag to
decide what it may retry after a reconnect, the shell and docs read `params`,
`result` and `doc`. Sizes are not checked here: the limits belong to the server's
store and come back as KEY_TOO_LARGE / VALUE_TOO_LARGE / BATCH_TOO_LARGE.

Here: the table, `validate_params` (arity, then the row's `normalise`) and `commit`'s
check of its ops against the table. What each method's params may be (the
`_v_<method>` functions and the rules they share: bin or str, ttl, options) is
protocol/_params.py; its bounds (MAX_EXPIRY_MS, SCAN_MAX_COUNT, ...) are named here too.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from types import MappingProxyType
from typing import Any

from protocol._params import (
    EXPIRE_CONDITIONS,
    MAX_EXPIRY_MS,
    SCAN_DEFAULT_COUNT,
    SCAN_MAX_COUNT,
    SNAPSHOT_MAX_CHUNK,
    _arity,
    _invalid,
    _options,
    _v_append,
    _v_auth,
    _v_batch,
    _v_expire,
    _v_hello,
    _v_incr,
    _v_incr_float,
    _v_key,
    _v_mget,
    _v_mput,
    _v_none,
    _v_ping,
    _v_put,
    _v_rename,
    _v_scan,
    _v_set,
    _v_snapshot_begin,
    _v_snapshot_end,
    _v_snapshot_read,
    _v_unwatch,
    _v_watch,
    _watch_id,
)
from protocol.errors import ErrorCode, ProtocolError

__all__ = [
    "COMMIT_OPS",
    "EXPIRE_CONDITIONS",
    "IDEMPOTENT_METHODS",
    "MAX_EXPIRY_MS",
    "METHODS",
    "PROTOCOL_VERSION",
    "SCAN_DEFAULT_COUNT",
    "SCAN_MAX_COUNT",
    "SNAPSHOT_MAX_CHUNK",
    "MethodSpec",
    "validate_params",
]

PROTOCOL_VERSION = 1

# Methods allowed as ops of a `commit`: [method, *params], checked as the method.
COMMIT_OPS = (
    "put", "delete", "set", "incr", "incr_float", "append", "get_delete", "expire",
    "persist", "rename",
)  # fmt: skip


def _v_commit(params: Sequence[Any]) -> tuple[Any, ...]:
    ops = params[0]
    if type(ops) is not list and type(ops) is not tuple:
        raise _invalid("commit takes an array of operations")
    out: list[tuple[Any, ...]] = []
    for i, op in enumerate(ops):
        if (type(op) is not list and type(op) is not tuple) or not op:
            raise _invalid(f"commit op {i} must be a non-empty array [method, params...]")
        name = op[0]
        if name not in COMMIT_OPS:
            raise _invalid(f"commit op {i}: {name!r} is not one of {list(COMMIT_OPS)}")
        spec = METHODS[name]
        try:
            _arity(op[1:], spec.min_params, spec.max_params, name)
            out.append((name, *spec.normalise(op[1:])))
        except ProtocolError as exc:
            raise _invalid(f"commit op {i}: {exc.message}") from None
    watch = None
    if len(params) == 2:
        opts = _options(params[1], ("watch",), "commit options")
        if opts.get("watch") is not None:
            watch = _watch_id(opts["watch"])
    return (out, watch)


@dataclass(frozen=True, slots=True)
class MethodSpec:
    """One row of the method table.

    Attributes:
        name: the wire name, e.g. "put".
        params: the accepted param shapes, as written in docs/protocol.md.
        result: the result shape.
        idempotent: True when repeating the call cannot change the outcome, so a
            client may retry it automatically after a reconnect.
        doc: one line saying what the method does.
        min_params, max_params: the accepted arity.
        normalise: checks params (arity already checked) and returns them
            normalised; raises ProtocolError(INVALID_PARAMS).
    """

    name: str
    params: tuple[str, ...]
    result: str
    idempotent: bool
    doc: str
    min_params: int
    max_params: int
    normalise: Callable[[Sequence[Any]], tuple[Any, ...]]


def _spec(
    name: str,
    params: tuple[str, ...],
    result: str,
    idempotent: bool,
    doc: str,
    arity: tuple[int, int],
    normalise: Callable[[Sequence[Any]], tuple[Any, ...]],
) -> MethodSpec:
    return MethodSpec(name, params, result, idempotent, doc, arity[0], arity[1], normalise)


_TABLE = (
    _spec("hello", ("[]", '[{"protocol": 1, "auth": token, "client": name}]'),
          "map: server, version, protocol, auth_required, authenticated, limits", True,
          "Negotiate the protocol version, optionally authenticate, learn the limits.",
          (0, 1), _v_hello),
    _spec("auth", ("[token]",), "true", True,
          "Authenticate this connection with the server's token.", (1, 1), _v_auth),
    _spec("ping", ("[]", "[payload]"), '"PONG" | payload', True,
          "Check the connection; echoes the payload if one is given.", (0, 1), _v_ping),
    _spec("get", ("[key]",), "bin | nil", True,
          "The value stored under key, or nil.", (1, 1), _v_key),
    _spec("put", ("[key, value]", '[key, value, {"ttl": seconds}]'), "true", False,
          "Store value under key, optionally expiring after ttl seconds.", (2, 3), _v_put),
    _spec("delete", ("[key]",), "bool", False,
          "Remove key; true if it existed.", (1, 1), _v_key),
    _spec("exists", ("[key]",), "bool", True,
          "Whether key holds a value.", (1, 1), _v_key),
    _spec("ttl", ("[key]",), "float | -1 | -2", True,
          "Seconds left before key expires; -1 without a TTL, -2 if missing.", (1, 1), _v_key),
    _spec("mget", ("[[key, ...]]",), "[bin | nil, ...]", True,
          "The values of many keys, in order.", (1, 1), _v_mget),
    _spec("mput", ("[{key: value, ...}]", "[[[key, value], ...]]"), "true", False,
          "Store many pairs atomically.", (1, 1), _v_mput),
    _spec("batch", ('[[["put", key, value(, {"ttl": s})] | ["delete", key], ...]]',),
          "[true | bool, ...]", False,
          "Apply puts and deletes atomically; one result per op.", (1, 1), _v_batch),
    _spec("scan", ("[]", '[{"prefix": bin, "cursor": bin | nil, "count": int}]'),
          "[next_cursor | nil, [key, ...]]", True,
          "Page through keys in ascending byte order.", (0, 1), _v_scan),
    _spec("stats", ("[]",), "map", True,
          "Store statistics plus server counters.", (0, 0), _v_none),
    _spec("merge", ("[]",), "map (merge report)", False,
          "Compact the data files now.", (0, 0), _v_none),
    _spec("sync", ("[]",), "true", True,
          "fsync the active data file.", (0, 0), _v_none),
    _spec("set", ("[key, value]",
                  '[key, value, {"nx": bool, "xx": bool, "get": bool, "keep_ttl": bool, '
                  '"ttl": seconds | "at_ms": ms}]'),
          "bool (applied) | with get: the old bin | nil", False,
          "Store value only if key is absent (nx) / present (xx); optionally return the "
          "old value.", (2, 3), _v_set),
    _spec("incr", ("[key]", "[key, delta]"), "int", False,
          "Add delta (default 1) to the integer at key (absent: 0); keeps its TTL.",
          (1, 2), _v_incr),
    _spec("incr_float", ("[key, delta]",), "bin (the number as stored)", False,
          "Add a float delta to the number at key (absent: 0); keeps its TTL.",
          (2, 2), _v_incr_float),
    _spec("append", ("[key, suffix]",), "int (the new length)", False,
          "Append suffix to the value at key (absent: create it); keeps its TTL.",
          (2, 2), _v_append),
    _spec("get_delete", ("[key]",), "bin | nil", False,
          "Delete key and return the value it had.", (1, 1), _v_key),
    _spec("expire", ('[key, {"ttl": seconds | "at_ms": ms, "cond": "nx"|"xx"|"gt"|"lt"}]',),
          "bool (applied)", False,
          "Give an existing key an expiry (in the past: delete it).", (2, 2), _v_expire),
    _spec("persist", ("[key]",), "bool (it had an expiry)", False,
          "Remove the expiry of key.", (1, 1), _v_key),
    _spec("rename", ("[key, new_key]", '[key, new_key, {"nx": bool}]'), "bool (moved)", False,
          "Move the value and expiry of key to new_key (nx: only if new_key is absent).",
          (2, 3), _v_rename),
    _spec("clear", ("[]",), "int (keys deleted)", False,
          "Delete every key, atomically.", (0, 0), _v_none),
    _spec("watch", ("[[key, ...]]",), "int (a watch id of this connection)", False,
          "Start watching keys: a commit with this watch applies only if none was written.",
          (1, 1), _v_watch),
    _spec("unwatch", ("[]", "[watch_id]"), "true", False,
          "Release one watch of this connection, or all of them.", (0, 1), _v_unwatch),
    _spec("commit", ("[[op, ...]]", '[[op, ...], {"watch": watch_id}]'),
          "[result, ...] | nil (a watched key was written)", False,
          "Apply ops atomically, each decided at apply time; op = [method, params...].",
          (1, 2), _v_commit),
)  # fmt: skip

# Online backup (docs/protocol.md, "Snapshots"): snapshot_begin, snapshot_read, snapshot_end.
_SNAPSHOT_TABLE = (
    _spec("snapshot_begin", ("[]", '[{"timeout": seconds}]'),
          "map: id, files [{name, size, crc}], manifest", False,
          "Take a consistent cut and pin its files for this connection (backup).",
          (0, 1), _v_snapshot_begin),
    _spec("snapshot_read", ("[id, name, offset, length]",), "bin (b\"\" at the end)", True,
          "Up to length (<= 1 MiB) bytes of one file of a snapshot.", (4, 4), _v_snapshot_read),
    _spec("snapshot_end", ("[id]",), "map: complete, bytes", True,
          "Release a snapshot's pins.", (1, 1), _v_snapshot_end),
)  # fmt: skip

METHODS: Mapping[str, MethodSpec] = MappingProxyType(
    {s.name: s for s in (*_TABLE, *_SNAPSHOT_TABLE)}
)
"""Every method of protocol version 1, by wire name."""

IDEMPOTENT_METHODS: frozenset[str] = frozenset(s.name for s in METHODS.values() if s.idempotent)


def validate_params(method: str, params: Sequence[Any]) -> tuple[Any, ...]:
    """Check a method's params and return them normalised.

    Normalised forms (keys, values and tokens always bytes):
        hello  -> (protocol | None, token | None, client | None)
        auth   -> (token,)              ping -> () | (payload,)
        get, delete, exists, ttl -> (key,)
        put    -> (key, value, ttl_seconds | None)
        mget   -> ([key, ...],)         mput -> ([(key, value), ...],)
        batch  -> ([("put", key, value, ttl | None) | ("delete", key), ...],)
        scan   -> (prefix, cursor | None, count)
        stats, merge, sync -> ()
        set    -> (key, value, nx, xx, get, keep_ttl, ttl | None, at_ms | None)
        incr   -> (key, delta)          incr_float -> (key, delta_float)
        append -> (key, suffix)         get_delete, persist -> (key,)
        expire -> (key, ttl | None, at_ms | None, cond)
        rename -> (key, new_key, nx)    clear -> ()
        watch  -> ([key, ...],)         unwatch -> (watch_id | None,)
        commit -> ([(method, *normalised params), ...], watch_id | None)
        snapshot_begin -> (timeout_seconds | None,)
        snapshot_read  -> (id, name, offset, length)      snapshot_end -> (id,)

    Args:
        method: the wire method name.
        params: the params array as decoded.

    Returns:
        The normalised argument tuple.

    Raises:
        ProtocolError: code UNKNOWN_METHOD for a name not in METHODS,
            INVALID_PARAMS for wrong arity or types.

    Example:
        >>> validate_params("put", ["k", b"v", {"ttl": 5}])
        (b'k', b'v', 5.0)
    """
    spec = METHODS.get(method)
    if spec is None:
        raise ProtocolError(f"unknown method {method!r}", ErrorCode.UNKNOWN_METHOD)
    if type(params) is not list and type(params) is not tuple:
        raise _invalid("params must be an array")
    _arity(params, spec.min_params, spec.max_params, method)
    return spec.normalise(params)
