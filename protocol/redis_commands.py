"""The Redis command set of the text dialect: argv (list of bytes) -> typed commands.

Strategy / invariants:
- Lookup and arity come from the one command table, `COMMANDS` (protocol/_redis_table.py,
  re-exported here with `command_info`/`command_docs` for COMMAND INFO and DOCS).
- Validation happens in two steps, as in Redis: `check_command` finds the command
  and checks its arity (an error here aborts a MULTI: EXECABORT), `parse_command`
  then validates the arguments (an error here is the command's own reply, also
  inside EXEC). Both raise `CommandError`, whose `reply` is Redis 7's exact line.
- Parsing never touches the store: it turns argv into a small frozen dataclass
  (protocol/_redis_requests.py, re-exported here). Expiry
  options become an absolute `expire_at_ms`, computed from the caller's `now_ms`
  with Redis's overflow rules (the result must fit a signed 64-bit integer).
- Aliases collapse where Redis's replies agree: SETEX/PSETEX/GETSET parse to `Set`,
  INCR/DECR/INCRBY/DECRBY to `IncrBy`, UNLINK to `Del`, the four EXPIRE commands
  to `Expire`, TTL/PTTL/EXPIRETIME/PEXPIRETIME to `Ttl`. `Command.name` keeps the
  command's own name where a reply depends on it.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Mapping
from types import MappingProxyType
from typing import Any

from protocol._redis_requests import (
    Append,
    Auth,
    ClientGetName,
    ClientId,
    ClientInfo,
    ClientKill,
    ClientList,
    ClientNoEvict,
    ClientSetInfo,
    ClientSetName,
    Command,
    CommandCount,
    CommandDocs,
    CommandInfo,
    ConfigGet,
    Copy,
    DbSize,
    Del,
    Discard,
    Echo,
    Exec,
    Exists,
    Expire,
    FlushAll,
    FlushDb,
    Get,
    GetDel,
    GetEx,
    Hello,
    IncrBy,
    IncrByFloat,
    Info,
    Keys,
    MemoryUsage,
    MGet,
    MSet,
    Multi,
    ObjectInfo,
    Persist,
    Ping,
    Quit,
    RandomKey,
    Rename,
    Reset,
    Scan,
    Select,
    Set,
    SetNx,
    StrLen,
    Time,
    Ttl,
    Type,
    Unwatch,
    Watch,
)
from protocol._redis_table import COMMANDS, SUBCOMMANDS, CommandSpec, command_docs, command_info
from protocol._resp_reader import _string2ll

__all__ = [
    "COMMANDS",
    "Append",
    "Auth",
    "ClientGetName",
    "ClientId",
    "ClientInfo",
    "ClientKill",
    "ClientList",
    "ClientNoEvict",
    "ClientSetInfo",
    "ClientSetName",
    "Command",
    "CommandCount",
    "CommandDocs",
    "CommandError",
    "CommandInfo",
    "CommandSpec",
    "ConfigGet",
    "Copy",
    "DbSize",
    "Del",
    "Discard",
    "Echo",
    "Exec",
    "Exists",
    "Expire",
    "FlushAll",
    "FlushDb",
    "Get",
    "GetDel",
    "GetEx",
    "Hello",
    "IncrBy",
    "IncrByFloat",
    "Info",
    "Keys",
    "MGet",
    "MSet",
    "MemoryUsage",
    "Multi",
    "ObjectInfo",
    "Persist",
    "Ping",
    "Quit",
    "RandomKey",
    "Rename",
    "Reset",
    "Scan",
    "Select",
    "Set",
    "SetNx",
    "StrLen",
    "Time",
    "Ttl",
    "Type",
    "Unwatch",
    "Watch",
    "check_command",
    "command_docs",
    "command_info",
    "parse_command",
]

LLONG_MAX = 2**63 - 1
LLONG_MIN = -(2**63)


class CommandError(Exception):
    """A command refused before it runs; `reply` is the error line Redis 7 sends.

    Args:
        message: the error text with its code, e.g. "ERR syntax error" (latin-1:
            each character is one byte of the reply, so client bytes survive).

    Example:
        >>> CommandError("ERR syntax error").reply
        b'-ERR syntax error\\r\\n'
    """

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message

    @property
    def reply(self) -> bytes:
        """The RESP error line (CR/LF inside become spaces, as Redis does)."""
        raw = self.message.encode("latin-1", "replace").translate(_NO_CRLF)
        return b"-" + raw + b"\r\n"


_NO_CRLF = bytes.maketrans(b"\r\n", b"  ")
SYNTAX_ERROR = "ERR syntax error"
NOT_INTEGER = "ERR value is not an integer or out of range"


# --- lookup and arity -------------------------------------------------------------


def _cstr(arg: bytes, limit: int) -> str:
    """`%.<limit>s` of a C string: cut at a NUL and at `limit` bytes (latin-1, byte per char)."""
    nul = arg.find(b"\x00")
    if nul >= 0:
        arg = arg[:nul]
    return arg[:limit].decode("latin-1")


def _unknown_command(argv: list[bytes]) -> CommandError:
    args = ""
    for arg in argv[1:]:
        if len(args) >= 128:
            break
        args += "'" + _cstr(arg, 128 - len(args)) + "' "
    return CommandError(
        f"ERR unknown command '{_cstr(argv[0], 128)}', with args beginning with: {args}"
    )


def _arity_ok(spec: CommandSpec, argc: int) -> bool:
    return argc == spec.arity if spec.arity > 0 else argc >= -spec.arity


def check_command(argv: list[bytes]) -> CommandSpec:
    """Find argv's command and check its arity (Redis's queue-time checks).

    Args:
        argv: the request, name first (never empty).

    Returns:
        The command's (or subcommand's) row.

    Raises:
        CommandError: unknown command or subcommand, wrong number of arguments.

    Example:
        >>> check_command([b"GET", b"k"]).name
        'get'
        >>> check_command([b"GET"])
        Traceback (most recent call last):
        ...
        protocol.redis_commands.CommandError: ERR wrong number of arguments for 'get' command
    """
    spec = COMMANDS.get(argv[0].decode("latin-1").lower())
    if spec is None:
        raise _unknown_command(argv)
    if spec.subcommands and len(argv) >= 2:
        sub = SUBCOMMANDS[spec.name].get(argv[1].decode("latin-1").lower())
        if sub is None:
            container = _cstr(argv[0], 1 << 30).upper()
            raise CommandError(
                f"ERR unknown subcommand '{_cstr(argv[1], 128)}'. Try {container} HELP."
            )
        spec = sub
    if not _arity_ok(spec, len(argv)):
        text = f"wrong number of arguments for '{spec.name}' command"
        if spec.name == "exec":  # Redis's rejectCommand aborts the transaction for EXEC
            raise CommandError("EXECABORT Transaction discarded because of: " + text)
        raise CommandError("ERR " + text)
    return spec


# --- argument helpers -------------------------------------------------------------


def _int(arg: bytes, error: str = NOT_INTEGER) -> int:
    value = _string2ll(arg)
    if value is None:
        raise CommandError(error)
    return value


def _is(arg: bytes, word: bytes) -> bool:
    return arg.lower() == word


_DECIMAL = re.compile(rb"[+-]?(?:[0-9]+\.?[0-9]*|\.[0-9]+)(?:[eE][+-]?[0-9]+)?")
_HEXFLOAT = re.compile(
    rb"[+-]?0[xX](?:[0-9a-fA-F]+\.?[0-9a-fA-F]*|\.[0-9a-fA-F]+)(?:[pP][+-]?[0-9]+)?"
)
_INFINITY = re.compile(rb"[+-]?(?:inf|infinity)", re.IGNORECASE)


def _float(arg: bytes) -> float:
    """Redis's string2ld: what strtold reads whole, no leading space, never NaN."""
    if 0 < len(arg) < 5 * 1024:
        if _DECIMAL.fullmatch(arg) or _INFINITY.fullmatch(arg):
            return float(arg)
        if _HEXFLOAT.fullmatch(arg):
            text = arg.decode("ascii")
            if "p" not in text.lower():
                text += "p0"
            try:
                return float.fromhex(text)
            except OverflowError:  # beyond a double: infinite, as float(b"1e400") is
                return -math.inf if text[0] == "-" else math.inf
    raise CommandError("ERR value is not a valid float")


