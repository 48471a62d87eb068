"""The Redis command table: one row per command, and the COMMAND INFO/DOCS replies built from it.

Strategy / invariants:
- `COMMANDS` is the only list of commands of the text dialect: lookup and arity
  checks (redis_commands.check_command), COMMAND COUNT/INFO/DOCS and docs/redis.md's
  table all come from these rows. Names are lower case; subcommands are `container|sub`.
- Arity, flags, key positions and `since` are Redis 7's own, so Redis clients and
  redis-cli see the same metadata they would from Redis; summaries are Redis's,
  shortened where our keyspace is narrower (strings only, database 0 only).
- `syntax` is Redis's documentation syntax; `command_docs` derives the `arguments`
  structure of COMMAND DOCS from it (the data redis-cli 7.2+ builds its hints from).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any

__all__ = ["COMMANDS", "SUBCOMMANDS", "CommandSpec", "command_docs", "command_info"]


# --- the table --------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class CommandSpec:
    """One row of the command table (the data COMMAND INFO and COMMAND DOCS answer with).

    Attributes:
        name: lower case; a subcommand is "container|sub".
        arity: Redis's arity: N exactly N argv items (name included), -N at least N.
        flags: Redis's command flags ("readonly", "write", "fast", ...).
        first_key, last_key, step: the key positions (last -1 = the last argument).
        summary: one line of semantics.
        since: the Redis version that introduced it.
        group: "string", "generic", "transactions", "connection", "server" or "cluster".
        syntax: the arguments after the name, Redis documentation style.
        subcommands: of a container command (CLIENT, COMMAND, CONFIG, OBJECT, ...).
    """

    name: str
    arity: int
    flags: tuple[str, ...]
    first_key: int
    last_key: int
    step: int
    summary: str
    since: str
    group: str
    syntax: str = ""
    subcommands: tuple[CommandSpec, ...] = field(default=())

    @property
    def is_write(self) -> bool:
        """Whether it may modify the keyspace."""
        return "write" in self.flags


_RW = ("write", "denyoom")
_RWF = ("write", "denyoom", "fast")
_WF = ("write", "fast")
_RO = ("readonly",)
_ROF = ("readonly", "fast")
_TX = ("noscript", "loading", "stale", "fast", "allow_busy")
_CONN = ("noscript", "loading", "stale", "fast", "no_auth", "allow_busy")

_EXPIRE_OPTS = "[NX | XX | GT | LT]"
_ROWS: list[CommandSpec] = [
    # strings
    CommandSpec("get", 2, _ROF, 1, 1, 1, "Returns the string value of a key.", "1.0.0", "string", "key"),
    CommandSpec("set", -3, _RW, 1, 1, 1, "Sets the string value of a key, ignoring its type; the key is created if it doesn't exist.", "1.0.0", "string",
                "key value [NX | XX] [GET] [EX seconds | PX milliseconds | EXAT unix-time-seconds | PXAT unix-time-milliseconds | KEEPTTL]"),
    CommandSpec("setnx", 3, _RWF, 1, 1, 1, "Set the string value of a key only when the key doesn't exist.", "1.0.0", "string", "key value"),
    CommandSpec("setex", 4, _RW, 1, 1, 1, "Sets the string value and expiration time of a key; the key is created if it doesn't exist.", "2.0.0", "string", "key seconds value"),
    CommandSpec("psetex", 4, _RW, 1, 1, 1, "Sets both string value and expiration time in milliseconds of a key.", "2.6.0", "string", "key milliseconds value"),
    CommandSpec("getset", 3, _RWF, 1, 1, 1, "Returns the previous string value of a key after setting it to a new value.", "1.0.0", "string", "key value"),
    CommandSpec("getdel", 2, _WF, 1, 1, 1, "Returns the string value of a key after deleting the key.", "6.2.0", "string", "key"),
    CommandSpec("getex", -2, _WF, 1, 1, 1, "Returns the string value of a key after setting its expiration time.", "6.2.0", "string",
                "key [EX seconds | PX milliseconds | EXAT unix-time-seconds | PXAT unix-time-milliseconds | PERSIST]"),
    CommandSpec("mget", -2, _ROF, 1, -1, 1, "Atomically returns the string values of one or more keys.", "1.0.0", "string", "key [key ...]"),
    CommandSpec("mset", -3, _RW, 1, -1, 2, "Atomically creates or modifies the string values of one or more keys.", "1.0.1", "string", "key value [key value ...]"),
    CommandSpec("msetnx", -3, _RW, 1, -1, 2, "Atomically sets the values of one or more keys only when all keys don't exist.", "1.0.1", "string", "key value [key value ...]"),
    CommandSpec("strlen", 2, _ROF, 1, 1, 1, "Returns the length of a string value.", "2.2.0", "string", "key"),
    CommandSpec("append", 3, _RWF, 1, 1, 1, "Appends a string to the value of a key; creates the key if it doesn't exist.", "2.0.0", "string", "key value"),
    CommandSpec("incr", 2, _RWF, 1, 1, 1, "Increments the integer value of a key by one; uses 0 as initial value if the key doesn't exist.", "1.0.0", "string", "key"),
    CommandSpec("decr", 2, _RWF, 1, 1, 1, "Decrements the integer value of a key by one; uses 0 as initial value if the key doesn't exist.", "1.0.0", "string", "key"),
    CommandSpec("incrby", 3, _RWF, 1, 1, 1, "Increments the integer value of a key by a number; uses 0 as initial value if the key doesn't exist.", "1.0.0", "string", "key increment"),
    CommandSpec("decrby", 3, _RWF, 1, 1, 1, "Decrements a number from the integer value of a key; uses 0 as initial value if the key doesn't exist.", "1.0.0", "string", "key decrement"),
    CommandSpec("incrbyfloat", 3, _RWF, 1, 1, 1, "Increment the floating point value of a key by a number; uses 0 as initial value if the key doesn't exist.", "2.6.0", "string", "key increment"),
    # keys
    CommandSpec("del", -2, ("write",), 1, -1, 1, "Deletes one or more keys.", "1.0.0", "generic", "key [key ...]"),
    CommandSpec("unlink", -2, _WF, 1, -1, 1, "Asynchronously deletes one or more keys.", "4.0.0", "generic", "key [key ...]"),
    CommandSpec("exists", -2, _ROF, 1, -1, 1, "Determines whether one or more keys exist (a key named twice counts twice).", "1.0.0", "generic", "key [key ...]"),
    CommandSpec("type", 2, _ROF, 1, 1, 1, "Determines the type of value stored at a key (string or none here).", "1.0.0", "generic", "key"),
    CommandSpec("expire", -3, _WF, 1, 1, 1, "Sets the expiration time of a key in seconds.", "1.0.0", "generic", "key seconds " + _EXPIRE_OPTS),
    CommandSpec("pexpire", -3, _WF, 1, 1, 1, "Sets the expiration time of a key in milliseconds.", "2.6.0", "generic", "key milliseconds " + _EXPIRE_OPTS),
    CommandSpec("expireat", -3, _WF, 1, 1, 1, "Sets the expiration time of a key to a Unix timestamp.", "1.2.0", "generic", "key unix-time-seconds " + _EXPIRE_OPTS),
    CommandSpec("pexpireat", -3, _WF, 1, 1, 1, "Sets the expiration time of a key to a Unix milliseconds timestamp.", "2.6.0", "generic", "key unix-time-milliseconds " + _EXPIRE_OPTS),
    CommandSpec("persist", 2, _WF, 1, 1, 1, "Removes the expiration time of a key.", "2.2.0", "generic", "key"),
    CommandSpec("ttl", 2, _ROF, 1, 1, 1, "Returns the expiration time in seconds of a key.", "1.0.0", "generic", "key"),
    CommandSpec("pttl", 2, _ROF, 1, 1, 1, "Returns the expiration time in milliseconds of a key.", "2.6.0", "generic", "key"),
    CommandSpec("expiretime", 2, _ROF, 1, 1, 1, "Returns the expiration time of a key as a Unix timestamp.", "7.0.0", "generic", "key"),
    CommandSpec("pexpiretime", 2, _ROF, 1, 1, 1, "Returns the expiration time of a key as a Unix milliseconds timestamp.", "7.0.0", "generic", "key"),
    CommandSpec("scan", -2, _RO, 0, 0, 0, "Iterates over the key names in the database.", "2.8.0", "generic",
                "cursor [MATCH pattern] [COUNT count] [TYPE type]"),
    CommandSpec("keys", 2, _RO, 0, 0, 0, "Returns all key names that match a pattern.", "1.0.0", "generic", "pattern"),
    CommandSpec("randomkey", 1, _RO, 0, 0, 0, "Returns a random key name from the database.", "1.0.0", "generic"),
    CommandSpec("object", -2, (), 0, 0, 0, "A container for object introspection commands.", "2.2.3", "generic", "", (
        CommandSpec("object|encoding", 3, _RO, 2, 2, 1, "Returns the internal encoding a freshly SET value of this length and form would have.", "2.2.3", "generic", "key"),
        CommandSpec("object|freq", 3, _RO, 2, 2, 1, "Returns the logarithmic access frequency counter (refused: no LFU policy here).", "4.0.0", "generic", "key"),
        CommandSpec("object|refcount", 3, _RO, 2, 2, 1, "Returns the reference count a freshly SET value of this form would have.", "2.2.3", "generic", "key"),
    )),
    CommandSpec("rename", 3, ("write",), 1, 2, 1, "Renames a key and overwrites the destination.", "1.0.0", "generic", "key newkey"),
    CommandSpec("renamenx", 3, _WF, 1, 2, 1, "Renames a key only when the target key name doesn't exist.", "1.0.0", "generic", "key newkey"),
    CommandSpec("copy", -3, ("write", "denyoom"), 1, 2, 1, "Copies the value (and expiry) of a key to a new key.", "6.2.0", "generic", "source destination [DB destination-db] [REPLACE]"),
    # transactions
    CommandSpec("multi", 1, _TX, 0, 0, 0, "Starts a transaction.", "1.2.0", "transactions"),
    CommandSpec("exec", 1, ("noscript", "loading", "stale", "skip_slowlog"), 0, 0, 0, "Executes all commands in a transaction.", "1.2.0", "transactions"),
    CommandSpec("discard", 1, _TX, 0, 0, 0, "Discards a transaction.", "2.0.0", "transactions"),
    CommandSpec("watch", -2, _TX, 1, -1, 1, "Monitors changes to keys to determine the execution of a transaction.", "2.2.0", "transactions", "key [key ...]"),
    CommandSpec("unwatch", 1, _TX, 0, 0, 0, "Forgets about watched keys of a transaction.", "2.2.0", "transactions"),
    # connection
    CommandSpec("ping", -1, ("fast",), 0, 0, 0, "Returns the server's liveliness response.", "1.0.0", "connection", "[message]"),
    CommandSpec("echo", 2, ("loading", "stale", "fast"), 0, 0, 0, "Returns the given string.", "1.0.0", "connection", "message"),
    CommandSpec("auth", -2, _CONN, 0, 0, 0, "Authenticates the connection.", "1.0.0", "connection", "[username] password"),
    CommandSpec("hello", -1, _CONN, 0, 0, 0, "Handshakes with the server.", "6.0.0", "connection",
                "[protover [AUTH username password] [SETNAME clientname]]"),
    CommandSpec("select", 2, ("loading", "stale", "fast"), 0, 0, 0, "Changes the selected database (0 is the only one).", "1.0.0", "connection", "index"),
    CommandSpec("quit", -1, _CONN, 0, 0, 0, "Closes the connection.", "1.0.0", "connection"),
    CommandSpec("reset", 1, _CONN, 0, 0, 0, "Resets the connection.", "6.2.0", "connection"),
    CommandSpec("client", -2, (), 0, 0, 0, "A container for client connection commands.", "2.4.0", "connection", "", (
        CommandSpec("client|setname", 3, ("noscript", "loading", "stale"), 0, 0, 0, "Sets the connection name.", "2.6.9", "connection", "connection-name"),
        CommandSpec("client|getname", 2, ("noscript", "loading", "stale"), 0, 0, 0, "Returns the name of the connection.", "2.6.9", "connection"),
        CommandSpec("client|id", 2, ("noscript", "loading", "stale"), 0, 0, 0, "Returns the unique client ID of the connection.", "5.0.0", "connection"),
        CommandSpec("client|list", -2, ("admin", "noscript", "loading", "stale"), 0, 0, 0, "Lists open connections.", "2.4.0", "connection",
                    "[TYPE normal | master | replica | pubsub] [ID client-id [client-id ...]]"),
        CommandSpec("client|kill", -3, ("admin", "noscript", "loading", "stale"), 0, 0, 0, "Terminates open connections.", "2.4.0", "connection",
                    "ip:port | [ID client-id] [TYPE NORMAL | MASTER | SLAVE | REPLICA | PUBSUB] [USER username] [ADDR ip:port] [LADDR ip:port] [SKIPME YES | NO] [MAXAGE maxage] [...]"),
        CommandSpec("client|info", 2, ("noscript", "loading", "stale"), 0, 0, 0, "Returns information about the connection.", "6.2.0", "connection"),
        CommandSpec("client|no-evict", 3, ("admin", "noscript", "loading", "stale"), 0, 0, 0, "Sets the client eviction mode of the connection (a no-op: no client eviction here).", "7.0.0", "connection", "ON | OFF"),
        CommandSpec("client|no-touch", 3, ("noscript", "loading", "stale"), 0, 0, 0, "Controls whether commands sent by the client affect the LRU/LFU of accessed keys (a no-op: none is tracked).", "7.2.0", "connection", "ON | OFF"),
        CommandSpec("client|setinfo", 4, ("noscript", "loading", "stale"), 0, 0, 0, "Sets information specific to the client or connection.", "7.2.0", "connection",
                    "LIB-NAME libname | LIB-VER libver"),
    )),
    # cluster: refused with Redis's reply when cluster support is disabled
    CommandSpec("readonly", 1, ("loading", "stale", "fast"), 0, 0, 0, "Enables read queries for a connection to a cluster replica node (refused: no cluster).", "3.0.0", "cluster"),
    CommandSpec("readwrite", 1, ("loading", "stale", "fast"), 0, 0, 0, "Enables read-write queries for a connection to a cluster replica node (refused: no cluster).", "3.0.0", "cluster"),
    CommandSpec("cluster", -2, (), 0, 0, 0, "A container for Redis Cluster commands (each refused: no cluster).", "3.0.0", "cluster", "", (
        CommandSpec("cluster|info", 2, ("stale",), 0, 0, 0, "Returns information about the state of a node.", "3.0.0", "cluster"),
        CommandSpec("cluster|myid", 2, ("stale",), 0, 0, 0, "Returns the ID of a node.", "3.0.0", "cluster"),
        CommandSpec("cluster|nodes", 2, ("stale",), 0, 0, 0, "Returns the cluster configuration for a node.", "3.0.0", "cluster"),
        CommandSpec("cluster|shards", 2, ("stale",), 0, 0, 0, "Returns the mapping of cluster slots to shards.", "7.0.0", "cluster"),
        CommandSpec("cluster|slots", 2, ("stale",), 0, 0, 0, "Returns the mapping of cluster slots to nodes.", "3.0.0", "cluster"),
    )),
    # server
    CommandSpec("command", -1, ("loading", "stale"), 0, 0, 0, "Returns detailed information about all commands.", "2.8.13", "server", "", (
        CommandSpec("command|count", 2, ("loading", "stale"), 0, 0, 0, "Returns a count of commands.", "2.8.13", "server"),
        CommandSpec("command|info", -2, ("loading", "stale"), 0, 0, 0, "Returns information about one, multiple or all commands.", "2.8.13", "server", "[command-name [command-name ...]]"),
        CommandSpec("command|docs", -2, ("loading", "stale"), 0, 0, 0, "Returns documentary information about one, multiple or all commands.", "7.0.0", "server", "[command-name [command-name ...]]"),
    )),
    CommandSpec("info", -1, ("loading", "stale"), 0, 0, 0, "Returns information and statistics about the server.", "1.0.0", "server", "[section [section ...]]"),
    CommandSpec("config", -2, (), 0, 0, 0, "A container for server configuration commands.", "2.0.0", "server", "", (
        CommandSpec("config|get", -3, ("admin", "noscript", "loading", "stale"), 0, 0, 0, "Returns the effective values of configuration parameters.", "2.0.0", "server", "parameter [parameter ...]"),
    )),
    CommandSpec("memory", -2, (), 0, 0, 0, "A container for memory diagnostics commands.", "4.0.0", "server", "", (
        CommandSpec("memory|usage", -3, _RO, 2, 2, 1, "Returns the bytes of a key and its value.", "4.0.0", "server", "key [SAMPLES count]"),
    )),
    CommandSpec("dbsize", 1, _ROF, 0, 0, 0, "Returns the number of keys in the database.", "1.0.0", "server"),
    CommandSpec("time", 1, ("loading", "stale", "fast"), 0, 0, 0, "Returns the server time.", "2.6.0", "server"),
    CommandSpec("flushdb", -1, ("write",), 0, 0, 0, "Removes all keys from the current database.", "1.0.0", "server", "[ASYNC | SYNC]"),
    CommandSpec("flushall", -1, ("write",), 0, 0, 0, "Removes all keys from all databases.", "1.0.0", "server", "[ASYNC | SYNC]"),
]  # fmt: skip

COMMANDS: Mapping[str, CommandSpec] = MappingProxyType({spec.name: spec for spec in _ROWS})
"""Every command of the dialect by lower-case name (subcommands inside their container)."""

SUBCOMMANDS: Mapping[str, Mapping[str, CommandSpec]] = MappingProxyType(
    {
        spec.name: MappingProxyType({sub.name.split("|")[1]: sub for sub in spec.subcommands})
        for spec in _ROWS
        if spec.subcommands
    }
)


# --- COMMAND INFO / DOCS replies --------------------------------------------------

_ACL = {
    "string": "@string",
    "generic": "@keyspace",
    "transactions": "@transaction",
    "connection": "@connection",
    "server": "@admin",
    "cluster": "@connection",
}


def _find(names: tuple[bytes, ...]) -> list[CommandSpec | None]:
    if not names:
        return list(COMMANDS.values())
    out: list[CommandSpec | None] = []
    for raw in names:
        key = raw.decode("latin-1").lower()
        spec = COMMANDS.get(key)
        if spec is None and "|" in key:
            container, _, sub = key.partition("|")
            spec = SUBCOMMANDS.get(container, {}).get(sub)
        out.append(spec)
    return out


# Redis 7.0's categories where the group's and the flags' do not give them
# (COMMAND INFO answered @admin for DBSIZE, TIME, INFO, COMMAND; no @dangerous).
_ACL_OF = {
    "client": {"@slow"},
    **{name: {"@admin", "@slow", "@dangerous", "@connection"} for name in ("client|kill", "client|list", "client|no-evict")},
    "config": {"@slow"},
    "config|get": {"@admin", "@slow", "@dangerous"},
    "dbsize": {"@keyspace", "@read", "@fast"},
    "flushall": {"@keyspace", "@write", "@slow", "@dangerous"},
    "flushdb": {"@keyspace", "@write", "@slow", "@dangerous"},
    "info": {"@slow", "@dangerous"},
    "keys": {"@keyspace", "@read", "@slow", "@dangerous"},
    "time": {"@fast"},
    "object": {"@slow"},
    "memory": {"@slow"},
    "memory|usage": {"@read", "@slow"},
    **{name: {"@slow"} for name in ("cluster", "cluster|info", "cluster|myid", "cluster|nodes", "cluster|shards", "cluster|slots")},
    **{name: {"@connection", "@slow"} for name in ("command", "command|count", "command|info", "command|docs")},
}  # fmt: skip


def _info_entry(spec: CommandSpec) -> list[Any]:
    acl = _ACL_OF.get(spec.name)
    if acl is None:
        acl = {_ACL[spec.group]}
        acl.update(
            "@" + f
            for f in ("read", "write", "fast")
            if f in spec.flags or (f == "read" and "readonly" in spec.flags)
        )
        if "fast" not in spec.flags:
            acl.add("@slow")
    key_specs: list[Any] = []
    if spec.first_key:
        last = spec.last_key - spec.first_key if spec.last_key >= 0 else spec.last_key
        key_specs.append(
            {
                "flags": {"RW", "update"} if spec.is_write else {"RO", "access"},  # Redis's case
                "begin_search": {"type": "index", "spec": {"index": spec.first_key}},
                "find_keys": {
                    "type": "range",
                    "spec": {"lastkey": last, "keystep": spec.step, "limit": 0},
                },
            }
        )
    return [
        spec.name.encode(),
        spec.arity,
        frozenset(spec.flags),
        spec.first_key,
        spec.last_key,
        spec.step,
        frozenset(acl),
        [],
        key_specs,
        [_info_entry(sub) for sub in spec.subcommands],
    ]


def command_info(names: tuple[bytes, ...] = ()) -> list[Any]:
    """COMMAND / COMMAND INFO's reply value (encode it with the RESP writer).

    Args:
        names: command names (`client|setname` for a subcommand); () for all.

    Returns:
        One entry per name (None for an unknown one): [name, arity, flags, first
        key, last key, step, ACL categories, tips, key specs, subcommands].

    Example:
        >>> command_info((b"get",))[0][:6]
        [b'get', 2, frozenset({...}), 1, 1, 1]
    """
    return [None if spec is None else _info_entry(spec) for spec in _find(names)]


_INTEGER_ARGS = {
    "seconds", "milliseconds", "unix-time-seconds", "unix-time-milliseconds", "count",
    "increment", "decrement", "index", "cursor", "protover",
}  # fmt: skip


def _docs_args(syntax: str) -> list[dict[str, Any]]:
    """Redis's `arguments` list from a syntax line such as "key [NX | XX] [key ...]".

    `[...]` is optional, `a | b` one of, `x ...` repeats, an upper-case word is a
    token (alone: a pure token; before a lower-case word: that argument's token).
    """
    tokens: list[str] = re.findall(r"\[|\]|\||\.\.\.|[^\s\[\]|]+", syntax)
    pos = 0

    def seq() -> list[dict[str, Any]]:
        nonlocal pos
        items: list[dict[str, Any]] = []
        while pos < len(tokens) and tokens[pos] not in ("]", "|"):
            tok = tokens[pos]
            pos += 1
            if tok == "...":
                continue
            if tok == "[":
                group = alternatives()
                repeat = tokens[pos - 1] == "..."
                pos += 1  # the closing ']'
                if repeat:
                    _mark_repeated(items, len(_leaves(group)))
                    continue
                group["flags"] = [*group.get("flags", []), "optional"]
                items.append(group)
            elif tok.upper() == tok and tok.lower() != tok:
                following = tokens[pos] if pos < len(tokens) else ""
                if (
                    following
                    and following not in ("[", "]", "|", "...")
                    and following.lower() == following
                ):
                    arg = _leaf(following)
                    arg["token"] = tok
                    pos += 1
                    items.append(arg)
                else:
                    items.append({"name": tok.lower(), "type": "pure-token", "token": tok})
            else:
                items.append(_leaf(tok))
        return items

    def alternatives() -> dict[str, Any]:
        nonlocal pos
        options: list[dict[str, Any]] = []
        while True:
            part = seq()
            if len(part) == 1:
                options.append(part[0])
            elif part:
                options.append({"name": part[0]["name"], "type": "block", "arguments": part})
            if pos < len(tokens) and tokens[pos] == "|":
                pos += 1
                continue
            break
        if len(options) == 1:
            return options[0]
        return {"name": "condition", "type": "oneof", "arguments": options}

    top = alternatives()
    if top["type"] == "block" and "token" not in top:
        return top["arguments"]  # type: ignore[no-any-return]
    return [top]


def _leaves(arg: dict[str, Any]) -> list[dict[str, Any]]:
    if arg["type"] == "block":
        return [leaf for a in arg["arguments"] for leaf in _leaves(a)]
    return [arg]


def _mark_repeated(items: list[dict[str, Any]], count: int) -> None:
    """`x [x ...]`: the last `count` items repeat (one item, or a block of them)."""
    if count <= 1 and items:
        items[-1]["flags"] = [*items[-1].get("flags", []), "multiple"]
    elif len(items) >= count:
        block = items[-count:]
        del items[-count:]
        items.append({"name": "data", "type": "block", "flags": ["multiple"], "arguments": block})


def _leaf(word: str) -> dict[str, Any]:
    if word == "key" or word == "newkey":
        return {"name": word, "type": "key", "key_spec_index": 0}
    kind = "integer" if word in _INTEGER_ARGS else "pattern" if word == "pattern" else "string"
    return {"name": word, "type": kind}


def _docs_entry(spec: CommandSpec) -> dict[str, Any]:
    doc: dict[str, Any] = {"summary": spec.summary, "since": spec.since, "group": spec.group}
    if spec.syntax:
        doc["arguments"] = _docs_args(spec.syntax)
    if spec.subcommands:
        doc["subcommands"] = {sub.name: _docs_entry(sub) for sub in spec.subcommands}
    return doc


def command_docs(names: tuple[bytes, ...] = ()) -> dict[str, Any]:
    """COMMAND DOCS's reply value: name -> {summary, since, group, arguments, subcommands}.

    Unknown names are left out, as Redis does. Strings are sent as simple strings
    (Redis sends bulk strings; clients read both the same).

    Example:
        >>> command_docs((b"get",))["get"]["arguments"]
        [{'name': 'key', 'type': 'key', 'key_spec_index': 0}]
    """
    return {spec.name: _docs_entry(spec) for spec in _find(names) if spec is not None}
