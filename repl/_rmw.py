"""The read-modify-write commands (set, incr, incrfloat, append, getdel, expire,
persist, rename, clear): their client calls and replies. The rows are in
`_commands.py`, like every other command's.

Each is one request, decided by the server's one writer when it applies, so it is
atomic against every other client. Word-like options (`NX`, `GET`, `GT`, ...) are
optional positional arguments of the table, checked here: `set k v NX TTL 30`.
"""

from __future__ import annotations

from decimal import Context as _Ctx
from decimal import Decimal

from ._context import Context, UsageError
from ._format import Bool, Int, Nil, Reply, Status, Value
from ._table import Args

__all__ = [
    "append",
    "clear",
    "expire",
    "getdel",
    "incr",
    "incrfloat",
    "persist",
    "rename",
    "set_",
]

SET_FLAGS = ("nx", "xx", "get", "keepttl")
EXPIRE_CONDITIONS = ("nx", "xx", "gt", "lt")


def _words(a: Args, names: tuple[str, ...], allowed: tuple[str, ...]) -> set[str]:
    words: set[str] = set()
    for name in names:
        raw = a.get(name)
        if raw is None:
            continue
        word = bytes(raw).decode("utf-8", "replace").lower()
        if word not in allowed or word in words:
            shown = " ".join(w.upper() for w in allowed)
            raise UsageError(f"unexpected {word.upper()!r}; the options are {shown} (once each)")
        words.add(word)
    return words


async def set_(ctx: Context, a: Args) -> Reply:
    flags = _words(a, ("flag1", "flag2", "flag3"), SET_FLAGS)
    if {"nx", "xx"} <= flags:
        raise UsageError("NX and XX exclude each other")
    if "keepttl" in flags and a["ttl"] is not None:
        raise UsageError("KEEPTTL and TTL exclude each other")
    c = await ctx.client()
    reply = await c.set(
        a["key"],
        a["value"],
        nx="nx" in flags,
        xx="xx" in flags,
        get="get" in flags,
        keep_ttl="keepttl" in flags,
        ttl=a["ttl"],
    )
    ctx.remember_keys([a["key"]])
    if "get" in flags:
        return Nil() if reply is None else Value(bytes(reply))
    return Status("OK") if reply else Nil()


async def incr(ctx: Context, a: Args) -> Reply:
    c = await ctx.client()
    by = 1 if a["by"] is None else int(a["by"])
    return Int(await c.incr(a["key"], by))


async def incrfloat(ctx: Context, a: Args) -> Reply:
    c = await ctx.client()
    return Value(_float_text(await c.incr_float(a["key"], float(a["delta"]))))


def _float_text(x: float) -> bytes:
    # As the server stores it: the shortest round-trip digits, at most 17 places,
    # positional (no exponent), no trailing zeros.
    fixed = Decimal(repr(x)).quantize(Decimal(1).scaleb(-17), context=_Ctx(prec=400))
    text = format(fixed, "f")
    if "." in text:
        text = text.rstrip("0").rstrip(".")
    return b"0" if text in ("-0", "") else text.encode()


async def append(ctx: Context, a: Args) -> Reply:
    c = await ctx.client()
    n = await c.append(a["key"], a["suffix"])
    ctx.remember_keys([a["key"]])
    return Int(n)


async def getdel(ctx: Context, a: Args) -> Reply:
    c = await ctx.client()
    value = await c.get_delete(a["key"])
    return Nil() if value is None else Value(bytes(value))


async def expire(ctx: Context, a: Args) -> Reply:
    cond = _words(a, ("cond",), EXPIRE_CONDITIONS)
    c = await ctx.client()
    return Bool(await c.expire(a["key"], a["seconds"], cond=next(iter(cond), "")))


async def persist(ctx: Context, a: Args) -> Reply:
    c = await ctx.client()
    return Bool(await c.persist(a["key"]))


async def rename(ctx: Context, a: Args) -> Reply:
    nx = bool(_words(a, ("nx",), ("nx",)))
    c = await ctx.client()
    moved = await c.rename(a["key"], a["newkey"], nx=nx)
    if moved:
        ctx.remember_keys([a["newkey"]])
    return Bool(moved)


async def clear(ctx: Context, a: Args) -> Reply:
    if bytes(a["confirm"]).lower() != b"all":
        raise UsageError("type 'clear all' to delete every key")
    c = await ctx.client()
    return Int(await c.clear())