def _expire_at(cmd: str, amount: int, unit_ms: bool, relative: bool, now_ms: int) -> int:
    """SET/SETEX/GETEX's expire argument -> absolute ms (getExpireMillisecondsOrReply)."""
    if amount <= 0 or (not unit_ms and amount > LLONG_MAX // 1000):
        raise CommandError(f"ERR invalid expire time in '{cmd}' command")
    when = amount if unit_ms else amount * 1000
    if relative:
        when += now_ms
    if when > LLONG_MAX or when <= 0:
        raise CommandError(f"ERR invalid expire time in '{cmd}' command")
    return when


_EXPIRE_UNITS = {b"ex": (False, True), b"px": (True, True), b"exat": (False, False), b"pxat": (True, False)}  # fmt: skip


# --- parsers (argv already checked for arity) -------------------------------------

Parser = Callable[[str, list[bytes], int], Command]


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
            opt in _EXPIRE_UNITS
            and not keep_ttl
            and unit in (None, _EXPIRE_UNITS[opt])
            and has_next
        ):
            unit = _EXPIRE_UNITS[opt]
            amount = a[j + 1]
            j += 1
        else:
            raise CommandError(SYNTAX_ERROR)
        j += 1
    at = None
    if unit is not None and amount is not None:
        at = _expire_at(name, _int(amount), unit[0], unit[1], now_ms)
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
            opt in _EXPIRE_UNITS
            and not persist
            and unit in (None, _EXPIRE_UNITS[opt])
            and j + 1 < len(a)
        ):
            unit = _EXPIRE_UNITS[opt]
            amount = a[j + 1]
            j += 1
        else:
            raise CommandError(SYNTAX_ERROR)
        j += 1
    at = None
    if unit is not None and amount is not None:
        try:
            at = _expire_at(name, _int(amount), unit[0], unit[1], now_ms)
        except CommandError as exc:
            return GetEx(name, a[1], None, persist, exc.message)
    return GetEx(name, a[1], at, persist)


