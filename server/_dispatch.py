"""Method -> handler, shared by the binary, inline and HTTP front ends.

Strategy: `Dispatcher.call(session, method, params)` never performs a write and never
blocks. It checks auth, validates the params (protocol.validate_params plus our size
limits, so one bad request fails alone instead of failing its whole group commit) and
returns an *outcome* object (server/_outcome.py: Done, Read, Write, Async) saying what
to do, leaving *when* to the caller (the per-connection Pipeline enforces
read-your-writes).

The two commonest requests, get and put with bin arguments, take a fast path in
call() that performs exactly the checks validate_params would, inline.

Here: the open methods, the plain reads and writes, merge, snapshots (delegated to
server/_snapshots.py) and the checks. The read-modify-write and transaction handlers
are the mixin in server/_transactions.py; per-connection state is server/_session.py;
the reply bounds both dialects share (values_over, batch_values) are
server/_reply_bounds.py.
"""

from __future__ import annotations

import asyncio
import dataclasses
import functools
import hmac
from collections.abc import Callable, Mapping
from typing import Any

import bitcask
from protocol import (
    METHODS,
    PROTOCOL_VERSION,
    ErrorCode,
    LocalProtocolError,
    reply_limit,
    validate_params,
)

from ._metrics import Metrics
from ._outcome import (
    Async,
    Done,
    Done_,
    Invalid,
    Outcome,
    Read,
    Write,
    always_true,
    error_info,
    make_error,
)
from ._reply_bounds import batch_values, reply_too_large, sizes_over, values_over
from ._session import Session, release_all
from ._snapshots import SnapshotMethods, error_for
from ._transactions import SINGLE_OPS, TransactionHandlers
from ._writer import Writer
from .config import ServerConfig

__all__ = ["OPEN_METHODS", "SERVER_VERSION", "Dispatcher"]

OPEN_METHODS = frozenset({"hello", "auth", "ping"})  # allowed before authentication
# A scan reply's bytes besides its page of keys: the cursor (a key, at most the engine's
# 1 MiB ceiling, whatever --max-key-size says now) and the envelope.
SCAN_ROOM = 1024 * 1024 + 64
SERVER_VERSION = bitcask.__version__
_TOO_LARGE = ErrorCode.FRAME_TOO_LARGE  # a reply over the bound: as one over max_frame


