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
- Files: this one has the lookup, the arity check and `parse_command`; the parsers
  live by family, each with its rows of the parser table: protocol/_redis_parse_keys.py
  (strings and the key space), protocol/_redis_parse_admin.py (connection, server,
  transactions); protocol/_redis_args.py has `CommandError` and the argument readers
  they share.
- Aliases collapse where Redis's replies agree: SETEX/PSETEX/GETSET parse to `Set`,
  INCR/DECR/INCRBY/DECRBY to `IncrBy`, UNLINK to `Del`, the four EXPIRE commands
  to `Expire`, TTL/PTTL/EXPIRETIME/PEXPIRETIME to `Ttl`. `Command.name` keeps the
  command's own name where a reply depends on it.
"""

from __future__ import annotations

from types import MappingProxyType

from protocol._redis_args import CommandError, cstr
from protocol._redis_parse_admin import ADMIN_PARSERS
from protocol._redis_parse_keys import KEY_PARSERS
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


# --- lookup and arity -------------------------------------------------------------


def _unknown_command(argv: list[bytes]) -> CommandError:
    args = ""
    for arg in argv[1:]:
        if len(args) >= 128:
            break
        args += "'" + cstr(arg, 128 - len(args)) + "' "
    return CommandError(
        f"ERR unknown command '{cstr(argv[0], 128)}', with args beginning with: {args}"
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
        protocol._redis_args.CommandError: ERR wrong number of arguments for 'get' command
    """
    spec = COMMANDS.get(argv[0].decode("latin-1").lower())
    if spec is None:
        raise _unknown_command(argv)
    if spec.subcommands and len(argv) >= 2:
        sub = SUBCOMMANDS[spec.name].get(argv[1].decode("latin-1").lower())
        if sub is None:
            container = cstr(argv[0], 1 << 30).upper()
            raise CommandError(
                f"ERR unknown subcommand '{cstr(argv[1], 128)}'. Try {container} HELP."
            )
        spec = sub
    if not _arity_ok(spec, len(argv)):
        text = f"wrong number of arguments for '{spec.name}' command"
        if spec.name == "exec":  # Redis's rejectCommand aborts the transaction for EXEC
            raise CommandError("EXECABORT Transaction discarded because of: " + text)
        raise CommandError("ERR " + text)
    return spec


# --- the parsers, by family -------------------------------------------------------

_PARSERS = MappingProxyType({**KEY_PARSERS, **ADMIN_PARSERS})


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
        protocol._redis_args.CommandError: ERR value is not an integer or out of range
    """
    if spec is None:
        spec = check_command(argv)
    name = spec.name.split("|")[0]
    if name == spec.name:
        name = argv[0].decode("latin-1").lower()
    return _PARSERS[name](name, argv, now_ms)