def _p_setex(name: str, a: list[bytes], now_ms: int) -> Command:
    at = _expire_at(name, _int(a[2]), name == "psetex", True, now_ms)
    return Set(name, a[1], a[3], expire_at_ms=at)


def _p_incr(name: str, a: list[bytes], now_ms: int) -> Command:
    if name in ("incr", "decr"):
        return IncrBy(name, a[1], 1 if name == "incr" else -1)
    delta = _int(a[2])
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
            raise CommandError(f"ERR Unsupported option {_cstr(opt, 1 << 30)}")
        flags[low] = True
    nx, xx, gt, lt = flags[b"nx"], flags[b"xx"], flags[b"gt"], flags[b"lt"]
    if nx and (xx or gt or lt):
        raise CommandError("ERR NX and XX, GT or LT options at the same time are not compatible")
    if gt and lt:
        raise CommandError("ERR GT and LT options at the same time are not compatible")
    when = _int(a[2])
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
            count = _int(a[i + 1])
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
        if _is(a[1], b"sync"):
            mode = False
        elif _is(a[1], b"async"):
            mode = True
        else:
            raise CommandError(SYNTAX_ERROR)
    return FlushDb(name, mode) if name == "flushdb" else FlushAll(name, mode)


def _p_hello(name: str, a: list[bytes], now_ms: int) -> Command:
    ver: int | None = None
    j = 1
    if len(a) >= 2:
        ver = _int(a[1], "ERR Protocol version is not an integer or out of range")
        j = 2
        if ver < 2 or ver > 3:
            raise CommandError("NOPROTO unsupported protocol version")
    # Redis 7.0 acts on each option as it reads it, so an error stops the options
    # after it only: the options and the error go to the server in order.
    options: list[tuple[str, bytes, bytes]] = []
    error: str | None = None
    while j < len(a):
        more = len(a) - 1 - j
        opt = a[j].lower()
        if opt == b"auth" and more >= 2:
            options.append(("auth", a[j + 1], a[j + 2]))
            j += 2
        elif opt == b"setname" and more:
            try:
                options.append(("setname", _client_name(a[j + 1]), b""))
            except CommandError as exc:
                error = exc.message
                break
            j += 1
        else:
            error = f"ERR Syntax error in HELLO option '{_cstr(a[j], 1 << 30)}'"
            break
        j += 1
    return Hello(name, ver, tuple(options), error)


