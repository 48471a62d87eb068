"""The typed Redis commands: one small frozen dataclass per command shape.

Strategy / invariants:
- Built only by `redis_commands.parse_command`, after Redis's validation: a value
  here is always one Redis would have accepted (expiry already absolute, in ms).
- Commands whose replies agree share a class and keep their own `name` (SETEX,
  PSETEX and GETSET are `Set`; INCR/DECR/INCRBY/DECRBY are `IncrBy`; UNLINK is
  `Del`; the EXPIRE family is `Expire`; TTL/PTTL/EXPIRETIME/PEXPIRETIME are `Ttl`).
"""

from __future__ import annotations

from dataclasses import dataclass, field

__all__ = [
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
    "CommandInfo",
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
]


@dataclass(frozen=True, slots=True)
class Command:
    """Base of every parsed command; `name` is the lower-case name the client used."""

    name: str


@dataclass(frozen=True, slots=True)
class Ping(Command):
    message: bytes | None


@dataclass(frozen=True, slots=True)
class Echo(Command):
    message: bytes


@dataclass(frozen=True, slots=True)
class Auth(Command):
    username: bytes | None
    password: bytes


@dataclass(frozen=True, slots=True)
class Hello(Command):
    """HELLO as Redis 7.0 runs it: the options in order, each at once (`AUTH` logs in
    or answers WRONGPASS, `SETNAME` names the connection), then `error` if an option
    was bad (the ones before it stay done), then NOAUTH if still not logged in."""

    protover: int | None
    options: tuple[tuple[str, bytes, bytes], ...] = ()
    """("auth", username, password) or ("setname", name, b""), in the order given."""
    error: str | None = None


@dataclass(frozen=True, slots=True)
class Select(Command):
    index: int


@dataclass(frozen=True, slots=True)
class Quit(Command):
    pass


@dataclass(frozen=True, slots=True)
class Reset(Command):
    pass


@dataclass(frozen=True, slots=True)
class ClientSetName(Command):
    client_name: bytes


@dataclass(frozen=True, slots=True)
class ClientGetName(Command):
    pass


@dataclass(frozen=True, slots=True)
class ClientId(Command):
    pass


@dataclass(frozen=True, slots=True)
class ClientList(Command):
    """CLIENT LIST [TYPE type | ID id [id ...]]: `ids` None for every client, `normal`
    False for a TYPE other than normal (master, replica, pubsub: none here)."""

    ids: tuple[int, ...] | None = None
    normal: bool = True


@dataclass(frozen=True, slots=True)
class ClientInfo(Command):
    pass


@dataclass(frozen=True, slots=True)
class ClientKill(Command):
    """CLIENT KILL ip:port (`old`: answers OK or "No such client", may kill the caller)
    or CLIENT KILL <filter> <value> ... (answers the count killed). A filter not given
    is None (`id` 0, `maxage` 0); every given one must match. `normal`: the TYPE asked
    is normal (every client here is). USER is checked when parsed (the one user,
    default, is every client's)."""

    old: bool = False
    addr: bytes | None = None
    laddr: bytes | None = None
    id: int = 0
    normal: bool | None = None
    skipme: bool = True
    maxage: int = 0


@dataclass(frozen=True, slots=True)
class ClientNoEvict(Command):
    """CLIENT NO-EVICT / NO-TOUCH ON|OFF: `name` says which; both are no-ops here."""

    on: bool


@dataclass(frozen=True, slots=True)
class ClientSetInfo(Command):
    attribute: str  # "lib-name" or "lib-ver"
    value: bytes


@dataclass(frozen=True, slots=True)
class CommandCount(Command):
    pass


@dataclass(frozen=True, slots=True)
class CommandInfo(Command):
    """COMMAND (names empty: every command) and COMMAND INFO [name ...]."""

    names: tuple[bytes, ...]


@dataclass(frozen=True, slots=True)
class CommandDocs(Command):
    names: tuple[bytes, ...]


@dataclass(frozen=True, slots=True)
class Info(Command):
    sections: tuple[str, ...]  # lower case; empty = the default sections


@dataclass(frozen=True, slots=True)
class ConfigGet(Command):
    patterns: tuple[bytes, ...]


@dataclass(frozen=True, slots=True)
class DbSize(Command):
    pass


@dataclass(frozen=True, slots=True)
class Time(Command):
    pass


@dataclass(frozen=True, slots=True)
class FlushDb(Command):
    asynchronous: bool | None  # None: no ASYNC/SYNC given


@dataclass(frozen=True, slots=True)
class FlushAll(Command):
    asynchronous: bool | None


