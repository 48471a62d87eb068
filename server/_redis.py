"""The Redis commands of the RESP dialect: argv -> outcomes, replies as RESP bytes.

Strategy / invariants:
- `RedisDispatcher.call(session, name, argv)` has the binary Dispatcher's contract
  (server/_dispatch.py): it never writes and never blocks; it returns an outcome
  (Done, Read, Write, Async) and the connection's Pipeline decides when it runs, so
  replies keep request order and every connection reads its own writes.
- Validation is protocol.redis_commands' (Redis 7's checks and error texts), then
  this server's limits (key and value sizes), all before anything joins a group
  commit. The command is parsed with the server's clock (relative expiries).
- Every reply is encoded here, with the RESP version the connection had when the
  command was called (HELLO 3 changes it for the commands after it), and handed to
  the dialect as bytes. Errors of the Redis handler travel as an ErrorInfo whose
  name is the Redis error code ("ERR", "WRONGTYPE", ...) and whose message is the
  whole line (protocol.resp_dialect.error_line); refusals from outside (BUSY,
  shutdown, disk errors, --max-keys) keep their ErrorCode and are mapped there.
- Writes are engine ops decided by the one writer at apply time (bitcask.Set,
  Incr, Append, GetDel, Expire, ...), so SET NX, INCR, APPEND, RENAME are atomic
  against every other write. A command is one engine batch: MSET is atomic.
- Each command runs as a `Step`: a reply known now (bytes), ops for the writer and
  a `shape` turning their results into the reply, or a read run in its turn. EXEC
  concatenates the steps of its queued commands into ONE engine batch, with the
  connection's watches (nil when a watched key was written since WATCH). Inside
  EXEC the reads GET, MGET, STRLEN, EXISTS, TYPE, the TTL family and DBSIZE are
  ops too (GetEx without an expiry, Peek, CountKeys), so they see the
  transaction's own earlier writes and nothing after them; KEYS, SCAN and
  RANDOMKEY run when EXEC starts if no write comes before them in the
  transaction, else right after the batch.
- Files: this one has the dispatcher, the key and string commands and the
  transactions; server/_redis_admin.py the connection and server commands (AUTH,
  HELLO, CLIENT, INFO, CONFIG, ...); server/_redis_session.py the shared pieces.
- MSETNX is one engine op (bitcask.MSetNx: every key only if none exists), so it is
  atomic alone and inside EXEC alike.
- DBSIZE and INFO's keyspace line are O(1) engine counters (Bitcask.stored_keys,
  expiry_stats); TTL/PTTL/EXPIRETIME/PEXPIRETIME read the record's exact expiry
  (Bitcask.expire_at_ms). Expired keys leave memory through the engine's sampler,
  which server/app.py runs every 100 ms on the writer's thread (ExpiryTask).
"""

from __future__ import annotations

import asyncio
import itertools
import math
import os
import time
from collections.abc import Callable
from time import monotonic
from typing import Any

import bitcask
from protocol import ErrorCode, ErrorInfo
from protocol import redis_commands as rc
from protocol._glob import compile_glob
from protocol._resp_reader import _string2ll
from protocol._resp_writer import NullArray, encode, encode_error
from protocol.resp_dialect import error_line

from ._dispatch import batch_values, reply_too_large, sizes_over, values_over
from ._outcome import Async, Done, Invalid, Outcome, Read, Write, error_info
from ._redis_admin import AdminCommands, bulk_strings
from ._redis_keyspace import Copy, ScanCursors
from ._redis_session import (
    NO_LINK,
    NOAUTH,
    OK,
    QUEUED,
    ClientLink,
    RedisError,
    RedisSession,
    Settle,
    Step,
    redis_error,
    run_read,
)
from ._session import WatchRef
from ._writer import WATCH_ABORTED, Writer
from .config import ServerConfig

__all__ = ["RedisDispatcher", "RedisSession"]

_TOO_BIG = "ERR string exceeds maximum allowed size (proto-max-bulk-len)"
_OPEN = frozenset({"auth", "hello", "reset"})  # allowed before authentication (no_auth)
_NOT_QUEUED = frozenset({"exec", "discard", "multi", "watch", "reset"})
_DROPPED = Done(b"", None)  # a command of a killed session: not run, no reply


class ErrorReply(Invalid):
    """An op that failed alone (NotANumberError, CorruptRecordError, ...), raised by a
    reply shape: the connection's pipeline then answers `info` as an error and counts
    it in bitcask_request_errors_total (returned as bytes, it counted as a success, and
    a corrupt record read by GETDEL never reached the CORRUPT_RECORD alert). EXEC
    catches it and places the error line in its array."""

    def __init__(self, info: ErrorInfo) -> None:
        Exception.__init__(self, info.message)
        self.info = info


# Ops' errors counted under their own code; their Redis line is "ERR " + the message.
_OP_CODES = (
    (bitcask.CorruptRecordError, ErrorCode.CORRUPT_RECORD),
    (bitcask.NotANumberError, ErrorCode.NOT_A_NUMBER),
    (bitcask.NoSuchKeyError, ErrorCode.NO_SUCH_KEY),
)