def _client_name(name: bytes) -> bytes:
    if any(c < 0x21 or c > 0x7E for c in name):
        raise CommandError(
            "ERR Client names cannot contain spaces, newlines or special characters."
        )
    return name


def _p_auth(name: str, a: list[bytes], now_ms: int) -> Command:
    if len(a) > 3:
        raise CommandError(SYNTAX_ERROR)
    return Auth(name, a[1] if len(a) == 3 else None, a[-1])


def _int32(arg: bytes) -> int:
    """Redis's getIntFromObjectOrReply: a long long, then an int's range."""
    value = _int(arg)
    if not -(2**31) <= value <= 2**31 - 1:
        raise CommandError(
            "ERR value is out of range, value must between -2147483648 and 2147483647"
        )
    return value


def _p_select(name: str, a: list[bytes], now_ms: int) -> Command:
    return Select(name, _int32(a[1]))


def _p_client(name: str, a: list[bytes], now_ms: int) -> Command:
    sub = a[1].lower()
    if sub == b"setname":
        return ClientSetName("client|setname", _client_name(a[2]))
    if sub == b"getname":
        return ClientGetName("client|getname")
    if sub == b"id":
        return ClientId("client|id")
    if sub == b"info":
        return ClientInfo("client|info")
    if sub == b"list":
        return _p_client_list(a)
    if sub == b"kill":
        return _p_client_kill(a)
    if sub in (b"no-evict", b"no-touch"):
        if not (_is(a[2], b"on") or _is(a[2], b"off")):
            raise CommandError(SYNTAX_ERROR)
        return ClientNoEvict("client|" + sub.decode(), _is(a[2], b"on"))
    attr = a[2].lower()
    if attr not in (b"lib-name", b"lib-ver"):
        raise CommandError(f"ERR Unrecognized option '{_cstr(a[2], 1 << 30)}'")
    if any(c < 0x21 or c > 0x7E for c in a[3]):
        raise CommandError(
            f"ERR {_cstr(a[2], 1 << 30)} cannot contain spaces, newlines or special characters."
        )
    return ClientSetInfo("client|setinfo", attr.decode(), a[3])


CLIENT_TYPES = (b"normal", b"master", b"slave", b"replica", b"pubsub")


def _p_client_list(a: list[bytes]) -> Command:
    # Redis 7.0's clientCommand: TYPE with exactly one type, or ID with ids, or nothing
    if len(a) == 4 and _is(a[2], b"type"):
        kind = a[3].lower()
        if kind not in CLIENT_TYPES:
            raise CommandError(f"ERR Unknown client type '{_cstr(a[3], 1 << 30)}'")
        return ClientList("client|list", None, kind == b"normal")
    if len(a) > 3 and _is(a[2], b"id"):
        return ClientList("client|list", tuple(_int(i, "ERR Invalid client ID") for i in a[3:]))
    if len(a) != 2:
        raise CommandError(SYNTAX_ERROR)
    return ClientList("client|list")


