"""The params of every method: what each accepts, normalised (keys and values as bytes).

Strategy: one `_v_<method>` function per params shape, each given params whose arity
`validate_params` (protocol/methods.py) already checked; it returns them normalised
(optional fields filled in) or raises ProtocolError(INVALID_PARAMS) naming what is
wrong. The rules shared by several methods are written once here: `_bytes` (bin or
str), `_ttl` (the one TTL rule, bounded by MAX_EXPIRY_MS), `_options` (a map of known
options), `_when` (ttl or at_ms). The method table that names these functions, and
`commit`'s check of its ops against that table, are protocol/methods.py. Sizes are
not checked here: the limits belong to the server's store.
"""

from __future__ import annotations

import math
import time
from collections.abc import Sequence
from typing import Any

from protocol.errors import ErrorCode, ProtocolError

__all__ = [
    "EXPIRE_CONDITIONS",
    "MAX_EXPIRY_MS",
    "SCAN_DEFAULT_COUNT",
    "SCAN_MAX_COUNT",
    "SNAPSHOT_MAX_CHUNK",
]

SCAN_DEFAULT_COUNT = 100
SCAN_MAX_COUNT = 10_000
MAX_EXPIRY_MS = 2**63 - 1
"""The latest expiry a TTL may reach, in ms since the epoch (Redis's bound: a signed
64-bit integer). A ttl beyond it is INVALID_PARAMS, never a failed write."""


def _invalid(message: str) -> ProtocolError:
    return ProtocolError(message, ErrorCode.INVALID_PARAMS)


def _bytes(value: Any, what: str) -> bytes:
    """A key, value or token as bytes: bin as is, str UTF-8 encoded."""
    t = type(value)
    if t is bytes:
        return value  # type: ignore[no-any-return]
    if t is str:
        return value.encode("utf-8")  # type: ignore[no-any-return]
    if t is bytearray or t is memoryview:
        return bytes(value)
    raise _invalid(f"{what} must be bin or str, got {t.__name__}")


def _ttl(value: Any) -> float | None:
    """The one TTL rule: a finite number of seconds > 0 whose expiry fits MAX_EXPIRY_MS."""
    if value is None:
        return None
    kind = type(value)
    if (kind is not int and kind is not float) or value <= 0 or value != value:  # NaN
        raise _invalid(f"ttl must be a number of seconds > 0, got {value!r}")
    if kind is float and not math.isfinite(value):
        raise _invalid(f"ttl must be a number of seconds > 0, got {value!r}")
    if value > MAX_EXPIRY_MS / 1000 - time.time():  # int vs float compares exactly
        raise _invalid(f"ttl of {value!r} seconds expires beyond 2**63-1 ms since the epoch")
    return float(value)


def _options(value: Any, allowed: Sequence[str], what: str) -> dict[str, Any]:
    if type(value) is not dict:
        raise _invalid(f"{what} must be a map, got {type(value).__name__}")
    unknown = [k for k in value if k not in allowed]
    if unknown:
        raise _invalid(f"{what}: unknown option(s) {unknown!r}; allowed: {list(allowed)}")
    return value


def _arity(params: Sequence[Any], low: int, high: int, method: str) -> None:
    if not low <= len(params) <= high:
        want = str(low) if low == high else f"{low}..{high}"
        raise _invalid(f"{method} takes {want} params, got {len(params)}")


def _v_none(params: Sequence[Any]) -> tuple[Any, ...]:
    return ()


def _v_key(params: Sequence[Any]) -> tuple[Any, ...]:
    return (_bytes(params[0], "key"),)


def _v_hello(params: Sequence[Any]) -> tuple[Any, ...]:
    if not params:
        return (None, None, None)
    opts = _options(params[0], ("protocol", "auth", "client"), "hello options")
    version = opts.get("protocol")
    if version is not None and (type(version) is not int or version < 1):
        raise _invalid(f"hello: protocol must be an int >= 1, got {version!r}")
    auth = opts.get("auth")
    token = None if auth is None else _bytes(auth, "auth token")
    client = opts.get("client")
    if client is not None and type(client) is not str:
        raise _invalid("hello: client must be a str")
    return (version, token, client)


def _v_auth(params: Sequence[Any]) -> tuple[Any, ...]:
    return (_bytes(params[0], "auth token"),)


def _v_ping(params: Sequence[Any]) -> tuple[Any, ...]:
    if not params:
        return ()
    payload = params[0]
    if type(payload) is not bytes and type(payload) is not str:
        raise _invalid("ping payload must be bin or str")
    return (payload,)


def _v_put(params: Sequence[Any]) -> tuple[Any, ...]:
    key = _bytes(params[0], "key")
    value = _bytes(params[1], "value")
    ttl = None
    if len(params) == 3:
        ttl = _ttl(_options(params[2], ("ttl",), "put options").get("ttl"))
    return (key, value, ttl)