def _op_error(result: Any) -> None:
    """Raise ErrorReply if `result` is the error of an op that failed alone."""
    if isinstance(result, BaseException):
        if isinstance(result, bitcask.CorruptRecordError):
            message = f"corrupt record: {result}"
        elif isinstance(result, bitcask.ValueTooLargeError):  # APPEND that raced the hint
            raise ErrorReply(ErrorInfo.from_code(ErrorCode.VALUE_TOO_LARGE, _TOO_BIG[4:]))
        else:  # the engine words these as Redis does ("value is not an integer ...")
            message = str(result).strip("'\"") or type(result).__name__
        for cls, code in _OP_CODES:
            if isinstance(result, cls):
                raise ErrorReply(ErrorInfo.from_code(code, message))
        raise ErrorReply(redis_error("ERR " + message))


class RedisDispatcher(AdminCommands):
    """Turns Redis requests into outcomes; one per Server, shared by RESP connections.

    Args:
        db: the open store.
        writer: the group-commit writer every mutation goes through.
        config: limits, the auth token, the sync policy.
        max_key_size / max_value_size: the store's limits, checked before queueing.
        info: returns the server's facts for INFO (connections, uptime, metrics).

    Example:
        >>> d = RedisDispatcher(db, writer, cfg, max_key_size=64,
        ...                     max_value_size=1024, info=dict)          # doctest: +SKIP
        >>> type(d.call(d.new_session(), "get", [b"GET", b"k"])) is Read
        True
    """

    def __init__(
        self,
        db: Any,
        writer: Writer,
        config: ServerConfig,
        *,
        max_key_size: int,
        max_value_size: int,
        info: Callable[[], dict[str, Any]],
    ) -> None:
        self._db = db
        self._writer = writer
        self._config = config
        self._token = config.auth_token
        self._max_key = max_key_size
        self._max_value = max_value_size
        self._info = info
        self._ids = itertools.count(1)
        self._sessions: dict[int, RedisSession] = {}  # CLIENT LIST's; ended at close
        self._cursors = ScanCursors()
        self._run_id = os.urandom(20).hex()
        self.shutting_down = False
        # GET's read by RESP version, for the fast path in `call`
        self._get_reply: dict[int, Callable[[bytes], bytes]] = {
            2: _get_reply(db.get, 2),
            3: _get_reply(db.get, 3),
        }
        self._handlers: dict[type, Callable[[RedisSession, Any, bool], Step]] = {
            rc.Ping: self._ping,
            rc.Echo: lambda s, c, tx: Step(encode(c.message, s.proto)),
            rc.Auth: self._auth,
            rc.Hello: self._hello,
            rc.Select: self._select,
            rc.Reset: self._reset,
            rc.ClientSetName: self._client_setname,
            rc.ClientGetName: lambda s, c, tx: Step(encode(s.name or None, s.proto)),
            rc.ClientId: lambda s, c, tx: Step(encode(s.id)),
            rc.ClientSetInfo: self._client_setinfo,
            rc.ClientList: self._client_list,
            rc.ClientInfo: self._client_info,
            rc.ClientNoEvict: self._client_no_evict,
            rc.ClientKill: self._client_kill,
            rc.CommandCount: lambda s, c, tx: Step(encode(len(rc.COMMANDS))),
            rc.CommandInfo: lambda s, c, tx: Step(encode(rc.command_info(c.names), s.proto)),
            rc.CommandDocs: lambda s, c, tx: Step(
                encode(bulk_strings(rc.command_docs(c.names)), s.proto)
            ),
            rc.ConfigGet: self._config_get,
            rc.Info: self._info_cmd,
            # O(1): the keys held, expired ones until the sampler reclaims them (Redis)
            rc.DbSize: self._dbsize,
            rc.Time: self._time,
            rc.Get: self._get,
            rc.MGet: self._mget,
            rc.StrLen: self._strlen,
            rc.Exists: self._exists,
            rc.Type: self._type,
            rc.ObjectInfo: self._object,
            rc.MemoryUsage: self._memory_usage,
            rc.Ttl: self._ttl,
            rc.Set: self._set,
            rc.SetNx: self._setnx,
            rc.MSet: self._mset,
            rc.GetDel: self._getdel,
            rc.GetEx: self._getex,
            rc.IncrBy: self._incrby,
            rc.IncrByFloat: self._incrbyfloat,
            rc.Append: self._append,
            rc.Del: self._del,
            rc.Expire: self._expire,
            rc.Persist: self._persist,
            rc.Rename: self._rename,
            rc.Copy: self._copy,
            rc.FlushDb: self._flush,
            rc.FlushAll: self._flush,
            rc.Scan: self._scan,
            rc.Keys: self._keys,
            rc.RandomKey: self._randomkey,
            rc.Unwatch: self._unwatch,
        }

    # ---- the Dispatcher interface the Pipeline uses ----

    @property
    def writer(self) -> Writer:
        return self._writer

    def new_session(self, link: ClientLink = NO_LINK) -> RedisSession:
        """A new connection's session; `link` is what it knows of its connection (its
        addresses for CLIENT LIST, how CLIENT KILL closes it)."""
        session = RedisSession(next(self._ids), self._token is None, link)
        self._sessions[session.id] = session
        return session

    def end_session(self, session: RedisSession) -> None:
        """The connection closed: release the keys it WATCHed, leave CLIENT LIST."""
        session.close()
        self._sessions.pop(session.id, None)  # a killed one left at CLIENT KILL

    def call(self, session: RedisSession, name: str, argv: list[bytes]) -> Outcome:
        """Decide what to do with one request (the module docstring's rules)."""
        # The GET / plain SET fast path, the one place it lives: most of a Redis
        # load, so these two skip the table lookup, the command object, the Step and
        # the clock. The rules are _get's and _set's (arity, size limits, auth, MULTI,
        # refusals); anything else, an error included, takes the general path below,
        # which explains. A 16-deep pipelined SET went from ~95k to ~66k instructions
        # and a GET from ~62k to ~42k, in-process with the engine (callgrind; the
        # binary put/get cost ~62k/~41k): bench/redis.py's depth-16 dialect rows.
        session.cmd, session.last = name, monotonic()  # CLIENT LIST's cmd= and idle=
        n = len(argv)
        if session.multi is None and session.authenticated and len(argv[1 % n]) <= self._max_key:
            if name == "get" and n == 2:
                return Read(self._get_reply[session.proto], argv[1])
            if (
                name == "set"
                and n == 3
                and len(argv[2]) <= self._max_value
                and not (self.shutting_down or self._db.readonly_reason)
            ):
                key, value = argv[1], argv[2]
                return Write([("put", key, value, None)], len(key) + len(value), _ok)
        if session.killed:  # by CLIENT KILL: logged out, so never on the fast path above
            return _DROPPED  # the connection closes after the replies due before it
        try:
            spec = rc.check_command(argv)
        except rc.CommandError as exc:
            return self._reject(session, name, exc.message)
        session.cmd = spec.name  # a subcommand's: "client|list", as Redis shows it
        if not session.authenticated and spec.name not in _OPEN:
            return self._reject(session, spec.name, NOAUTH)
        if session.multi is not None and spec.name not in _NOT_QUEUED:
            session.multi.append(argv)
            return Done(QUEUED, None)
        if spec.name == "multi":
            return self._multi(session)
        if spec.name == "exec":
            return self._exec(session)
        if spec.name == "discard":
            return self._discard(session)
        if spec.name == "watch":
            return self._watch(session, argv[1:])
        try:
            step = self._step(session, argv, tx=False, spec=spec)
        except RedisError as exc:
            return Done(None, redis_error(exc.message))
        if step.reply is not None:
            return Done(step.reply, None)
        if step.read is not None:
            return Read(run_read, step.read)
        refusal = self._refusal()
        if refusal is not None:
            return Done(None, refusal)
        assert step.ops is not None and step.shape is not None
        return Write(step.ops, step.nbytes, step.shape)

    def _reject(self, session: RedisSession, name: str, message: str) -> Outcome:
        """A command refused before it runs (Redis's rejectCommand): inside MULTI it
        makes EXEC answer EXECABORT; a refused EXEC itself discards the transaction
        and the watches, as Redis's execCommandAbort (the connection leaves MULTI)."""
        if name == "exec":
            session.multi, session.dirty = None, False
            session.unwatch()
            if not message.startswith("EXECABORT"):
                message = "EXECABORT Transaction discarded because of: " + message
        elif session.multi is not None:
            session.dirty = True
        return Done(None, redis_error(message))

    # ---- shared by standalone commands and EXEC ----

    def _step(
        self, session: RedisSession, argv: list[bytes], tx: bool, spec: rc.CommandSpec | None = None
    ) -> Step:
        try:
            cmd = rc.parse_command(argv, int(time.time() * 1000), spec)
        except rc.CommandError as exc:
            raise RedisError(exc.message) from None
        handler = self._handlers.get(type(cmd))
        if handler is None:  # MULTI/WATCH/... queued inside a transaction
            raise RedisError(f"ERR {cmd.name.upper()} inside MULTI is not allowed")
        return handler(session, cmd, tx)

    def _refusal(self) -> ErrorInfo | None:
        if self.shutting_down:
            return ErrorInfo.from_code(ErrorCode.SHUTTING_DOWN, "the server is shutting down")
        reason = self._db.readonly_reason
        if reason:  # READ_ONLY as on the binary port (one metrics label); line unchanged
            return ErrorInfo.from_code(ErrorCode.READ_ONLY, f"the store is read-only: {reason}")
        return None

    def _key(self, key: bytes) -> bytes:
        if len(key) > self._max_key:
            raise RedisError(f"ERR key of {len(key)} bytes is over max_key_size {self._max_key}")
        return key

    def _value(self, value: bytes) -> bytes:
        if len(value) > self._max_value:
            raise RedisError(_TOO_BIG)
        return value

    # ---- reads ----

    def _get(self, s: RedisSession, c: rc.Get, tx: bool) -> Step:
        key, proto = self._key(c.key), s.proto
        if tx:
            return Step(ops=[bitcask.GetEx(key)], shape=lambda r: _value_reply(r[0], proto))
        get = self._db.get
        return Step(read=lambda: encode(get(key), proto))

    def _mget(self, s: RedisSession, c: rc.MGet, tx: bool) -> Step:
        keys, proto = [self._key(k) for k in c.keys], s.proto
        limit = self._config.max_reply_bytes
        if tx:
            return Step(
                ops=[bitcask.GetEx(k) for k in keys],
                shape=lambda r: _bounded_reply(
                    [v if type(v) is bytes else None for v in r], proto, limit
                ),
            )
        db = self._db
        get_many = db.get_many  # one instant: never half of a batch, as Redis

        def read() -> bytes:
            # Sized from the keydir first, so a reply past the bound reads no value:
            # MGET of one 1 MiB key named 300 times peaked near 865 MB of RSS.
            size = values_over(db, keys, limit)  # one key: max_value_size
            if size:
                return encode_error(_reply_too_big(size, limit))
            return _bounded_reply(get_many(keys), proto, limit)

        return Step(read=read)

    def _strlen(self, s: RedisSession, c: rc.StrLen, tx: bool) -> Step:
        key = self._key(c.key)
        if tx:
            return Step(ops=[bitcask.GetEx(key)], shape=lambda r: _len_reply(r[0]))
        # From the keydir, as Redis's is O(1): reading the value made each STRLEN of a
        # 32 MiB value cost ~50 ms of the event loop and a 32 MiB copy, and
        # `redis-cli --bigkeys` (a STRLEN per key) read the whole store.
        value_bytes = self._db.value_bytes
        return Step(read=lambda: encode(value_bytes((key,))))

    def _exists(self, s: RedisSession, c: rc.Exists, tx: bool) -> Step:
        keys = [self._key(k) for k in c.keys]
        if tx:
            return Step(
                ops=[bitcask.GetEx(k) for k in keys],
                shape=lambda r: encode(sum(type(v) is bytes for v in r)),
            )
        db = self._db
        return Step(read=lambda: encode(sum(k in db for k in keys)))

    def _type(self, s: RedisSession, c: rc.Type, tx: bool) -> Step:
        key = self._key(c.key)
        if tx:
            return Step(
                ops=[bitcask.GetEx(key)],
                shape=lambda r: b"+string\r\n" if type(r[0]) is bytes else b"+none\r\n",
            )
        return Step(read=lambda: b"+string\r\n" if key in self._db else b"+none\r\n")

    def _object(self, s: RedisSession, c: rc.ObjectInfo, tx: bool) -> Step:
        # OBJECT FREQ: nil for a missing key, else Redis's reply without an LFU policy
        # (`redis-cli --hotkeys` prints it and exits 1, as against Redis). OBJECT
        # ENCODING and REFCOUNT: what Redis would give the value freshly SET (int,
        # embstr, raw; shared or not), from its length alone unless it is short
        # enough to be an integer.
        key, proto, sub = self._key(c.key), s.proto, c.name
        freq = sub == "object|freq"
        if tx:
            return Step(
                ops=[bitcask.GetEx(key)],
                shape=lambda r: _object_reply(r[0] if type(r[0]) is bytes else None, sub, proto),
            )
        db = self._db

        def read() -> bytes:
            if key not in db:
                return encode(None, proto)
            size = db.value_bytes((key,))
            if freq or size > ENCODING_INT_MAX:
                return _object_reply(size, sub, proto)
            return _object_reply(db.get(key), sub, proto)

        return Step(read=read)

    def _memory_usage(self, s: RedisSession, c: rc.MemoryUsage, tx: bool) -> Step:
        # The key's and its value's bytes (values live in the data files, not in
        # memory: INFO memory has the keydir's bytes), from the keydir alone, so
        # `redis-cli --memkeys` ranks keys as it does against Redis and reads no value.
        key, proto = self._key(c.key), s.proto
        if tx:
            return Step(
                ops=[bitcask.GetEx(key)],
                shape=lambda r: encode(
                    len(key) + len(r[0]) if type(r[0]) is bytes else None, proto
                ),
            )
        db = self._db
        return Step(
            read=lambda: encode(len(key) + db.value_bytes((key,)) if key in db else None, proto)
        )

    def _dbsize(self, s: RedisSession, c: rc.DbSize, tx: bool) -> Step:
        if tx:  # counted at its place in the transaction, after the writes before it
            return Step(ops=[bitcask.CountKeys()], shape=lambda r: encode(r[0]))
        # O(1): the keys held, expired ones until the sampler reclaims them (Redis)
        return Step(read=lambda: encode(self._db.stored_keys()))

    def _ttl(self, s: RedisSession, c: rc.Ttl, tx: bool) -> Step:
        key = self._key(c.key)
        if tx:  # the expiry as the transaction's earlier writes left it
            return Step(
                ops=[bitcask.Peek(key)],
                shape=lambda r: encode(
                    -2 if r[0] is None else _ttl_reply(r[0][1] or None, c.ms, c.absolute)
                ),
            )
        return Step(read=lambda: encode(self._read_ttl(key, c.ms, c.absolute)))

    def _read_ttl(self, key: bytes, ms: bool, absolute: bool) -> int:
        try:
            at = self._db.expire_at_ms(key)
        except KeyError:
            return -2
        return _ttl_reply(at, ms, absolute)

    # ---- writes ----

    def _set(self, s: RedisSession, c: rc.Set, tx: bool) -> Step:
        key, value, proto = self._key(c.key), self._value(c.value), s.proto
        size = len(key) + len(value)
        if not (c.nx or c.xx or c.get or c.keep_ttl or c.expire_at_ms):
            return Step(ops=[("put", key, value, None)], shape=_ok, nbytes=size)
        op = bitcask.Set(
            key, value, expire_at_ms=c.expire_at_ms or 0, nx=c.nx, xx=c.xx, keep_ttl=c.keep_ttl
        )
        if c.get:
            return Step(ops=[op], shape=lambda r: _set_get_reply(r[0], proto), nbytes=size)
        if c.name == "set":
            return Step(ops=[op], shape=lambda r: _set_reply(r[0], proto), nbytes=size)
        return Step(ops=[op], shape=_ok, nbytes=size)  # SETEX, PSETEX

    def _setnx(self, s: RedisSession, c: rc.SetNx, tx: bool) -> Step:
        key, value = self._key(c.key), self._value(c.value)
        op = bitcask.Set(key, value, nx=True)
        return Step(ops=[op], shape=lambda r: _int_of_applied(r[0]), nbytes=len(key) + len(value))

    def _mset(self, s: RedisSession, c: rc.MSet, tx: bool) -> Step:
        pairs = [(self._key(k), self._value(v)) for k, v in c.pairs]
        size = sum(len(k) + len(v) for k, v in pairs)
        if c.name == "msetnx":  # all or nothing, decided by the writer at apply time
            op = bitcask.MSetNx(tuple(pairs))
            return Step(ops=[op], shape=lambda r: _int_of_applied(r[0]), nbytes=size)
        return Step(ops=[("put", k, v, None) for k, v in pairs], shape=_ok, nbytes=size)

    def _getdel(self, s: RedisSession, c: rc.GetDel, tx: bool) -> Step:
        key, proto = self._key(c.key), s.proto
        return Step(ops=[bitcask.GetDel(key)], shape=lambda r: _value_reply(r[0], proto))

    def _getex(self, s: RedisSession, c: rc.GetEx, tx: bool) -> Step:
        key, proto = self._key(c.key), s.proto
        if c.invalid_expire is not None:  # an error only for a key that exists (Redis)
            message = c.invalid_expire
            if tx:  # as the transaction's earlier writes left the key
                return Step(
                    ops=[bitcask.Peek(key)],
                    shape=lambda r: encode(None, proto) if r[0] is None else encode_error(message),
                )
            db = self._db

            def bad() -> bytes:
                return encode_error(message) if key in db else encode(None, proto)

            return Step(read=bad)
        op = bitcask.GetEx(key, at_ms=c.expire_at_ms or 0, persist=c.persist)
        return Step(ops=[op], shape=lambda r: _value_reply(r[0], proto))

    def _incrby(self, s: RedisSession, c: rc.IncrBy, tx: bool) -> Step:
        key = self._key(c.key)
        return Step(ops=[bitcask.Incr(key, c.delta)], shape=lambda r: _int_reply(r[0]))

    def _incrbyfloat(self, s: RedisSession, c: rc.IncrByFloat, tx: bool) -> Step:
        key = self._key(c.key)
        if not c.text:  # built without the client's text: the double's arithmetic
            if not math.isfinite(c.delta):
                raise RedisError("ERR increment would produce NaN or Infinity")
            return Step(
                ops=[bitcask.IncrFloat(key, c.delta)], shape=lambda r: _value_reply(r[0], 2)
            )
        # Redis's long double arithmetic on the increment as written (bitcask._ldouble)
        op = bitcask.IncrFloat(key, 0.0, text=c.text)
        return Step(ops=[op], shape=lambda r: _value_reply(r[0], 2))

    def _append(self, s: RedisSession, c: rc.Append, tx: bool) -> Step:
        key, value = self._key(c.key), self._value(c.value)
        # A hint from the keydir (the writer decides on the value it reads): the hint
        # read the whole value on the event loop, 64 MiB per APPEND to a 64 MiB value.
        if len(value) + self._db.value_bytes((key,)) > self._max_value:
            raise RedisError(_TOO_BIG)
        return Step(
            ops=[bitcask.Append(key, value)], shape=lambda r: _int_reply(r[0]), nbytes=len(value)
        )

    def _del(self, s: RedisSession, c: rc.Del, tx: bool) -> Step:
        keys = list(dict.fromkeys(self._key(k) for k in c.keys))  # DEL a a deletes one
        return Step(
            ops=[bitcask.GetDel(k) for k in keys],
            shape=lambda r: encode(sum(type(v) is bytes for v in r)),
        )

    def _expire(self, s: RedisSession, c: rc.Expire, tx: bool) -> Step:
        key = self._key(c.key)
        cond = "nx" if c.nx else "gt" if c.gt else "lt" if c.lt else ""
        if c.xx:  # XX combines with GT or LT (the parser refused NX with any of them)
            cond = "xx+" + cond if cond else "xx"
        at = max(c.at_ms, 1)  # in the past either way: the key is deleted
        return Step(ops=[bitcask.Expire(key, at, cond)], shape=lambda r: _int_of_applied(r[0]))

    def _persist(self, s: RedisSession, c: rc.Persist, tx: bool) -> Step:
        key = self._key(c.key)
        return Step(ops=[bitcask.Persist(key)], shape=lambda r: _int_of_applied(r[0]))

    def _rename(self, s: RedisSession, c: rc.Rename, tx: bool) -> Step:
        key, dst = self._key(c.key), self._key(c.newkey)
        op = bitcask.Rename(key, dst, nx=c.nx)
        if c.nx:
            return Step(ops=[op], shape=lambda r: _int_of_applied(r[0]))
        return Step(ops=[op], shape=_ok)

    def _copy(self, s: RedisSession, c: rc.Copy, tx: bool) -> Step:
        if c.db != 0:  # after the parser's checks, as copyCommand's selectDb
            raise RedisError("ERR DB index is out of range")
        op = Copy(self._key(c.key), self._key(c.newkey), c.replace)
        return Step(ops=[op], shape=lambda r: _int_of_applied(r[0]))

    def _flush(self, s: RedisSession, c: Any, tx: bool) -> Step:
        return Step(ops=[bitcask.Clear()], shape=_ok)

    def _unwatch(self, s: RedisSession, c: rc.Unwatch, tx: bool) -> Step:
        s.unwatch()
        return Step(OK)

    # ---- key space walks ----

    def _scan(self, s: RedisSession, c: rc.Scan, tx: bool) -> Step:
        proto = s.proto
        if c.type is not None and c.type.lower() != b"string":
            return Step(encode([b"0", []], proto))
        limit = self._config.max_reply_bytes
        return Step(read=lambda: _scan_reply(self._scan_page(c), proto, limit))

    def _scan_page(self, c: rc.Scan) -> list[Any]:
        after = self._cursors.after(c.cursor) if c.cursor else None
        keys = self._db.scan(b"", after=after, limit=c.count)
        cursor = self._cursors.new(keys[-1]) if len(keys) == c.count else 0
        if c.match is not None:
            match = compile_glob(c.match)
            keys = [k for k in keys if match(k)]
        return [str(cursor).encode(), keys]

    def _keys(self, s: RedisSession, c: rc.Keys, tx: bool) -> Step:
        proto, limit = s.proto, self._config.max_reply_bytes
        match = compile_glob(c.pattern)

        def read() -> bytes:
            keys = [k for k in self._db if match(k)]
            return _bounded_keys(keys, keys, proto, limit)

        return Step(read=read)

    def _randomkey(self, s: RedisSession, c: rc.RandomKey, tx: bool) -> Step:
        proto = s.proto

        def pick() -> bytes:
            db = self._db
            keys = db.scan(b"", after=os.urandom(8), limit=1) or db.scan(b"", limit=1)
            return encode(keys[0] if keys else None, proto)

        return Step(read=pick)

    # ---- transactions ----

    def _multi(self, s: RedisSession) -> Outcome:
        if s.multi is not None:
            return Done(None, redis_error("ERR MULTI calls can not be nested"))
        s.multi, s.dirty = [], False
        return Done(OK, None)

    def _discard(self, s: RedisSession) -> Outcome:
        if s.multi is None:
            return Done(None, redis_error("ERR DISCARD without MULTI"))
        s.multi, s.dirty = None, False
        s.unwatch()
        return Done(OK, None)

    def _watch(self, s: RedisSession, keys: list[bytes]) -> Outcome:
        if s.multi is not None:
            return Done(None, redis_error("ERR WATCH inside MULTI is not allowed"))
        try:
            ks = [self._key(k) for k in keys]
        except RedisError as exc:
            return Done(None, redis_error(exc.message))

        # The connection holds the watch at once, so an UNWATCH, DISCARD or EXEC
        # pipelined behind this WATCH finds it (it found nothing, so EXEC ran unwatched
        # and the watch was left for the next transaction); the engine watch is taken
        # by a Read, after this connection's earlier writes applied, so they never
        # count as writes seen by it. A ref released before then takes nothing.
        ref = WatchRef()
        s.watches.append(ref)

        def watch(_: None) -> bytes:
            if not ref.released:
                ref.take(self._db.watch(*ks))
            return OK

        return Read(watch, None)

    def _exec(self, s: RedisSession) -> Outcome:
        if s.multi is None:
            return Done(None, redis_error("ERR EXEC without MULTI"))
        queued, dirty = s.multi, s.dirty
        s.multi, s.dirty = None, False
        watches, s.watches = s.watches, []
        if dirty:
            for w in watches:
                w.release()
            return Done(
                None, redis_error("EXECABORT Transaction discarded because of previous errors.")
            )
        steps: list[Step] = []
        for argv in queued:
            try:
                steps.append(self._step(s, argv, tx=True))
            except RedisError as exc:
                steps.append(Step(encode_error(exc.message)))
        proto = s.proto  # a queued HELLO changes the version of the replies after it
        # The reply bound (values_over's rule), before anything is read: a command over
        # it alone answers its error in its place (MGET's rule); the rest over it
        # together refuse the EXEC whole, nothing written (MULTI, GET of a 64 MiB key
        # 10,000 times, EXEC read 640 GB into the writer's results).
        limit = self._config.max_reply_bytes
        bounds = self._exec_bounds(steps)
        for i, step in enumerate(steps):
            if bounds[i] > limit and step.ops is not None and len(step.ops) > 1:
                steps[i], bounds[i] = Step(encode_error(_reply_too_big(bounds[i], limit))), 0
        over = sizes_over(bounds, limit)  # one value alone: max_value_size, as GET
        if over:
            for w in watches:
                w.release()
            return Done(None, redis_error(_reply_too_big(over, limit)))
        # KEYS, SCAN, RANDOMKEY are sized only by running them (after the batch, when a
        # write comes first): each counts its reply against what the values and the
        # reads before it left, and one that does not fit answers the error in its
        # place (five KEYS of 2 MB each under a 3 MB bound: a 10 MB reply).
        spent = [sum(bounds)]
        for step in steps:
            if step.read is not None:
                step.read = _within(step.read, spent, limit)
        ops: list[Any] = []
        size = 0
        for step in steps:
            if step.ops is not None:
                ops.extend(step.ops)
                size += step.nbytes
        if not ops and not watches:
            return Read(run_read, lambda: _exec_reply(steps, [], proto))
        refusal = self._refusal() if ops else None
        if refusal is not None:
            for w in watches:
                w.release()
            return Done(None, refusal)

        def watch() -> bitcask.Watch | None:
            # taken by the Writer when it writes the group: the WATCH Reads ran by then
            return _combined([w.get() for w in watches])

        def start(settle: Settle) -> None:
            # Started after this connection's earlier writes applied (the Pipeline's
            # rule for Async work): the reads queued before the first write of the
            # transaction are answered now, the later ones right after the batch.
            for step in steps:
                if step.ops is not None:
                    break
                if step.read is not None:
                    step.reply, step.read = step.read(), None

            def done(results: list[Any] | None, exc: BaseException | None) -> None:
                for w in watches:
                    w.release()
                if exc is not None:
                    settle(None, error_info(exc))
                elif results is None or results is WATCH_ABORTED:  # a watched key was written:
                    settle(encode(NullArray(), proto), None)
                else:
                    settle(_exec_reply(steps, results, proto), None)

            if not self._writer.submit(ops, done, nbytes=size, watch=watch if watches else None):
                for w in watches:
                    w.release()
                _later(settle, None, _busy(self._writer))

        return Async(start)

    def _exec_bounds(self, steps: list[Step]) -> list[int]:
        """Per step, the most bytes of values its ops can hold (_dispatch.batch_values,
        the binary commit's sizing: the keydir plus the transaction's earlier writes)."""
        sizes = iter(
            batch_values(self._db, [op for st in steps for op in st.ops or ()], self._max_value)
        )
        return [sum(itertools.islice(sizes, len(step.ops or ()))) for step in steps]


