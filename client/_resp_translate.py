"""Translation between `Commands`' methods and Redis commands, both ways.

Strategy: a binary method and its params (already checked and normalised by
`Commands`) become one Redis command and a converter (`translate`); the converter
turns the Redis reply into the shape the binary protocol gives for that method
(`delete` -> bool, `ttl` -> seconds, `scan` -> [cursor or None, sorted keys],
`stats` -> `parse_info`'s dict). An error reply becomes the client's typed error
(`error_from_reply`). Everything here is a pure function of its arguments: no
connection, no state, so `RespClient` (client/_resp.py) owns the wire alone.

Invariants:
- Errors map by the error's first word (`NOAUTH`, `WRONGPASS`, `READONLY`, `OOM`,
  `BUSY`, ...). Redis gives some conditions only as `ERR` plus a fixed text (an
  integer out of range, RENAME's missing key); those few texts are matched in
  `_ERR_TEXTS`, the one place that reads a message.
- A method with no Redis equivalent is named in `NO_EQUIVALENT` (merge, sync,
  batch, commit, backup): the client refuses it before anything is sent.
- TTLs travel as whole milliseconds, at least 1 (a TTL never rounds down to none);
  a scan prefix is glob-escaped, so `MATCH` matches it literally.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

from client.errors import (
    AuthFailedError,
    AuthRequiredError,
    BusyError,
    InterfaceError,
    NoSuchKeyError,
    NotANumberError,
    ReadOnlyError,
    ServerError,
    StoreFullError,
)
from protocol._resp_client import ErrorReply

__all__ = ["NO_EQUIVALENT", "Convert", "error_from_reply", "parse_info", "translate"]

# ---------------------------------------------------------------- error mapping

_BY_PREFIX: dict[str, type[ServerError]] = {
    "NOAUTH": AuthRequiredError,
    "WRONGPASS": AuthFailedError,
    "READONLY": ReadOnlyError,
    "OOM": StoreFullError,
    "BUSY": BusyError,
    "LOADING": BusyError,
}

# Conditions Redis reports only as `ERR <fixed text>`: the prefix of that text.
_ERR_TEXTS: tuple[tuple[str, type[ServerError]], ...] = (
    ("value is not an integer", NotANumberError),
    ("value is not a valid float", NotANumberError),
    ("increment or decrement would overflow", NotANumberError),
    ("increment would produce NaN or Infinity", NotANumberError),
    ("decrement would overflow", NotANumberError),
    ("no such key", NoSuchKeyError),
    ("invalid password", AuthFailedError),
    ("AUTH <password> called without any password", AuthFailedError),
    ("Client sent AUTH, but no password is set", AuthFailedError),
    ("invalid username-password pair", AuthFailedError),
)


def error_from_reply(reply: ErrorReply) -> ServerError:
    """The typed client error for a Redis error reply.

    A known kind gets its class and the project's code name (`NOT_A_NUMBER value is
    not an integer or out of range`); any other keeps Redis's first word as its name
    (`WRONGTYPE ...`, `ERR unknown command ...`) with code 0.

    Example:
        >>> type(error_from_reply(ErrorReply("NOAUTH", "Authentication required."))).__name__
        'AuthRequiredError'
    """
    cls = _BY_PREFIX.get(reply.code)
    if cls is None and reply.code == "ERR":
        cls = next((c for text, c in _ERR_TEXTS if reply.message.startswith(text)), None)
    if cls is None:
        return ServerError(0, reply.code, reply.message)
    err: ServerError = cls.local(reply.message)
    return err


# ---------------------------------------------------------------- translation

Convert = Callable[[Any], Any]
Translation = tuple[list[bytes], Convert]


def _same(reply: Any) -> Any:
    return reply


def _truthy(reply: Any) -> bool:
    return bool(reply)


def _ms(seconds: float) -> bytes:
    """Seconds as whole milliseconds, at least 1 (a TTL never rounds down to none)."""
    return b"%d" % max(1, math.ceil(seconds * 1000))


def _opts(params: list[Any], index: int) -> dict[str, Any]:
    return params[index] if len(params) > index and isinstance(params[index], dict) else {}


def _expiry(opts: dict[str, Any]) -> list[bytes]:
    if opts.get("ttl") is not None:
        return [b"PX", _ms(opts["ttl"])]
    if opts.get("at_ms") is not None:
        return [b"PXAT", b"%d" % opts["at_ms"]]
    return []


def _put(p: list[Any]) -> Translation:
    return [b"SET", p[0], p[1], *_expiry(_opts(p, 2))], _same


def _set(p: list[Any]) -> Translation:
    opts = _opts(p, 2)
    argv = [b"SET", p[0], p[1]]
    argv += [word for name, word in _SET_WORDS if opts.get(name)]
    argv += _expiry(opts)
    if opts.get("get"):
        return argv, _same
    return argv, lambda reply: reply is not None


_SET_WORDS = (("nx", b"NX"), ("xx", b"XX"), ("get", b"GET"), ("keep_ttl", b"KEEPTTL"))


def _ttl(p: list[Any]) -> Translation:
    def seconds(ms: int) -> float:
        return ms if ms < 0 else ms / 1000

    return [b"PTTL", p[0]], seconds


def _incr(p: list[Any]) -> Translation:
    if len(p) == 1:
        return [b"INCR", p[0]], int
    return [b"INCRBY", p[0], b"%d" % p[1]], int


def _incr_float(p: list[Any]) -> Translation:
    return [b"INCRBYFLOAT", p[0], repr(float(p[1])).encode()], float


def _expire(p: list[Any]) -> Translation:
    opts = _opts(p, 1)
    if opts.get("ttl") is not None:
        argv = [b"PEXPIRE", p[0], _ms(opts["ttl"])]
    else:
        argv = [b"PEXPIREAT", p[0], b"%d" % opts["at_ms"]]
    if opts.get("cond"):
        argv.append(str(opts["cond"]).upper().encode())
    return argv, _truthy


def _rename(p: list[Any]) -> Translation:
    if _opts(p, 2).get("nx"):
        return [b"RENAMENX", p[0], p[1]], _truthy
    return [b"RENAME", p[0], p[1]], _truthy


def _mput(p: list[Any]) -> Translation:
    argv = [b"MSET"]
    for key, value in p[0]:
        argv += [key, value]
    return argv, _same


def _glob_escape(prefix: bytes) -> bytes:
    out = bytearray()
    for b in prefix:
        if b in b"*?[]\\":
            out.append(0x5C)
        out.append(b)
    return bytes(out)


def _scan(p: list[Any]) -> Translation:
    opts = p[0]
    argv = [b"SCAN", opts.get("cursor") or b"0"]
    if opts.get("prefix"):
        argv += [b"MATCH", _glob_escape(opts["prefix"]) + b"*"]
    argv += [b"COUNT", b"%d" % opts.get("count", 10)]

    def page(reply: Any) -> list[Any]:
        if not isinstance(reply, list) or len(reply) != 2:
            raise InterfaceError(f"unexpected SCAN reply {reply!r:.80}")
        cursor, keys = reply
        return [None if cursor in (b"0", 0) else cursor, sorted(keys)]

    return argv, page


def parse_info(text: bytes) -> dict[str, Any]:
    """INFO's `name:value` lines as a dict (numbers as numbers), plus `keys` (db0).

    Example:
        >>> parse_info(b"# Server\\r\\nredis_version:7.0.15\\r\\n# Keyspace\\r\\ndb0:keys=3,expires=0\\r\\n")
        {'redis_version': '7.0.15', 'db0': 'keys=3,expires=0', 'keys': 3}
    """
    out: dict[str, Any] = {}
    for raw in text.decode("utf-8", "replace").splitlines():
        if not raw or raw.startswith("#") or ":" not in raw:
            continue
        name, _, value = raw.partition(":")
        out[name] = _number(value)
    db0 = out.get("db0")
    keys = 0
    if isinstance(db0, str):
        fields = dict(f.partition("=")[::2] for f in db0.split(","))
        keys = int(fields.get("keys", "0") or 0)
    out["keys"] = keys
    return out


def _number(text: str) -> Any:
    for kind in (int, float):
        try:
            return kind(text)
        except ValueError:
            pass
    return text


_TRANSLATE: dict[str, Callable[[list[Any]], Translation]] = {
    "get": lambda p: ([b"GET", p[0]], _same),
    "put": _put,
    "delete": lambda p: ([b"DEL", p[0]], _truthy),
    "exists": lambda p: ([b"EXISTS", p[0]], _truthy),
    "ttl": _ttl,
    "set": _set,
    "incr": _incr,
    "incr_float": _incr_float,
    "append": lambda p: ([b"APPEND", p[0], p[1]], int),
    "get_delete": lambda p: ([b"GETDEL", p[0]], _same),
    "expire": _expire,
    "persist": lambda p: ([b"PERSIST", p[0]], _truthy),
    "rename": _rename,
    "mget": lambda p: ([b"MGET", *p[0]], _same),
    "mput": _mput,
    "scan": _scan,
    "ping": lambda p: ([b"PING", *p], _same),
    "stats": lambda p: ([b"INFO"], parse_info),
}

NO_EQUIVALENT = {
    "merge": "merge (compacting data files)",
    "sync": "sync (fsync on demand)",
    "batch": "batches",
    "commit": "bitcask transactions",
    "backup": "backup (snapshots)",
}


def translate(method: str, params: list[Any]) -> Translation | None:
    """The Redis command for binary `method` with `params`, and the converter of its
    reply; None for a method this table does not know.

    Example:
        >>> argv, convert = translate("ttl", [b"k"])
        >>> argv, convert(1500)
        ([b'PTTL', b'k'], 1.5)
    """
    make = _TRANSLATE.get(method)
    return None if make is None else make(params)
