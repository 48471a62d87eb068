"""The parsers of the connection and server commands (HELLO, AUTH, SELECT, CLIENT, COMMAND, PING, MULTI, ...).

Strategy / invariants: argv already checked for arity (redis_commands.check_command);
each parser validates the rest as Redis 7 does, in Redis's order. HELLO keeps its
options and the error that stopped them (Redis 7.0 acts on each option as it reads
it); CLUSTER, READONLY and READWRITE answer Redis's reply without cluster mode.
`ADMIN_PARSERS` is this family's rows of the parser table (protocol/redis_commands.py
joins them).
"""

from __future__ import annotations

from collections.abc import Mapping
from types import MappingProxyType
from typing import Any

from protocol._redis_args import (
    SYNTAX_ERROR,
    CommandError,
    Parser,
    all_keys,
    bare,
    cstr,
    int32_arg,
    int_arg,
    is_word,
)
from protocol._redis_requests import (
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
    Discard,
    Echo,
    Exec,
    Hello,
    Info,
    Multi,
    Ping,
    Quit,
    Reset,
    Select,
    Time,
    Unwatch,
    Watch,
)

__all__ = ["ADMIN_PARSERS"]


def _p_hello(name: str, a: list[bytes], now_ms: int) -> Command:
    ver: int | None = None
    j = 1
    if len(a) >= 2:
        ver = int_arg(a[1], "ERR Protocol version is not an integer or out of range")
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
            error = f"ERR Syntax error in HELLO option '{cstr(a[j], 1 << 30)}'"
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


def _p_select(name: str, a: list[bytes], now_ms: int) -> Command:
    return Select(name, int32_arg(a[1]))


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
        if not (is_word(a[2], b"on") or is_word(a[2], b"off")):
            raise CommandError(SYNTAX_ERROR)
        return ClientNoEvict("client|" + sub.decode(), is_word(a[2], b"on"))
    attr = a[2].lower()
    if attr not in (b"lib-name", b"lib-ver"):
        raise CommandError(f"ERR Unrecognized option '{cstr(a[2], 1 << 30)}'")
    if any(c < 0x21 or c > 0x7E for c in a[3]):
        raise CommandError(
            f"ERR {cstr(a[2], 1 << 30)} cannot contain spaces, newlines or special characters."
        )
    return ClientSetInfo("client|setinfo", attr.decode(), a[3])


CLIENT_TYPES = (b"normal", b"master", b"slave", b"replica", b"pubsub")


def _p_client_list(a: list[bytes]) -> Command:
    # Redis 7.0's clientCommand: TYPE with exactly one type, or ID with ids, or nothing
    if len(a) == 4 and is_word(a[2], b"type"):
        kind = a[3].lower()
        if kind not in CLIENT_TYPES:
            raise CommandError(f"ERR Unknown client type '{cstr(a[3], 1 << 30)}'")
        return ClientList("client|list", None, kind == b"normal")
    if len(a) > 3 and is_word(a[2], b"id"):
        return ClientList("client|list", tuple(int_arg(i, "ERR Invalid client ID") for i in a[3:]))
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
            f["id"] = int_arg(value, "ERR client-id should be greater than 0")
            if f["id"] < 1:
                raise CommandError("ERR client-id should be greater than 0")
        elif opt == b"type":
            kind = value.lower()
            if kind not in CLIENT_TYPES:
                raise CommandError(f"ERR Unknown client type '{cstr(value, 1 << 30)}'")
            f["normal"] = kind == b"normal"
        elif opt in (b"addr", b"laddr"):
            f[opt.decode()] = value
        elif opt == b"user":
            if value != b"default":  # the one user (no ACL here): case matters, as in Redis
                raise CommandError(f"ERR No such user '{cstr(value, 1 << 30)}'")
        elif opt == b"skipme":
            if not (is_word(value, b"yes") or is_word(value, b"no")):
                raise CommandError(SYNTAX_ERROR)
            f["skipme"] = is_word(value, b"yes")
        elif opt == b"maxage":
            f["maxage"] = int_arg(value, "ERR maxage is not an integer or out of range")
            if f["maxage"] < 1:
                raise CommandError("ERR maxage should be greater than 0")
        else:
            raise CommandError(SYNTAX_ERROR)
    return ClientKill("client|kill", **f)


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


ADMIN_PARSERS: Mapping[str, Parser] = MappingProxyType(
    {
        "readonly": _p_cluster,
        "readwrite": _p_cluster,
        "cluster": _p_cluster,
        "multi": bare(Multi),
        "exec": bare(Exec),
        "discard": bare(Discard),
        "watch": all_keys(Watch),
        "unwatch": bare(Unwatch),
        "ping": _p_ping,
        "echo": lambda n, a, t: Echo(n, a[1]),
        "auth": _p_auth,
        "hello": _p_hello,
        "select": _p_select,
        "quit": bare(Quit),
        "reset": bare(Reset),
        "client": _p_client,
        "command": _p_command,
        "info": lambda n, a, t: Info(n, tuple(s.decode("latin-1").lower() for s in a[1:])),
        "config": lambda n, a, t: ConfigGet("config|get", tuple(a[2:])),
        "time": bare(Time),
    }
)
