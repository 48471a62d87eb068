"""The command table: every command of `bitcask-shell` and `bitcask`, one row each.

Each row names the command, its arguments (kinds, which are keys), its summary and
help, where it is offered, the client call that implements it and its exit-code rule.
Parsing, completion, highlighting and `help` are all derived from `COMMANDS`
(see `_table.py`); nothing else in the package lists commands.
"""

from __future__ import annotations

import sys
from typing import Any

from ._context import Context
from ._format import Bool, Items, Nil, Reply, Report, Status, Table, Text, Ttl, Value
from ._table import CLI, SHELL, Arg, Args, Command, Kind, help_text, lazy, terminal_width

__all__ = ["COMMANDS"]


KEY = Arg("key", Kind.KEY)


def nil_is_1(reply: Any) -> int:
    return 1 if isinstance(reply, Nil) else 0


def false_is_1(reply: Any) -> int:
    return 1 if isinstance(reply, Bool) and not reply.value else 0


def missing_is_1(reply: Any) -> int:
    return 1 if isinstance(reply, Ttl) and reply.missing else 0


def _value(data: bytes | None) -> Reply:
    return Nil() if data is None else Value(bytes(data))


async def _get(ctx: Context, a: Args) -> Reply:
    c = await ctx.client()
    value = await c.get(a["key"])
    if value is not None:
        ctx.remember_keys([a["key"]])
    return _value(value)


async def _put(ctx: Context, a: Args) -> Reply:
    c = await ctx.client()
    await c.put(a["key"], a["value"], ttl=a["ttl"])
    ctx.remember_keys([a["key"]])
    return Status("OK")


async def _delete(ctx: Context, a: Args) -> Reply:
    c = await ctx.client()
    return Bool(bool(await c.delete(a["key"])))


async def _exists(ctx: Context, a: Args) -> Reply:
    c = await ctx.client()
    return Bool(bool(await c.exists(a["key"])))


async def _ttl(ctx: Context, a: Args) -> Reply:
    c = await ctx.client()
    left = await c.ttl(a["key"])  # seconds, or the Redis convention: -1 none, -2 missing
    if left == -2:
        return Ttl(None, missing=True)
    if left == -1:
        return Ttl(None)
    return Ttl(float(left))


async def _mget(ctx: Context, a: Args) -> Reply:
    c = await ctx.client()
    keys = [k for (k,) in a["groups"]]
    return Items(tuple(_value(v) for v in await c.mget(keys)))


async def _mput(ctx: Context, a: Args) -> Reply:
    c = await ctx.client()
    pairs = dict(a["groups"])
    await c.mput(pairs)
    ctx.remember_keys(pairs)
    return Status("OK")


async def _scan(ctx: Context, a: Args) -> Reply:
    c = await ctx.client()
    count = int(a["count"] or 10)
    from ._transfer import scan_page

    # "" is where a scan starts (as docs/shell.md writes it), not "after the empty key"
    cursor, keys = await scan_page(c, a["prefix"] or b"", a["cursor"] or None, count)
    ctx.remember_keys(keys)
    page = Items(tuple(Value(k) for k in keys))
    return Items((Nil() if cursor is None else Value(cursor), page))


async def _keys(ctx: Context, a: Args) -> Reply:
    c = await ctx.client()
    # sorted and unique: a Redis endpoint's SCAN pages come in hash order and may
    # repeat a key; the binary scan is already both (sorting it again is cheap)
    prefix = a["prefix"] or b""
    keys = sorted({bytes(k) async for k in c.scan(prefix=prefix)})
    ctx.remember_keys(keys[:1000])
    # `keys *`, as typed to redis-cli, asks here for the keys starting with "*"
    empty = (
        "(empty list: keys takes a prefix, not a pattern; keys alone lists every key)"
        if any(ch in prefix for ch in b"*?[")
        else "(empty list)"
    )
    return Items(tuple(Value(k) for k in keys), empty=empty)