def _within(read: Callable[[], bytes], spent: list[int], limit: int) -> Callable[[], bytes]:
    """An EXEC's read, bounded with the rest of its reply (spent[0]: bytes so far)."""

    def bounded() -> bytes:
        reply = read()
        over = sizes_over((spent[0], len(reply)), limit)
        if over:
            return encode_error(_reply_too_big(over, limit, "keys"))
        spent[0] += len(reply)
        return reply

    return bounded


def _later(settle: Settle, result: Any, error: Any) -> None:
    """Settle an Async outcome on a later turn: never from inside its own start()."""
    asyncio.get_running_loop().call_soon(settle, result, error)


def _busy(writer: Writer) -> ErrorInfo:
    if writer.closed:
        return ErrorInfo.from_code(ErrorCode.SHUTTING_DOWN, "shutting down")
    return ErrorInfo.from_code(ErrorCode.BUSY, "writer queue full; retry later")


# ---- reply shapes ----


def _ok(results: list[Any]) -> bytes:
    if results:
        _op_error(results[0])
    return OK


def _reply_too_big(size: int, limit: int, what: str = "values") -> str:
    return "ERR " + reply_too_large(size, limit, what)


def _bounded_keys(reply: list[Any], keys: list[bytes], proto: int, limit: int) -> bytes:
    # KEYS' keys, or SCAN's [cursor, keys] (COUNT has no cap in Redis): the keydir
    # holds them already, the reply would copy them (KEYS * of 1 KiB keys: 1 GB a
    # million); refused past the bound, as MGET's values.
    size = sum(map(len, keys))
    if size > limit:
        return encode_error(_reply_too_big(size, limit, "keys"))
    return encode(reply, proto)