class Dispatcher(TransactionHandlers):
    """Turns (method, params) into outcomes; one per Server.

    Args:
        db: the open store.
        writer: the group-commit writer every mutation goes through.
        config: limits and the auth token.
        max_key_size / max_value_size: the store's limits, checked before queueing.
        server_stats: returns the server counters merged into `stats`.

    Example:
        >>> d = Dispatcher(db, writer, cfg, max_key_size=64, max_value_size=1024,
        ...                server_stats=dict)                        # doctest: +SKIP
        >>> type(d.call(d.new_session(), "get", [b"k"])) is Read
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
        server_stats: Callable[[], dict[str, Any]],
        metrics: Metrics | None = None,
    ) -> None:
        self._db = db
        self._db_get = db.get
        # For the binary port's inline get (the same checks as call's get fast path).
        self.db_get: Callable[[bytes], bytes | None] = db.get
        self.max_key = max_key_size
        self._writer = writer
        self._token = config.auth_token
        self._max_key = max_key_size
        self._max_value = max_value_size
        self._max_batch = config.max_batch
        # a reply's values (mget) or keys (scan), bytes: the frame must hold them too
        self._max_reply = min(config.max_reply_bytes, reply_limit(config.max_frame))
        self._max_frame = config.max_frame
        self._server_stats = server_stats
        self.limits = {
            "max_key_size": max_key_size,
            "max_value_size": max_value_size,
            "max_frame": config.max_frame,
            "max_batch": config.max_batch,
        }
        self.shutting_down = False
        self._handlers: dict[str, Callable[[Session, tuple[Any, ...]], Outcome]] = {
            "hello": self._hello,
            "auth": self._auth,
            "ping": self._ping,
            "get": self._get,
            "exists": self._exists,
            "ttl": self._ttl,
            "mget": self._mget,
            "scan": self._scan,
            "stats": self._stats,
            "put": self._put,
            "delete": self._delete,
            "mput": self._mput,
            "batch": self._batch,
            "sync": self._sync,
            "merge": self._merge,
            # one-op read-modify-writes: the op comes from _op, the reply from _SHAPES
            **{kind: functools.partial(self._single, kind) for kind in SINGLE_OPS},
            "clear": self._clear,
            "watch": self._watch,
            "unwatch": self._unwatch,
            "commit": self._commit,
        }
        self.snapshots = SnapshotMethods(
            db, writer, metrics or Metrics(), error_info, config.max_snapshots
        )
        self._handlers.update(
            snapshot_begin=self._snapshot_begin,
            snapshot_read=self._snapshot_read,
            snapshot_end=self._snapshot_end,
        )
        missing = set(METHODS) - set(self._handlers)
        if missing:
            raise RuntimeError(f"protocol methods without a server handler: {sorted(missing)}")

    @property
    def auth_required(self) -> bool:
        return self._token is not None

    def new_session(self, link: Any = None) -> Session:
        """A new connection's session; `link` (its ClientLink) is not used here: the
        binary protocol has no CLIENT LIST or KILL."""
        return Session(authenticated=self._token is None)

    def end_session(self, session: Session) -> None:
        """The connection closed: release its snapshots and its watches."""
        session.closed = True
        self.snapshots.session_closed(session)
        watches, session.watches = session.watches, {}
        spent, session.spent = session.spent, {}
        release_all([*watches.values(), *spent.values()])

    def check_token(self, token: Any) -> bool:
        """Constant-time comparison of a presented token with the configured one."""
        if self._token is None:
            return True
        if isinstance(token, str):
            token = token.encode()
        if not isinstance(token, bytes | bytearray):
            return False
        return hmac.compare_digest(bytes(token), self._token)

    @property
    def writer(self) -> Writer:
        return self._writer

    def call(self, session: Session, method: str, params: Any) -> Outcome:
        """Decide what to do with one request (see the module docstring)."""
        if session.authenticated and type(params) is list:
            # Fast paths: the same checks as validate_params + _get/_put, inline.
            n = len(params)
            if method == "get" and n == 1:
                key = params[0]
                if type(key) is bytes and len(key) <= self._max_key:
                    return Read(self._db_get, key)
            elif method == "put" and n == 2 and not self.shutting_down:
                key, value = params
                if (
                    type(key) is bytes
                    and type(value) is bytes
                    and len(key) <= self._max_key
                    and len(value) <= self._max_value
                    and not self._db.readonly_reason
                ):
                    return Write([("put", key, value, None)], len(key) + len(value), always_true)
        # Precedence (docs/protocol.md section 7): AUTH_REQUIRED before any other check,
        # then UNKNOWN_METHOD, then the params.
        if not session.authenticated and method not in OPEN_METHODS:
            return Done(
                None, make_error(ErrorCode.AUTH_REQUIRED, "authenticate first (auth or hello)")
            )
        handler = self._handlers.get(method)
        if handler is None:
            return Done(None, make_error(ErrorCode.UNKNOWN_METHOD, f"unknown method {method!r}"))
        try:
            args = validate_params(method, params)
            return handler(session, tuple(args))
        except Invalid as exc:
            return Done(None, exc.info)
        except Exception as exc:
            return Done(None, error_info(exc))

    # ---- open methods ----

    def _hello(self, session: Session, args: tuple[Any, ...]) -> Outcome:
        version, token, client = args
        if version is not None and version != PROTOCOL_VERSION:
            msg = f"protocol {version!r} not supported; this server speaks {PROTOCOL_VERSION}"
            return Done(None, make_error(ErrorCode.UNSUPPORTED_VERSION, msg))
        if token is not None:
            if not self.check_token(token):
                return Done(None, make_error(ErrorCode.AUTH_FAILED, "invalid token"))
            session.authenticated = True
        if client is not None:
            session.client = client
        return Done(
            {
                "server": "bitcask",
                "version": SERVER_VERSION,
                "protocol": PROTOCOL_VERSION,
                "auth_required": self._token is not None,
                "authenticated": session.authenticated,
                "limits": dict(self.limits),
            },
            None,
        )

    def _auth(self, session: Session, args: tuple[Any, ...]) -> Outcome:
        if not self.check_token(args[0]):
            return Done(None, make_error(ErrorCode.AUTH_FAILED, "invalid token"))
        session.authenticated = True
        return Done(True, None)

    def _ping(self, session: Session, args: tuple[Any, ...]) -> Outcome:
        return Done(args[0] if args else "PONG", None)

    # ---- reads (run on the loop, straight from the engine) ----

    def _get(self, session: Session, args: tuple[Any, ...]) -> Outcome:
        return Read(self._db.get, self._key(args[0]))

    def _exists(self, session: Session, args: tuple[Any, ...]) -> Outcome:
        return Read(self._db.__contains__, self._key(args[0]))

    def _ttl(self, session: Session, args: tuple[Any, ...]) -> Outcome:
        return Read(self._read_ttl, self._key(args[0]))

    def _read_ttl(self, key: bytes) -> float:
        try:
            left = self._db.ttl(key)
        except KeyError:
            return -2
        return -1 if left is None else float(left)

    def _mget(self, session: Session, args: tuple[Any, ...]) -> Outcome:
        keys = [self._key(k) for k in args[0]]
        if len(keys) > self._max_batch:
            raise Invalid(
                ErrorCode.BATCH_TOO_LARGE, f"mget of {len(keys)} keys > {self._max_batch}"
            )
        return Read(self._read_many, keys)

    def _read_many(self, keys: list[bytes]) -> list[bytes | None]:
        # Sized first (values_over), then one instant of the store: never half of a
        # batch (get_many). A write in between may grow it: the frame limit then
        # refuses the reply (FRAME_TOO_LARGE, as this refusal), at most one frame read.
        size = values_over(self._db, keys, self._max_reply)
        if size:
            raise LocalProtocolError(reply_too_large(size, self._max_reply), _TOO_LARGE)
        result: list[bytes | None] = self._db.get_many(keys)
        return result

    def _scan(self, session: Session, args: tuple[Any, ...]) -> Outcome:
        prefix, cursor, count = args
        after = None if cursor is None else self._key(cursor)
        return Read(self._read_scan, (self._key(prefix), after, count))

    def _read_scan(self, query: tuple[bytes, bytes | None, int]) -> list[Any]:
        # One key more than asked tells whether another page exists, so the last page
        # already answers the finished cursor (nil), never one more empty page.
        prefix, cursor, count = query
        keys = self._db.scan(prefix, after=cursor, limit=count + 1)
        # Long keys: a page ends before its reply outgrows the bound (count is an upper
        # bound, as SCAN's COUNT is a hint), never FRAME_TOO_LARGE: 1,100 keys of 64 KiB
        # made a 72 MB reply the server refused, so no count over ~1,000 could scan them.
        # The frame also holds the cursor (SCAN_ROOM); a page holds one key at least.
        budget = min(self._max_reply, reply_limit(self._max_frame) - SCAN_ROOM)
        if sum(map(len, keys)) + 5 * len(keys) > budget:  # a bin header: at most 5 bytes
            size = 0
            for i, key in enumerate(keys):
                size += len(key) + 5
                if size > budget and i:
                    return [keys[i - 1], keys[:i]]
        if len(keys) > count:
            return [keys[count - 1], keys[:count]]
        return [None, keys]

    def _stats(self, session: Session, args: tuple[Any, ...]) -> Outcome:
        return Read(self._read_stats, None)

    def _read_stats(self, _: None) -> dict[str, Any]:
        stats = dict(self._db.stats())
        stats["server"] = self._server_stats()
        return stats

    # ---- writes (through the writer queue) ----

    def _put(self, session: Session, args: tuple[Any, ...]) -> Outcome:
        key, value, ttl = self._key(args[0]), self._value(args[1]), args[2]
        return self._write([("put", key, value, ttl)], len(key) + len(value), always_true)

    def _delete(self, session: Session, args: tuple[Any, ...]) -> Outcome:
        key = self._key(args[0])
        return self._write([("delete", key)], len(key), _first)

    def _mput(self, session: Session, args: tuple[Any, ...]) -> Outcome:
        pairs = args[0]
        self._check_batch(len(pairs))
        ops: list[tuple[Any, ...]] = []
        size = 0
        for key, value in pairs:
            ops.append(("put", self._key(key), self._value(value), None))
            size += len(key) + len(value)
        return self._write(ops, size, always_true)

    def _batch(self, session: Session, args: tuple[Any, ...]) -> Outcome:
        ops = args[0]  # already ("put", k, v, ttl) | ("delete", k): the engine's op shape
        self._check_batch(len(ops))
        size = 0
        for op in ops:
            size += len(self._key(op[1]))
            if op[0] == "put":
                size += len(self._value(op[2]))
        return self._write(ops, size, _batch_results)

    def _sync(self, session: Session, args: tuple[Any, ...]) -> Outcome:
        return self._write([], 0, always_true, sync=True)

    def _merge(self, session: Session, args: tuple[Any, ...]) -> Outcome:
        def start(settle: Done_) -> None:
            fut = asyncio.get_running_loop().run_in_executor(None, self._db.merge)
            fut.add_done_callback(lambda f: _settle(f, settle, _report))

        return Async(start)

    def _snapshot_begin(self, session: Session, args: tuple[Any, ...]) -> Outcome:
        if self.shutting_down:
            return _SNAPSHOT_STOPPED
        return Async(self._unless_stopping(self.snapshots.begin(session, args)))

    def _snapshot_read(self, session: Session, args: tuple[Any, ...]) -> Outcome:
        # A backup in flight at a graceful stop ends now, with SHUTTING_DOWN, instead
        # of pulling chunks for half the budget and then losing its connection (its
        # client deletes its staging directory: nothing under the backup's name).
        if self.shutting_down:
            return _SNAPSHOT_STOPPED
        try:
            return Async(self._unless_stopping(self.snapshots.read(session, args)))
        except Exception as exc:
            return Done(None, error_for(exc, error_info))

    def _unless_stopping(self, start: Callable[[Done_], None]) -> Callable[[Done_], None]:
        # Checked again when its turn comes: pipelined reads were called (decided) on
        # arrival, before the stop; they start one after another, after it.
        def checked(settle: Done_) -> None:
            if self.shutting_down:
                stopped = _SNAPSHOT_STOPPED
                asyncio.get_running_loop().call_soon(settle, stopped.result, stopped.error)
            else:
                start(settle)

        return checked

    def _snapshot_end(self, session: Session, args: tuple[Any, ...]) -> Outcome:
        try:
            return Done(self.snapshots.end(session, args), None)
        except Exception as exc:
            return Done(None, error_for(exc, error_info))

    def _write(
        self,
        ops: list[Any],
        nbytes: int,
        shape: Callable[[list[Any]], Any],
        sync: bool = False,
        watch: Any = None,
        failed: Callable[[], None] | None = None,
    ) -> Outcome:
        if self.shutting_down:
            raise Invalid(ErrorCode.SHUTTING_DOWN, "the server is shutting down")
        reason = self._db.readonly_reason
        if reason:
            raise Invalid(ErrorCode.READ_ONLY, f"the store is read-only: {reason}")
        return Write(ops, nbytes, shape, sync, watch, failed)

    # ---- checks ----

    def _key(self, key: bytes) -> bytes:
        if len(key) > self._max_key:
            raise Invalid(ErrorCode.KEY_TOO_LARGE, f"key of {len(key)} bytes > {self._max_key}")
        return key

    def _value(self, value: bytes) -> bytes:
        if len(value) > self._max_value:
            raise Invalid(
                ErrorCode.VALUE_TOO_LARGE, f"value of {len(value)} bytes > {self._max_value}"
            )
        return value

    def _check_batch(self, n: int) -> None:
        if n > self._max_batch:
            raise Invalid(
                ErrorCode.BATCH_TOO_LARGE, f"{n} operations > max_batch {self._max_batch}"
            )

    def _check_values(self, ops: list[Any]) -> None:
        # A commit's old values (set, get_delete) were known only as it applied, so one
        # over the reply frame answered FRAME_TOO_LARGE for writes that stood: sized
        # now, before anything applies, by the reply bound's rule (as an EXEC is).
        size = sizes_over(batch_values(self._db, ops, self._max_value), self._max_reply)
        if size:
            raise Invalid(_TOO_LARGE, reply_too_large(size, self._max_reply))


_SNAPSHOT_STOPPED = Done(
    None, make_error(ErrorCode.SHUTTING_DOWN, "the server is shutting down: backup abandoned")
)


def _first(results: list[Any]) -> Any:
    return bool(results[0])


def _batch_results(results: list[Any]) -> list[bool]:
    return [True if r is None else bool(r) for r in results]


def _report(report: Any) -> Any:
    to_dict = getattr(report, "to_dict", None)
    if callable(to_dict):  # bitcask.MergeReport: every field plus reclaimed_bytes
        return to_dict()
    if dataclasses.is_dataclass(report) and not isinstance(report, type):
        return dataclasses.asdict(report)
    if isinstance(report, Mapping):
        return dict(report)
    return getattr(report, "__dict__", report)


def _settle(fut: asyncio.Future[Any], done: Done_, shape: Callable[[Any], Any]) -> None:
    if fut.cancelled():
        done(None, make_error(ErrorCode.SHUTTING_DOWN, "cancelled"))
    elif fut.exception() is not None:
        exc = fut.exception()
        assert exc is not None
        done(None, error_info(exc))
    else:
        done(shape(fut.result()), None)