def _key_list(value: Any, what: str) -> list[bytes]:
    if type(value) is not list and type(value) is not tuple:
        raise _invalid(f"{what} must be an array of keys")
    return [_bytes(k, "key") for k in value]


def _v_mget(params: Sequence[Any]) -> tuple[Any, ...]:
    return (_key_list(params[0], "mget"),)


def _v_mput(params: Sequence[Any]) -> tuple[Any, ...]:
    items = params[0]
    if type(items) is dict:
        return ([(_bytes(k, "key"), _bytes(v, "value")) for k, v in items.items()],)
    if type(items) is list or type(items) is tuple:
        pairs: list[tuple[bytes, bytes]] = []
        for pair in items:
            if (type(pair) is not list and type(pair) is not tuple) or len(pair) != 2:
                raise _invalid("mput pairs must be [key, value]")
            pairs.append((_bytes(pair[0], "key"), _bytes(pair[1], "value")))
        return (pairs,)
    raise _invalid("mput takes a map or an array of [key, value] pairs")


def _v_batch(params: Sequence[Any]) -> tuple[Any, ...]:
    ops = params[0]
    if type(ops) is not list and type(ops) is not tuple:
        raise _invalid("batch takes an array of operations")
    out: list[tuple[Any, ...]] = []
    for i, op in enumerate(ops):
        if (type(op) is not list and type(op) is not tuple) or not op:
            raise _invalid(f"batch op {i} must be a non-empty array")
        kind = op[0]
        if kind == "put" and 3 <= len(op) <= 4:
            ttl = None
            if len(op) == 4:
                ttl = _ttl(_options(op[3], ("ttl",), "put options").get("ttl"))
            out.append(("put", _bytes(op[1], "key"), _bytes(op[2], "value"), ttl))
        elif kind == "delete" and len(op) == 2:
            out.append(("delete", _bytes(op[1], "key")))
        else:
            raise _invalid(f'batch op {i} must be ["put", k, v(, opts)] or ["delete", k]')
    return (out,)


def _v_scan(params: Sequence[Any]) -> tuple[Any, ...]:
    opts = _options(params[0], ("prefix", "cursor", "count"), "scan options") if params else {}
    prefix = opts.get("prefix")
    cursor = opts.get("cursor")
    count = opts.get("count")
    if count is None:
        count = SCAN_DEFAULT_COUNT
    elif type(count) is not int or not 1 <= count <= SCAN_MAX_COUNT:
        raise _invalid(f"scan count must be an int in 1..{SCAN_MAX_COUNT}, got {count!r}")
    return (
        b"" if prefix is None else _bytes(prefix, "prefix"),
        None if cursor is None else _bytes(cursor, "cursor"),
        count,
    )


# ---- atomic read-modify-write (decided by the server's one writer at apply time) ----

I64_MIN = -(2**63)
I64_MAX = 2**63 - 1
EXPIRE_CONDITIONS = ("", "nx", "xx", "gt", "lt")
"""`expire`'s `cond`: "" always, "nx" only without an expiry, "xx" only with one,
"gt" / "lt" only if later / earlier than the current one (none counts as never)."""


def _flag(opts: dict[str, Any], name: str) -> bool:
    """A bool option; nil is the option left out, as for every other option."""
    value = opts.get(name)
    if value is None:
        return False
    if type(value) is not bool:
        raise _invalid(f"{name} must be true or false, got {value!r}")
    return value


def _at_ms(value: Any) -> int | None:
    """An absolute expiry: int ms since the epoch in 1..MAX_EXPIRY_MS (past: expired)."""
    if value is None:
        return None
    if type(value) is not int or not 1 <= value <= MAX_EXPIRY_MS:
        raise _invalid(f"at_ms must be an int of ms since the epoch in 1..2**63-1, got {value!r}")
    return value


def _when(opts: dict[str, Any]) -> tuple[float | None, int | None]:
    ttl = _ttl(opts.get("ttl"))
    at_ms = _at_ms(opts.get("at_ms"))
    if ttl is not None and at_ms is not None:
        raise _invalid("give ttl or at_ms, not both")
    return ttl, at_ms


def _v_set(params: Sequence[Any]) -> tuple[Any, ...]:
    key = _bytes(params[0], "key")
    value = _bytes(params[1], "value")
    opts: dict[str, Any] = {}
    if len(params) == 3:
        opts = _options(params[2], ("nx", "xx", "get", "keep_ttl", "ttl", "at_ms"), "set options")
    nx, xx, get, keep = (_flag(opts, f) for f in ("nx", "xx", "get", "keep_ttl"))
    if nx and xx:
        raise _invalid("set: nx and xx exclude each other")
    ttl, at_ms = _when(opts)
    if keep and (ttl is not None or at_ms is not None):
        raise _invalid("set: keep_ttl excludes ttl and at_ms")
    return (key, value, nx, xx, get, keep, ttl, at_ms)