def _bounded_reply(values: list[bytes | None], proto: int, limit: int) -> bytes:
    # The values read: refused past the bound all the same (a write between sizing
    # and reading may have grown them), before the reply doubles them.
    size = sum(len(v) for v in values if v is not None)
    if size > limit and len(values) > 1:
        return encode_error(_reply_too_big(size, limit))
    return encode(values, proto)


def _scan_reply(page: list[Any], proto: int, limit: int) -> bytes:
    return _bounded_keys(page, page[1], proto, limit)


def _value_reply(result: Any, proto: int) -> bytes:
    _op_error(result)
    return encode(result, proto)


ENCODING_INT_MAX = 20  # Redis reads a value this long or shorter as a long if it can
ENCODING_EMBSTR_MAX = 44  # OBJ_ENCODING_EMBSTR_SIZE_LIMIT
SHARED_INTEGERS = 10_000  # OBJ_SHARED_INTEGERS: Redis's values 0 ..= 9,999 are shared
SHARED_REFCOUNT = 2**31 - 1  # OBJ_SHARED_REFCOUNT (INT_MAX), their OBJECT REFCOUNT
_LFU_OFF = (
    "ERR An LFU maxmemory policy is not selected, access frequency not tracked. Please "
    "note that when switching between policies at runtime LRU and LFU data will take "
    "some time to adjust."
)


