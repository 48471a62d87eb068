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
- Each command runs as a `Step`: a reply known now (bytes), ops for the writer and
  a `shape` turning their results into the reply, or a read run in its turn, so a
  command runs alike on its own and inside EXEC (server/_redis_transactions.py).
- Writes are engine ops decided by the one writer at apply time, so every
  conditional write (SET NX, INCR, RENAME, ...) is atomic against every other
  write; a command is one engine batch.
- Files: this one has the dispatcher (sessions, `call` and its GET/SET fast path,
  the handler table, the key and value limits); the handlers are mixins, one file
  per family: server/_redis_strings.py (GET, SET, INCR, APPEND, ...),
  server/_redis_keys.py (EXISTS, DEL, EXPIRE, TTL, SCAN, ...),
  server/_redis_transactions.py (MULTI, EXEC, WATCH, ...), server/_redis_admin.py
  (AUTH, HELLO, CLIENT, INFO, CONFIG, ...); server/_redis_replies.py the reply
  shapes they share, server/_redis_session.py the session and the Step.
"""

from __future__ import annotations

import itertools
import os
import time
from collections.abc import Callable
from time import monotonic
from typing import Any

from protocol import ErrorCode, ErrorInfo
from protocol import redis_commands as rc
from protocol._resp_writer import encode

from ._outcome import Done, Outcome, Read, Write
from ._redis_admin import AdminCommands, bulk_strings
from ._redis_keys import KeyCommands
from ._redis_keyspace import ScanCursors
from ._redis_replies import TOO_BIG
from ._redis_replies import ok as _ok
from ._redis_session import (
    NO_LINK,
    NOAUTH,
    ClientLink,
    RedisError,
    RedisSession,
    Step,
    redis_error,
    run_read,
)
from ._redis_strings import StringCommands
from ._redis_transactions import TransactionCommands
from ._writer import Writer
from .config import ServerConfig

__all__ = ["RedisDispatcher", "RedisSession"]

_OPEN = frozenset({"auth", "hello", "reset"})  # allowed before authentication (no_auth)
_NOT_QUEUED = frozenset({"exec", "discard", "multi", "watch", "reset"})
_DROPPED = Done(b"", None)  # a command of a killed session: not run, no reply


class RedisDispatcher(StringCommands, KeyCommands, TransactionCommands, AdminCommands):
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
            return self._queue(session, argv)
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
            raise RedisError(TOO_BIG)
        return value


def _get_reply(get: Callable[[bytes], bytes | None], proto: int) -> Callable[[bytes], bytes]:
    """GET's whole read for one RESP version: the bulk string, or that version's null
    (encode()'s bytes, without its dispatch on the reply's type: the fast path's)."""
    null = encode(None, proto)

    def reply(key: bytes) -> bytes:
        value = get(key)
        return null if value is None else b"$%d\r\n%b\r\n" % (len(value), value)

    return reply