def _v_incr(params: Sequence[Any]) -> tuple[Any, ...]:
    delta = params[1] if len(params) == 2 else 1
    if type(delta) is not int or not I64_MIN <= delta <= I64_MAX:
        raise _invalid(f"incr delta must be a signed 64-bit int, got {delta!r}")
    return (_bytes(params[0], "key"), delta)


def _v_incr_float(params: Sequence[Any]) -> tuple[Any, ...]:
    delta = params[1]
    kind = type(delta)
    if (kind is not int and kind is not float) or not math.isfinite(delta):
        raise _invalid(f"incr_float delta must be a finite number, got {delta!r}")
    return (_bytes(params[0], "key"), float(delta))


def _v_append(params: Sequence[Any]) -> tuple[Any, ...]:
    return (_bytes(params[0], "key"), _bytes(params[1], "suffix"))


def _v_expire(params: Sequence[Any]) -> tuple[Any, ...]:
    opts = _options(params[1], ("ttl", "at_ms", "cond"), "expire options")
    ttl, at_ms = _when(opts)
    if ttl is None and at_ms is None:
        raise _invalid("expire needs ttl or at_ms (persist removes an expiry)")
    cond = opts.get("cond", "")
    if cond is None:
        cond = ""
    if type(cond) is not str or cond not in EXPIRE_CONDITIONS:
        raise _invalid(f"expire cond must be one of {list(EXPIRE_CONDITIONS)}, got {cond!r}")
    return (_bytes(params[0], "key"), ttl, at_ms, cond)


def _v_rename(params: Sequence[Any]) -> tuple[Any, ...]:
    nx = False
    if len(params) == 3:
        nx = _flag(_options(params[2], ("nx",), "rename options"), "nx")
    return (_bytes(params[0], "key"), _bytes(params[1], "key"), nx)


def _v_watch(params: Sequence[Any]) -> tuple[Any, ...]:
    keys = _key_list(params[0], "watch")
    if not keys:
        raise _invalid("watch needs at least one key")
    return (keys,)


def _watch_id(value: Any) -> int:
    if type(value) is not int or not 1 <= value <= I64_MAX:
        raise _invalid(f"a watch id is a positive int from watch, got {value!r}")
    return value


def _v_unwatch(params: Sequence[Any]) -> tuple[Any, ...]:
    return (_watch_id(params[0]) if params else None,)


# Online backup (docs/protocol.md, "Snapshots"): the client pulls each chunk with its own
# request against a snapshot id, so every reply stays one bounded frame.
SNAPSHOT_MAX_CHUNK = 1 << 20
"""The largest `length` a snapshot_read may ask for (1 MiB)."""


def _snapshot_id(value: Any) -> str:
    if type(value) is bytes:
        value = value.decode("utf-8", "replace")
    if type(value) is not str or not 0 < len(value) <= 128:
        raise _invalid("snapshot id must be a str of 1..128 characters")
    return value


def _v_snapshot_begin(params: Sequence[Any]) -> tuple[Any, ...]:
    opts = _options(params[0], ("timeout",), "snapshot_begin options") if params else {}
    timeout = opts.get("timeout")
    if timeout is not None and (
        type(timeout) not in (int, float) or not 0 < timeout <= 86400 or timeout != timeout
    ):
        raise _invalid(f"snapshot timeout must be seconds in (0, 86400], got {timeout!r}")
    return (None if timeout is None else float(timeout),)


def _v_snapshot_read(params: Sequence[Any]) -> tuple[Any, ...]:
    snap_id = _snapshot_id(params[0])
    name = params[1]
    if type(name) is bytes:
        name = name.decode("utf-8", "replace")
    if type(name) is not str or not name or "/" in name or name.startswith("."):
        raise _invalid("snapshot_read: name must be a file name of the snapshot")
    offset, length = params[2], params[3]
    if type(offset) is not int or offset < 0:
        raise _invalid(f"snapshot_read: offset must be an int >= 0, got {offset!r}")
    if type(length) is not int or not 0 < length <= SNAPSHOT_MAX_CHUNK:
        raise _invalid(
            f"snapshot_read: length must be an int in 1..{SNAPSHOT_MAX_CHUNK}, got {length!r}"
        )
    return (snap_id, name, offset, length)


def _v_snapshot_end(params: Sequence[Any]) -> tuple[Any, ...]:
    return (_snapshot_id(params[0]),)