def _object_reply(value: bytes | int | None, sub: str, proto: int) -> bytes:
    """OBJECT ENCODING / FREQ / REFCOUNT as Redis 7.0 answers for a value freshly SET,
    of the value, or of its length alone when too long to be an integer (None: no
    such key). REFCOUNT: Redis shares the integers 0 ..= 9,999 (OBJ_SHARED_INTEGERS),
    whose count is INT_MAX; any other value is held once."""
    if value is None:
        return encode(None, proto)
    if sub == "object|freq":
        return encode_error(_LFU_OFF)
    number = None
    if isinstance(value, int):
        size = value
    else:
        size = len(value)
        number = _string2ll(value) if size <= ENCODING_INT_MAX else None
    if sub == "object|refcount":
        return encode(
            SHARED_REFCOUNT if number is not None and 0 <= number < SHARED_INTEGERS else 1
        )
    if number is not None:
        return b"$3\r\nint\r\n"
    return b"$6\r\nembstr\r\n" if size <= ENCODING_EMBSTR_MAX else b"$3\r\nraw\r\n"


def _len_reply(result: Any) -> bytes:
    _op_error(result)
    return encode(len(result or b""))


def _int_reply(result: Any) -> bytes:
    _op_error(result)
    return encode(int(result))


def _int_of_applied(result: Any) -> bytes:
    if isinstance(result, tuple):  # Set's (applied, old)
        result = result[0]
    _op_error(result)
    return b":1\r\n" if result else b":0\r\n"


