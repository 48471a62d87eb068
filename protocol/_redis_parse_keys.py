"""The parsers of the commands on keys: strings (SET, GETEX, INCR, MSET, ...) and the key space (EXPIRE, SCAN, COPY, FLUSHDB, ...).

Strategy / invariants: argv already checked for arity (redis_commands.check_command);
each parser validates the rest as Redis 7 does, in Redis's order, so the first
error Redis would answer is the one raised. Expiry options become an absolute
`expire_at_ms` from the caller's `now_ms`, with Redis's overflow rules. `KEY_PARSERS`
is this family's rows of the parser table (protocol/redis_commands.py joins them).
"""

from __future__ import annotations

from collections.abc import Mapping
from types import MappingProxyType

from protocol._redis_args import (
    EXPIRE_UNITS,
    LLONG_MAX,
    LLONG_MIN,
    SYNTAX_ERROR,
    CommandError,
    Parser,
    all_keys,
    bare,
    cstr,
    expire_at,
    float_arg,
    int32_arg,
    int_arg,
    is_word,
    one_key,
)
from protocol._redis_requests import (
    Append,
    Command,
    Copy,
    DbSize,
    Del,
    Exists,
    Expire,
    FlushAll,
    FlushDb,
    Get,
    GetDel,
    GetEx,
    IncrBy,
    IncrByFloat,
    Keys,
    MemoryUsage,
    MGet,
    MSet,
    ObjectInfo,
    Persist,
    RandomKey,
    Rename,
    Scan,
    Set,
    SetNx,
    StrLen,
    Ttl,
    Type,
)

__all__ = ["KEY_PARSERS"]


def _p_set(name: str, a: list[bytes], now_ms: int) -> Command:
    nx = xx = get = keep_ttl = False
    unit: tuple[bool, bool] | None = None
    amount: bytes | None = None
    j = 3
    while j < len(a):
        opt = a[j].lower()
        has_next = j + 1 < len(a)
        if opt == b"nx" and not xx:
            nx = True
        elif opt == b"xx" and not nx:
            xx = True
        elif opt == b"get":
            get = True
        elif opt == b"keepttl" and unit is None:
            keep_ttl = True
        elif (
            opt in EXPIRE_UNITS and not keep_ttl and unit in (None, EXPIRE_UNITS[opt]) and has_next
        ):
            unit = EXPIRE_UNITS[opt]
            amount = a[j + 1]
            j += 1
        else:
            raise CommandError(SYNTAX_ERROR)
        j += 1
    at = None
    if unit is not None and amount is not None:
        at = expire_at(name, int_arg(amount), unit[0], unit[1], now_ms)
    return Set(name, a[1], a[2], nx, xx, get, at, keep_ttl)


def _p_getex(name: str, a: list[bytes], now_ms: int) -> Command:
    persist = False
    unit: tuple[bool, bool] | None = None
    amount: bytes | None = None
    j = 2
    while j < len(a):
        opt = a[j].lower()
        if opt == b"persist" and unit is None:
            persist = True
        elif (
            opt in EXPIRE_UNITS
            and not persist
            and unit in (None, EXPIRE_UNITS[opt])
            and j + 1 < len(a)
        ):
            unit = EXPIRE_UNITS[opt]
            amount = a[j + 1]
            j += 1
        else:
            raise CommandError(SYNTAX_ERROR)
        j += 1
    at = None
    if unit is not None and amount is not None:
        try:
            at = expire_at(name, int_arg(amount), unit[0], unit[1], now_ms)
        except CommandError as exc:
            return GetEx(name, a[1], None, persist, exc.message)
    return GetEx(name, a[1], at, persist)


def _p_setex(name: str, a: list[bytes], now_ms: int) -> Command:
    at = expire_at(name, int_arg(a[2]), name == "psetex", True, now_ms)
    return Set(name, a[1], a[3], expire_at_ms=at)


def _p_incr(name: str, a: list[bytes], now_ms: int) -> Command:
    if name in ("incr", "decr"):
        return IncrBy(name, a[1], 1 if name == "incr" else -1)
    delta = int_arg(a[2])
    if name == "decrby":
        if delta == LLONG_MIN:
            raise CommandError("ERR decrement would overflow")
        delta = -delta
    return IncrBy(name, a[1], delta)


def _p_mset(name: str, a: list[bytes], now_ms: int) -> Command:
    if len(a) % 2 == 0:
        raise CommandError(f"ERR wrong number of arguments for '{name}' command")
    return MSet(name, tuple(zip(a[1::2], a[2::2], strict=True)))


def _p_expire(name: str, a: list[bytes], now_ms: int) -> Command:
    flags = {b"nx": False, b"xx": False, b"gt": False, b"lt": False}
    for opt in a[3:]:
        low = opt.lower()
        if low not in flags:
            raise CommandError(f"ERR Unsupported option {cstr(opt, 1 << 30)}")
        flags[low] = True
    nx, xx, gt, lt = flags[b"nx"], flags[b"xx"], flags[b"gt"], flags[b"lt"]
    if nx and (xx or gt or lt):
        raise CommandError("ERR NX and XX, GT or LT options at the same time are not compatible")
    if gt and lt:
        raise CommandError("ERR GT and LT options at the same time are not compatible")
    when = int_arg(a[2])
    if name in ("expire", "expireat"):
        if when > LLONG_MAX // 1000 or when < -(LLONG_MAX // 1000):
            raise CommandError(f"ERR invalid expire time in '{name}' command")
        when *= 1000
    base = now_ms if name in ("expire", "pexpire") else 0
    if when > LLONG_MAX - base:
        raise CommandError(f"ERR invalid expire time in '{name}' command")
    return Expire(name, a[1], when + base, nx, xx, gt, lt)