def _p_client_kill(a: list[bytes]) -> Command:
    """Redis 7.0's clientCommand KILL: one argument is the old form (an address, and
    the caller may be killed); more are filter/value pairs checked in order, the
    first bad one answering its error. MAXAGE is Redis 7.4's (7.0 answered it
    "syntax error"), with 7.4's words."""
    if len(a) == 3:
        return ClientKill("client|kill", old=True, addr=a[2], skipme=False)
    f: dict[str, Any] = {}
    for j in range(2, len(a), 2):
        if j + 1 == len(a):  # a filter without its value, after the ones before it
            raise CommandError(SYNTAX_ERROR)
        opt, value = a[j].lower(), a[j + 1]
        if opt == b"id":
            f["id"] = _int(value, "ERR client-id should be greater than 0")
            if f["id"] < 1:
                raise CommandError("ERR client-id should be greater than 0")
        elif opt == b"type":
            kind = value.lower()
            if kind not in CLIENT_TYPES:
                raise CommandError(f"ERR Unknown client type '{_cstr(value, 1 << 30)}'")
            f["normal"] = kind == b"normal"
        elif opt in (b"addr", b"laddr"):
            f[opt.decode()] = value
        elif opt == b"user":
            if value != b"default":  # the one user (no ACL here): case matters, as in Redis
                raise CommandError(f"ERR No such user '{_cstr(value, 1 << 30)}'")
        elif opt == b"skipme":
            if not (_is(value, b"yes") or _is(value, b"no")):
                raise CommandError(SYNTAX_ERROR)
            f["skipme"] = _is(value, b"yes")
        elif opt == b"maxage":
            f["maxage"] = _int(value, "ERR maxage is not an integer or out of range")
            if f["maxage"] < 1:
                raise CommandError("ERR maxage should be greater than 0")
        else:
            raise CommandError(SYNTAX_ERROR)
    return ClientKill("client|kill", **f)


SAME_OBJECT = "ERR source and destination objects are the same"


def _p_copy(name: str, a: list[bytes], now_ms: int) -> Command:
    # copyCommand: options in order, DB's value an int (the index is the server's
    # to check, as SELECT's), then the same key to the same database is refused
    replace, db, j = False, 0, 3
    while j < len(a):
        if _is(a[j], b"replace"):
            replace = True
        elif _is(a[j], b"db") and j + 1 < len(a):
            db = _int32(a[j + 1])
            j += 1
        else:
            raise CommandError(SYNTAX_ERROR)
        j += 1
    if db == 0 and a[1] == a[2]:
        raise CommandError(SAME_OBJECT)
    return Copy(name, a[1], a[2], replace, db)


def _p_command(name: str, a: list[bytes], now_ms: int) -> Command:
    if len(a) == 1:
        return CommandInfo("command", ())
    sub = a[1].lower()
    if sub == b"count":
        return CommandCount("command|count")
    if sub == b"info":
        return CommandInfo("command|info", tuple(a[2:]))
    return CommandDocs("command|docs", tuple(a[2:]))


def _p_ping(name: str, a: list[bytes], now_ms: int) -> Command:
    if len(a) > 2:  # arity -1, but pingCommand takes one message at most
        raise CommandError(f"ERR wrong number of arguments for '{name}' command")
    return Ping(name, a[1] if len(a) == 2 else None)


CLUSTER_DISABLED = "ERR This instance has cluster support disabled"


def _p_cluster(name: str, a: list[bytes], now_ms: int) -> Command:
    # READONLY, READWRITE and every CLUSTER subcommand: Redis's reply without cluster
    # mode, so cluster-aware clients (redis-py's RedisCluster, ioredis's Cluster) and
    # `redis-cli --cluster` learn at once that this is a standalone server.
    raise CommandError(CLUSTER_DISABLED)


def _p_memory(name: str, a: list[bytes], now_ms: int) -> Command:
    # memoryCommand's USAGE options: SAMPLES count (an integer >= 0), nothing else
    j = 3
    while j < len(a):
        if _is(a[j], b"samples") and j + 1 < len(a):
            if _int(a[j + 1]) < 0:
                raise CommandError(SYNTAX_ERROR)
            j += 2
        else:
            raise CommandError(SYNTAX_ERROR)
    return MemoryUsage("memory|usage", a[2])


def _one_key(cls: Any) -> Parser:
    return lambda name, a, now_ms: cls(name, a[1])


def _all_keys(cls: Any) -> Parser:
    return lambda name, a, now_ms: cls(name, tuple(a[1:]))


def _bare(cls: Any) -> Parser:
    return lambda name, a, now_ms: cls(name)