def _set_reply(result: Any, proto: int) -> bytes:
    _op_error(result)
    return OK if result[0] else encode(None, proto)


def _set_get_reply(result: Any, proto: int) -> bytes:
    _op_error(result)
    return encode(result[1], proto)


def _exec_reply(steps: list[Step], results: list[Any], proto: int) -> bytes:
    out = [b"*%d\r\n" % len(steps)]
    i = 0
    for step in steps:
        if step.ops is not None:
            n = len(step.ops)
            assert step.shape is not None
            try:
                out.append(step.shape(results[i : i + n]))
            except ErrorReply as exc:  # one command's error, an element of the array
                out.append(error_line(exc.info))
            i += n
        elif step.read is not None:
            out.append(step.read())
        else:
            assert step.reply is not None
            out.append(step.reply)
    return b"".join(out)


def _combined(watches: list[bitcask.Watch]) -> bitcask.Watch | None:
    """One watch over the keys of several WATCH calls (the engine decides one watch per
    batch; a connection may WATCH several times). Never released itself: its parts are."""
    if not watches:
        return None
    return watches[0] if len(watches) == 1 else bitcask.Watch.combine(watches)


def _ttl_reply(at: int | None, ms: bool, absolute: bool) -> int:
    """Redis's ttlGenericCommand for a present key, from its record's exact expiry
    (ms since the epoch; None: no expiry). A missing key answers -2 (the callers')."""
    if at is None:
        return -1
    value = at if absolute else max(at - int(time.time() * 1000), 0)
    return value if ms else (value + 500) // 1000


def _get_reply(get: Callable[[bytes], bytes | None], proto: int) -> Callable[[bytes], bytes]:
    """GET's whole read for one RESP version: the bulk string, or that version's null
    (encode()'s bytes, without its dispatch on the reply's type: the fast path's)."""
    null = encode(None, proto)

    def reply(key: bytes) -> bytes:
        value = get(key)
        return null if value is None else b"$%d\r\n%b\r\n" % (len(value), value)

    return reply