async def _stats(ctx: Context, a: Args) -> Reply:
    c = await ctx.client()
    return Table(await c.stats())


async def _merge(ctx: Context, a: Args) -> Reply:
    if a["dir"] is not None:
        from ._offline import merge

        return await merge(ctx, a["dir"])
    c = await ctx.client()
    return Table(await c.merge())


async def _sync(ctx: Context, a: Args) -> Reply:
    c = await ctx.client()
    await c.sync()
    return Status("OK")


async def _ping(ctx: Context, a: Args) -> Reply:
    c = await ctx.client()
    if a["message"] is None:
        reply = await c.ping()
        return Status(reply if isinstance(reply, str) else "PONG")
    reply = await c.ping(a["message"])
    return Value(
        reply.encode("utf-8", "surrogateescape") if isinstance(reply, str) else bytes(reply)
    )


async def _auth(ctx: Context, a: Args) -> Reply:
    await ctx.authenticate(a["token"].decode("utf-8", "surrogateescape"))
    return Status("OK")


async def _help(ctx: Context, a: Args) -> Reply:
    table = getattr(ctx, "table", COMMANDS)  # the front end's table (the CLI may add rows)
    # fitted to the terminal: the list was 113 columns wide, wrapped mid-word at 80
    width = terminal_width(sys.stdout) if ctx.interactive else None
    return Text(help_text(table, a["command"], ctx.scope, width))


async def _quit(ctx: Context, a: Args) -> Reply:
    raise EOFError


def _check_exit(reply: Any) -> int:
    return 1 if isinstance(reply, Report) and reply.data.get("ok") is False else 0