def _p_scan(name: str, a: list[bytes], now_ms: int) -> Command:
    cursor = _scan_cursor(a[1])
    match: bytes | None = None
    kind: bytes | None = None
    count = 10
    i = 2
    while i < len(a):
        opt = a[i].lower()
        more = len(a) - i >= 2
        if opt == b"count" and more:
            count = int_arg(a[i + 1])
            if count < 1:
                raise CommandError(SYNTAX_ERROR)
        elif opt == b"match" and more:
            match = a[i + 1]
        elif opt == b"type" and more:
            kind = a[i + 1]
        else:
            raise CommandError(SYNTAX_ERROR)
        i += 2
    return Scan(name, cursor, match, count, kind)


def _scan_cursor(arg: bytes) -> int:
    """strtoul(arg, 10) read whole: optional sign (a minus wraps), no leading space."""
    body = arg.split(b"\x00")[0]
    sign = 1
    digits = body
    if body[:1] in (b"+", b"-"):
        sign = -1 if body[:1] == b"-" else 1
        digits = body[1:]
    if body == b"":
        return 0
    if not digits.isdigit():
        raise CommandError("ERR invalid cursor")
    value = int(digits)
    if value > 2**64 - 1:
        raise CommandError("ERR invalid cursor")
    return (sign * value) % 2**64


def _p_flush(name: str, a: list[bytes], now_ms: int) -> Command:
    mode: bool | None = None
    if len(a) > 2:
        raise CommandError(SYNTAX_ERROR)
    if len(a) == 2:
        if is_word(a[1], b"sync"):
            mode = False
        elif is_word(a[1], b"async"):
            mode = True
        else:
            raise CommandError(SYNTAX_ERROR)
    return FlushDb(name, mode) if name == "flushdb" else FlushAll(name, mode)


SAME_OBJECT = "ERR source and destination objects are the same"


def _p_copy(name: str, a: list[bytes], now_ms: int) -> Command:
    # copyCommand: options in order, DB's value an int (the index is the server's
    # to check, as SELECT's), then the same key to the same database is refused
    replace, db, j = False, 0, 3
    while j < len(a):
        if is_word(a[j], b"replace"):
            replace = True
        elif is_word(a[j], b"db") and j + 1 < len(a):
            db = int32_arg(a[j + 1])
            j += 1
        else:
            raise CommandError(SYNTAX_ERROR)
        j += 1
    if db == 0 and a[1] == a[2]:
        raise CommandError(SAME_OBJECT)
    return Copy(name, a[1], a[2], replace, db)


def _p_memory(name: str, a: list[bytes], now_ms: int) -> Command:
    # memoryCommand's USAGE options: SAMPLES count (an integer >= 0), nothing else
    j = 3
    while j < len(a):
        if is_word(a[j], b"samples") and j + 1 < len(a):
            if int_arg(a[j + 1]) < 0:
                raise CommandError(SYNTAX_ERROR)
            j += 2
        else:
            raise CommandError(SYNTAX_ERROR)
    return MemoryUsage("memory|usage", a[2])


KEY_PARSERS: Mapping[str, Parser] = MappingProxyType(
    {
        "get": one_key(Get),
        "set": _p_set,
        "setnx": lambda n, a, t: SetNx(n, a[1], a[2]),
        "setex": _p_setex,
        "psetex": _p_setex,
        "getset": lambda n, a, t: Set(n, a[1], a[2], get=True),
        "getdel": one_key(GetDel),
        "getex": _p_getex,
        "mget": all_keys(MGet),
        "mset": _p_mset,
        "msetnx": _p_mset,
        "strlen": one_key(StrLen),
        "append": lambda n, a, t: Append(n, a[1], a[2]),
        "incr": _p_incr,
        "decr": _p_incr,
        "incrby": _p_incr,
        "decrby": _p_incr,
        "incrbyfloat": lambda n, a, t: IncrByFloat(n, a[1], float_arg(a[2]), a[2]),
        "del": all_keys(Del),
        "unlink": all_keys(Del),
        "exists": all_keys(Exists),
        "type": one_key(Type),
        "expire": _p_expire,
        "pexpire": _p_expire,
        "expireat": _p_expire,
        "pexpireat": _p_expire,
        "persist": one_key(Persist),
        "ttl": lambda n, a, t: Ttl(n, a[1], False, False),
        "pttl": lambda n, a, t: Ttl(n, a[1], True, False),
        "expiretime": lambda n, a, t: Ttl(n, a[1], False, True),
        "pexpiretime": lambda n, a, t: Ttl(n, a[1], True, True),
        "scan": _p_scan,
        "keys": lambda n, a, t: Keys(n, a[1]),
        "randomkey": bare(RandomKey),
        "object": lambda n, a, t: ObjectInfo("object|" + a[1].decode("latin-1").lower(), a[2]),
        "memory": _p_memory,
        "rename": lambda n, a, t: Rename(n, a[1], a[2], False),
        "renamenx": lambda n, a, t: Rename(n, a[1], a[2], True),
        "copy": _p_copy,
        "dbsize": bare(DbSize),
        "flushdb": _p_flush,
        "flushall": _p_flush,
    }
)