@dataclass(frozen=True, slots=True)
class Get(Command):
    key: bytes


@dataclass(frozen=True, slots=True)
class Set(Command):
    """SET, and SETEX/PSETEX (expire set) and GETSET (get=True), which reply alike."""

    key: bytes
    value: bytes
    nx: bool = False
    xx: bool = False
    get: bool = False
    expire_at_ms: int | None = None
    keep_ttl: bool = False


@dataclass(frozen=True, slots=True)
class SetNx(Command):
    key: bytes
    value: bytes


@dataclass(frozen=True, slots=True)
class GetDel(Command):
    key: bytes


@dataclass(frozen=True, slots=True)
class GetEx(Command):
    """GETEX. Redis answers nil for a missing key before it looks at the expire value,
    so a bad value is carried in `invalid_expire` (the error to answer if the key exists)."""

    key: bytes
    expire_at_ms: int | None
    persist: bool
    invalid_expire: str | None = None


@dataclass(frozen=True, slots=True)
class MGet(Command):
    keys: tuple[bytes, ...]


@dataclass(frozen=True, slots=True)
class MSet(Command):
    """MSET and MSETNX (name "msetnx": all or nothing, reply 1/0)."""

    pairs: tuple[tuple[bytes, bytes], ...]


@dataclass(frozen=True, slots=True)
class StrLen(Command):
    key: bytes


@dataclass(frozen=True, slots=True)
class Append(Command):
    key: bytes
    value: bytes


@dataclass(frozen=True, slots=True)
class IncrBy(Command):
    """INCR, DECR, INCRBY, DECRBY: add `delta` (a signed 64-bit integer)."""

    key: bytes
    delta: int


@dataclass(frozen=True, slots=True)
class IncrByFloat(Command):
    key: bytes
    delta: float  # may be inf: the command then answers "increment would produce NaN or Infinity"
    text: bytes = field(default=b"", compare=False, repr=False)  # the increment as written


@dataclass(frozen=True, slots=True)
class Del(Command):
    """DEL and UNLINK."""

    keys: tuple[bytes, ...]


@dataclass(frozen=True, slots=True)
class Exists(Command):
    keys: tuple[bytes, ...]


@dataclass(frozen=True, slots=True)
class Type(Command):
    key: bytes


@dataclass(frozen=True, slots=True)
class ObjectInfo(Command):
    """OBJECT ENCODING / FREQ / REFCOUNT: `name` is "object|encoding", ..."""

    key: bytes


@dataclass(frozen=True, slots=True)
class Copy(Command):
    """COPY source destination [DB db] [REPLACE]: `db` as given (0 is the only one)."""

    key: bytes
    newkey: bytes
    replace: bool = False
    db: int = 0


@dataclass(frozen=True, slots=True)
class MemoryUsage(Command):
    """MEMORY USAGE key [SAMPLES count] (the count only validated: nothing is sampled)."""

    key: bytes


@dataclass(frozen=True, slots=True)
class Expire(Command):
    """EXPIRE, PEXPIRE, EXPIREAT, PEXPIREAT: `at_ms` is absolute (may be in the past)."""

    key: bytes
    at_ms: int
    nx: bool = False
    xx: bool = False
    gt: bool = False
    lt: bool = False


@dataclass(frozen=True, slots=True)
class Persist(Command):
    key: bytes


@dataclass(frozen=True, slots=True)
class Ttl(Command):
    """TTL (ms=False, absolute=False), PTTL, EXPIRETIME (absolute), PEXPIRETIME."""

    key: bytes
    ms: bool
    absolute: bool


@dataclass(frozen=True, slots=True)
class Scan(Command):
    cursor: int  # 0 .. 2**64-1
    match: bytes | None
    count: int
    type: bytes | None


@dataclass(frozen=True, slots=True)
class Keys(Command):
    pattern: bytes


@dataclass(frozen=True, slots=True)
class RandomKey(Command):
    pass


@dataclass(frozen=True, slots=True)
class Rename(Command):
    """RENAME and RENAMENX (nx=True)."""

    key: bytes
    newkey: bytes
    nx: bool


@dataclass(frozen=True, slots=True)
class Multi(Command):
    pass


@dataclass(frozen=True, slots=True)
class Exec(Command):
    pass


@dataclass(frozen=True, slots=True)
class Discard(Command):
    pass


@dataclass(frozen=True, slots=True)
class Watch(Command):
    keys: tuple[bytes, ...]


@dataclass(frozen=True, slots=True)
class Unwatch(Command):
    pass