COMMANDS: tuple[Command, ...] = (
    Command(
        "get", (KEY,), "Get the value of a key.",
        "Prints the value, or (nil) when the key does not exist.",
        _get, nil_is_1, idempotent=True, paged=True, examples=("get user:1",),
        shell_help="Values that are not UTF-8 text are shown with \\xNN escapes.\n"
        "A value longer than the screen goes through the pager.",
        cli_help="Exit status 1 when the key does not exist.\n"
        "Piped, the value's bytes are written as they are, then a newline (as\n"
        "redis-cli --raw); on a terminal, bytes that are not UTF-8 text are shown with\n"
        "\\xNN escapes.",
        single=True,
    ),
    Command(
        "put", (KEY, Arg("value", Kind.VALUE), Arg("ttl", Kind.FLOAT, optional=True,
                                                   keyword="ttl", positive=True, meta="SECONDS")),
        "Set a key to a value, optionally expiring after SECONDS.",
        "Prints OK once the write is acknowledged.",
        _put, examples=('put user:1 "Ada Lovelace"', "put session:9 token TTL 30"),
        shell_help="Arguments may be double-quoted with the escapes \\\" \\\\ \\n \\r \\t \\xNN;\n"
        "a backslash outside quotes is a plain backslash.",
        cli_help="Arguments are taken byte for byte from the command line (no escapes).\n"
        "VALUE - reads the value from standard input instead, binary-safe and of any\n"
        "size up to the server's limit: bitcask put photo - < photo.jpg\n"
        "(to store a lone dash: printf - | bitcask put KEY -).",
        single=True,
    ),
    Command(
        "delete", (KEY,), "Delete a key.",
        "Prints (true) if the key existed, (false) otherwise.",
        _delete, false_is_1, aliases=("del",), examples=("delete user:1",),
        cli_help="Exit status 1 when there was no such key.",
        single=True,
    ),
    Command(
        "exists", (KEY,), "Does a key exist?",
        "Prints (true) or (false).",
        _exists, false_is_1, idempotent=True, examples=("exists user:1",),
        cli_help="Exit status 1 when it does not.",
        single=True,
    ),
    Command(
        "ttl", (KEY,), "Seconds left before a key expires.",
        "Prints (ttl) N s, (no ttl) for a key that never expires, or (no such key).\n"
        "Raw output follows Redis: seconds, -1 or -2.",
        _ttl, missing_is_1, idempotent=True, examples=("ttl session:9",),
        cli_help="Exit status 1 when there is no such key.",
        single=True,
    ),
    Command(
        "mget", (KEY,), "Get several keys at once.",
        "One reply per key, in order; (nil) for the missing ones.",
        _mget, idempotent=True, repeat=True, paged=True, examples=("mget user:1 user:2",),
        single=True,
    ),
    Command(
        "mput", (KEY, Arg("value", Kind.VALUE)), "Set several keys at once (atomic).",
        "All pairs are written together or not at all.",
        _mput, repeat=True, examples=("mput a 1 b 2",),
        single=True,
    ),
    Command(
        "scan", (Arg("prefix", Kind.PREFIX, optional=True), Arg("cursor", Kind.CURSOR, optional=True),
                 Arg("count", Kind.INT, optional=True, positive=True)),
        "One page of keys with a prefix, in byte order.",
        "Replies with the cursor for the next page ((nil) when done) and up to COUNT\n"
        "keys (default 10). Pass the cursor back to continue: scan user: user:9 10.\n"
        'Use "" for an empty prefix. Over redis:// the cursor is the endpoint\'s own\n'
        "and only each page is sorted.",
        _scan, idempotent=True, paged=True, examples=("scan user:", 'scan "" user:9 5'),
        single=True,
    ),
    Command(
        "keys", (Arg("prefix", Kind.PREFIX, optional=True),), "Every key with a prefix.",
        "Pages through the whole key space with scan.",
        _keys, idempotent=True, paged=True, examples=("keys user:",),
        shell_help="Output longer than the screen goes through the pager.",
    ),
    Command(
        "set", (KEY, Arg("value", Kind.VALUE), Arg("flag1", Kind.VALUE, optional=True, meta="NX|XX"),
                Arg("flag2", Kind.VALUE, optional=True, meta="GET"),
                Arg("flag3", Kind.VALUE, optional=True, meta="KEEPTTL"),
                Arg("ttl", Kind.FLOAT, optional=True, keyword="ttl", positive=True, meta="SECONDS")),
        "Set a key only if absent (NX) or present (XX), atomically.",
        "Prints OK when stored, (nil) when NX or XX kept it from being stored.\n"
        "GET prints the value the key had instead (or (nil)), stored or not.\n"
        "KEEPTTL keeps the key's expiry; TTL SECONDS sets one; neither removes it.\n"
        "The options may come in any order after the value.",
        lazy("._rmw", "set_"), nil_is_1, paged=True, examples=("set lock:1 me NX TTL 30", "set user:1 Ann XX GET"),
        cli_help="Exit status 1 when it printed (nil).",
        single=True,
    ),
    Command(
        "incr", (KEY, Arg("by", Kind.INT, optional=True, keyword="by", meta="N")),
        "Add 1 (or N) to an integer, atomically.",
        "Prints the new value. A missing key counts as 0; the expiry is kept.\n"
        "A value that is not a 64-bit integer, or a result out of range, is\n"
        "NOT_A_NUMBER and changes nothing. N may be negative.",
        lazy("._rmw", "incr"), examples=("incr visits", "incr stock BY -3"),
        single=True,
    ),
    Command(
        "incrfloat", (KEY, Arg("delta", Kind.FLOAT)), "Add a number to a value, atomically.",
        "Prints the new value as stored (as Redis's INCRBYFLOAT: 10.5 + 0.1 is 10.6).",
        lazy("._rmw", "incrfloat"), examples=("incrfloat price 0.25",),
        single=True,
    ),
    Command(
        "append", (KEY, Arg("suffix", Kind.VALUE)), "Append to a value, atomically.",
        "Prints the new length. A missing key is created.",
        lazy("._rmw", "append"), examples=('append log "line 1\\n"',),
        single=True,
    ),
    Command(
        "getdel", (KEY,), "Get a key's value and delete the key, atomically.",
        "Prints the value, or (nil) when the key does not exist.",
        lazy("._rmw", "getdel"), nil_is_1, paged=True, examples=("getdel token:9",),
        cli_help="Exit status 1 when the key does not exist.",
        single=True,
    ),
    Command(
        "expire", (KEY, Arg("seconds", Kind.FLOAT, positive=True),
                   Arg("cond", Kind.VALUE, optional=True, meta="NX|XX|GT|LT")),
        "Give an existing key an expiry.",
        "Prints (true) when set, (false) for a missing key or an unmet condition:\n"
        "NX only without an expiry, XX only with one, GT / LT only if later / earlier\n"
        "than the current one.",
        lazy("._rmw", "expire"), false_is_1, examples=("expire session:9 60", "expire session:9 600 GT"),
        cli_help="Exit status 1 when it printed (false).",
        single=True,
    ),
    Command(
        "persist", (KEY,), "Remove a key's expiry.",
        "Prints (true) when the key had an expiry, (false) otherwise.",
        lazy("._rmw", "persist"), false_is_1, examples=("persist session:9",),
        cli_help="Exit status 1 when it printed (false).",
        single=True,
    ),
    Command(
        "rename", (KEY, Arg("newkey", Kind.KEY), Arg("nx", Kind.VALUE, optional=True, meta="NX")),
        "Move a key's value and expiry to a new key, atomically.",
        "Prints (true) when moved; with NX, (false) if NEWKEY exists (nothing moves).\n"
        "A missing KEY is NO_SUCH_KEY.",
        lazy("._rmw", "rename"), false_is_1, examples=("rename upload:tmp upload:1",),
        cli_help="Exit status 1 when it printed (false).",
        single=True,
    ),
    Command(
        "clear", (Arg("confirm", Kind.VALUE, meta="all"),), "Delete every key, atomically.",
        "Type clear all. Prints how many keys were deleted.",
        lazy("._rmw", "clear"), group="server", examples=("clear all",),
        single=True,
    ),
    Command(
        "stats", (), "Server and store statistics.",
        "Key count, memory used by the keydir, live and dead bytes, files, counters.\n"
        "Raw output is one JSON object.",
        _stats, idempotent=True, group="server", paged=True, examples=("stats",),
        single=True,
    ),
    Command(
        "merge", (Arg("dir", Kind.PATH, optional=True),),
        "Compact the data files (the server's, or DIR's offline).",
        "Without DIR: asks the server to merge now and prints the report.\n"
        "With DIR: merges that data directory directly (the server must be stopped),\n"
        "with a progress bar and a summary.",
        _merge, group="server", examples=("merge", "merge ./data"),
    ),
    Command(
        "sync", (), "Flush the server's writes to disk (fsync).", "Prints OK once done.",
        _sync, idempotent=True, group="server", examples=("sync",),
        single=True,
    ),
    Command(
        "ping", (Arg("message", Kind.VALUE, optional=True),), "Check the connection.",
        "Prints PONG, or MESSAGE back when given.", _ping, group="server", idempotent=True,
        examples=("ping", "ping hello"),
        single=True,
    ),
    Command(
        "health", (), "Ask the HTTP adapter whether the server is healthy.",
        "GET /health on the HTTP port (--http-port, default 7380). Exit status 0 when\n"
        "healthy, 2 when not or unreachable.",
        lazy("._monitor", "health"), scope=frozenset({CLI}), group="server", examples=("health",),
    ),
    Command(
        "stat", (Arg("count", Kind.INT, optional=True, keyword="--count", positive=True, meta="N"),
                 Arg("interval", Kind.FLOAT, optional=True, keyword="--interval", positive=True, meta="SECONDS")),
        "A live view of ops/s, keys, memory, live and dead bytes.",
        "One line per interval (default 1 s), like redis-cli --stat; stops after\n"
        "--count lines or on Ctrl-C.",
        lazy("._monitor", "stat"), scope=frozenset({CLI}), group="tools", examples=("stat --count 5",),
    ),
    Command(
        "latency", (Arg("count", Kind.INT, optional=True, keyword="--count", positive=True, meta="N"),
                    Arg("interval", Kind.FLOAT, optional=True, keyword="--interval", minimum=0, meta="SECONDS")),
        "Round-trip latency of ping: min, avg, p50, p99, max.",
        "Sends one ping per interval (default 0.01 s) until --count samples\n"
        "(or Ctrl-C), then prints the summary in milliseconds.",
        lazy("._monitor", "latency"), scope=frozenset({CLI}), group="tools",
        examples=("latency --count 100",),
    ),
    Command(
        "import", (Arg("file", Kind.PATH),
                   Arg("batch", Kind.INT, optional=True, keyword="--batch", positive=True, meta="N")),
        "Load JSON lines {\"key\": ..., \"value\": ...} into the store.",
        "FILE may be - for stdin. Non-UTF-8 keys or values use \"key_b64\"/\"value_b64\"\n"
        "(base64) instead; an optional \"ttl\" gives seconds. Pairs are sent in batches of\n"
        "--batch (default 500) with several batches in flight at once.\n"
        "Not all-or-nothing: each batch is atomic and batches complete in file order;\n"
        "a bad line (named by number, with the reason), an error or Ctrl-C stops the\n"
        "import and says up to which line everything is in the store.",
        lazy("._transfer", "import_"), scope=frozenset({CLI}), group="tools",
        examples=("import dump.jsonl",),
    ),
    Command(
        "export", (Arg("file", Kind.PATH), Arg("prefix", Kind.PREFIX, optional=True)),
        "Write every key (with PREFIX) as JSON lines.",
        "FILE may be - for stdout. Keys in byte order; the format is the one import\n"
        "reads (\"key_b64\"/\"value_b64\" for bytes that are not UTF-8). FILE is written\n"
        "aside and renamed into place once complete: an interrupted export leaves no\n"
        "partial FILE.",
        lazy("._transfer", "export"), scope=frozenset({CLI}), group="tools",
        examples=("export dump.jsonl", "export users.jsonl user:"),
    ),
    Command(
        "check", (Arg("dir", Kind.PATH),), "Verify a data directory offline (read-only).",
        "Reads every record and hint file and reports problems without changing\n"
        "anything. Exit status 1 when it finds damage. The server may be running.\n"
        "A directory with no data files is refused (exit status 2): it is not a store.",
        lazy("._offline", "check"), _check_exit, scope=frozenset({CLI}), group="tools", examples=("check ./data",),
    ),
    Command(
        "repair", (Arg("dir", Kind.PATH),), "Repair a data directory offline.",
        "Truncates torn tails and drops corrupt records; the server must be stopped.\n"
        "A directory with no data files is refused and left untouched.",
        lazy("._offline", "repair"), scope=frozenset({CLI}), group="tools",
        examples=("repair ./data",),
    ),
    Command(
        "auth", (Arg("token", Kind.VALUE, meta="TOKEN"),), "Authenticate with a token.",
        "Reconnects to the server with TOKEN (the server's --auth) and prints OK, or\n"
        "AUTH_FAILED and keeps the previous connection settings. The line is not\n"
        "saved in the history file.",
        _auth, scope=frozenset({SHELL}), group="server", examples=("auth s3cret",),
    ),
    Command(
        "help", (Arg("command", Kind.COMMAND, optional=True),), "List commands, or explain one.",
        "help alone lists every command; help CMD shows its usage, details and examples.",
        _help, group="shell", examples=("help", "help put"),
    ),
    Command(
        "quit", (), "Leave the shell (also Ctrl-D).", "Closes the connection and exits.",
        _quit, aliases=("exit",), scope=frozenset({SHELL}), group="shell",
    ),
)  # fmt: skip