_PARSERS: Mapping[str, Parser] = MappingProxyType(
    {
        "get": _one_key(Get),
        "set": _p_set,
        "setnx": lambda n, a, t: SetNx(n, a[1], a[2]),
        "setex": _p_setex,
        "psetex": _p_setex,
        "getset": lambda n, a, t: Set(n, a[1], a[2], get=True),
        "getdel": _one_key(GetDel),
        "getex": _p_getex,
        "mget": _all_keys(MGet),
        "mset": _p_mset,
        "msetnx": _p_mset,
        "strlen": _one_key(StrLen),
        "append": lambda n, a, t: Append(n, a[1], a[2]),
        "incr": _p_incr,
        "decr": _p_incr,
        "incrby": _p_incr,
        "decrby": _p_incr,
        "incrbyfloat": lambda n, a, t: IncrByFloat(n, a[1], _float(a[2]), a[2]),
        "del": _all_keys(Del),
        "unlink": _all_keys(Del),
        "exists": _all_keys(Exists),
        "type": _one_key(Type),
        "expire": _p_expire,
        "pexpire": _p_expire,
        "expireat": _p_expire,
        "pexpireat": _p_expire,
        "persist": _one_key(Persist),
        "ttl": lambda n, a, t: Ttl(n, a[1], False, False),
        "pttl": lambda n, a, t: Ttl(n, a[1], True, False),
        "expiretime": lambda n, a, t: Ttl(n, a[1], False, True),
        "pexpiretime": lambda n, a, t: Ttl(n, a[1], True, True),
        "scan": _p_scan,
        "keys": lambda n, a, t: Keys(n, a[1]),
        "randomkey": _bare(RandomKey),
        "object": lambda n, a, t: ObjectInfo("object|" + a[1].decode("latin-1").lower(), a[2]),
        "memory": _p_memory,
        "readonly": _p_cluster,
        "readwrite": _p_cluster,
        "cluster": _p_cluster,
        "rename": lambda n, a, t: Rename(n, a[1], a[2], False),
        "renamenx": lambda n, a, t: Rename(n, a[1], a[2], True),
        "copy": _p_copy,
        "multi": _bare(Multi),
        "exec": _bare(Exec),
        "discard": _bare(Discard),
        "watch": _all_keys(Watch),
        "unwatch": _bare(Unwatch),
        "ping": _p_ping,
        "echo": lambda n, a, t: Echo(n, a[1]),
        "auth": _p_auth,
        "hello": _p_hello,
        "select": _p_select,
        "quit": _bare(Quit),
        "reset": _bare(Reset),
        "client": _p_client,
        "command": _p_command,
        "info": lambda n, a, t: Info(n, tuple(s.decode("latin-1").lower() for s in a[1:])),
        "config": lambda n, a, t: ConfigGet("config|get", tuple(a[2:])),
        "dbsize": _bare(DbSize),
        "time": _bare(Time),
        "flushdb": _p_flush,
        "flushall": _p_flush,
    }
)


def parse_command(argv: list[bytes], now_ms: int, spec: CommandSpec | None = None) -> Command:
    """Validate argv exactly as Redis 7 does and return the typed command.

    Args:
        argv: the request as the reader gave it (name first, never empty).
        now_ms: the current Unix time in ms, for relative expiry options.
        spec: what `check_command(argv)` returned, when the caller already ran it
            (the server does, to decide auth and MULTI first): not looked up again.

    Returns:
        A frozen `Command` subclass instance.

    Raises:
        CommandError: with Redis's exact reply (unknown command, arity, syntax error,
            not an integer, invalid expire time, ...).

    Example:
        >>> parse_command([b"SET", b"k", b"v", b"NX", b"PX", b"1500"], now_ms=1000)
        Set(name='set', key=b'k', value=b'v', nx=True, xx=False, get=False, expire_at_ms=2500, keep_ttl=False)
        >>> parse_command([b"incrby", b"n", b"x"], 0)
        Traceback (most recent call last):
        ...
        protocol.redis_commands.CommandError: ERR value is not an integer or out of range
    """
    if spec is None:
        spec = check_command(argv)
    name = spec.name.split("|")[0]
    if name == spec.name:
        name = argv[0].decode("latin-1").lower()
    return _PARSERS[name](name, argv, now_ms)
