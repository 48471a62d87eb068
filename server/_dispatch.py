"""Method -> handler, shared by the binary, inline and HTTP front ends.

Strategy: `Dispatcher.call(session, method, params)` never performs a write and never
blocks. It checks auth, validates the params (protocol.validate_params plus our size
limits, so one bad request fails alone instead of failing its whole group commit) and
returns an *outcome* object saying what to do, leaving *when* to the caller (the
per-connection Pipeline enforces read-your-writes):

    Done(result, error)                answer now (hello, auth, ping, every validation error)
    Read(fn, arg)                      a read: run fn(arg) on the loop when allowed; may raise
    Write(ops, nbytes, shape, sync)    submit ops to the writer; shape(results) is the reply
    Async(start)                       start(settle) begins work off the loop (merge);
                                       settle(result, error) runs later on the loop

The two commonest requests, get and put with bin arguments, take a fast path in
call() that performs exactly the checks validate_params would, inline.

Errors are always protocol.ErrorInfo with a stable ErrorCode; `error_info()` maps engine
exceptions to codes by class, never by message text.
"""

from __future__ import annotations

import asyncio
import dataclasses
import functools
import hmac
import logging
import struct
import time
from collections.abc import Callable, Mapping
from typing import Any

import bitcask
from protocol import METHODS, PROTOCOL_VERSION, ErrorCode, ErrorInfo, ProtocolError, validate_params

from ._metrics import Metrics
from ._snapshots import SnapshotMethods, error_for
from ._writer import WATCH_ABORTED, Writer
from .config import ServerConfig

__all__ = [
    "Async",
    "Dispatcher",
    "Done",
    "Outcome",
    "Read",
    "Session",
    "Write",
    "error_info",
    "make_error",
]

log = logging.getLogger("bitcask.server")

OPEN_METHODS = frozenset({"hello", "auth", "ping"})  # allowed before authentication
SERVER_VERSION = "0.1.0"

# settle(result, error) — exactly one of them is meaningful
Done_ = Callable[[Any, ErrorInfo | None], None]


class Done:
    """Answer now with `result` or `error`."""

    __slots__ = ("error", "result")

    def __init__(self, result: Any, error: ErrorInfo | None) -> None:
        self.result = result
        self.error = error


class Read:
    """A read: run `fn(arg)` on the loop when the connection's order allows; may raise."""

    __slots__ = ("arg", "fn")

    def __init__(self, fn: Callable[[Any], Any], arg: Any) -> None:
        self.fn = fn
        self.arg = arg


class Write:
    """Submit `ops` to the writer (`sync`: force an fsync; `watch`: apply only if no
    watched key was written, see Writer.submit); `shape(results)` is the reply."""

    __slots__ = ("nbytes", "ops", "shape", "sync", "watch")

    def __init__(
        self,
        ops: list[Any],
        nbytes: int,
        shape: Callable[[list[Any]], Any],
        sync: bool = False,
        watch: Any = None,
    ) -> None:
        self.ops = ops
        self.nbytes = nbytes
        self.shape = shape
        self.sync = sync
        self.watch = watch


class Async:
    """`start(settle)` begins work off the loop (merge); settle(result, error) ends it."""

    __slots__ = ("start",)

    def __init__(self, start: Callable[[Done_], None]) -> None:
        self.start = start


Outcome = Done | Read | Write | Async


def make_error(code: ErrorCode, message: str) -> ErrorInfo:
    """An ErrorInfo for `code` (name is the ErrorCode member name)."""
    return ErrorInfo.from_code(code, message)


_EXC_CODES: tuple[tuple[type[BaseException], ErrorCode], ...] = (
    (bitcask.KeyTooLargeError, ErrorCode.KEY_TOO_LARGE),
    (bitcask.ValueTooLargeError, ErrorCode.VALUE_TOO_LARGE),
    (bitcask.ReadOnlyError, ErrorCode.READ_ONLY),
    (bitcask.StoreIOError, ErrorCode.IO_ERROR),
    (bitcask.CorruptRecordError, ErrorCode.CORRUPT_RECORD),
    (bitcask.MergeInProgressError, ErrorCode.MERGE_IN_PROGRESS),
    (bitcask.StoreFullError, ErrorCode.STORE_FULL),
    (bitcask.StoreClosedError, ErrorCode.SHUTTING_DOWN),
    (bitcask.NotANumberError, ErrorCode.NOT_A_NUMBER),
    (bitcask.NoSuchKeyError, ErrorCode.NO_SUCH_KEY),
)


def error_info(exc: BaseException) -> ErrorInfo:
    """Map an exception from the engine or protocol to the ErrorInfo sent to clients."""
    if isinstance(exc, ProtocolError):
        return make_error(exc.code, exc.message)
    for cls, code in _EXC_CODES:
        if isinstance(exc, cls):
            return make_error(code, str(exc) or code.name.lower())
    if isinstance(exc, OSError):  # a disk error surfacing outside write_group
        return make_error(ErrorCode.IO_ERROR, str(exc))
    if isinstance(exc, ValueError | TypeError | OverflowError | struct.error):
        # the engine refused one op's arguments (validation should have caught it first)
        return make_error(ErrorCode.INVALID_PARAMS, str(exc))
    log.error("internal error", exc_info=exc)
    return make_error(ErrorCode.INTERNAL, f"internal error: {type(exc).__name__}")


class Session:
    """Per-connection state the dispatcher needs: is this connection authenticated,
    its watches (by id) and snapshots, released by Dispatcher.end_session when it closes."""

    __slots__ = ("authenticated", "client", "closed", "last_watch", "spent", "watches")

    def __init__(self, authenticated: bool) -> None:
        self.authenticated = authenticated
        self.client: str | None = None
        self.watches: dict[int, WatchRef] = {}
        self.last_watch = 0
        self.spent: dict[int, WatchRef] = {}  # id(ref) -> watch of a commit in flight
        self.closed = False  # the connection is gone (its snapshots are released)


class _Invalid(Exception):
    """A request failed one of the server's own checks."""

    def __init__(self, code: ErrorCode, message: str) -> None:
        super().__init__(message)
        self.info = make_error(code, message)


class Dispatcher:
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
        self._token = config.auth.encode() if config.auth else None
        self._max_key = max_key_size
        self._max_value = max_value_size
        self._max_batch = config.max_batch
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
            **{kind: functools.partial(self._single, kind) for kind in _SINGLE_OPS},
            "clear": self._clear,
            "watch": self._watch,
            "unwatch": self._unwatch,
            "commit": self._commit,
        }
        self.snapshots = SnapshotMethods(db, writer, metrics or Metrics(), error_info)
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

    def new_session(self) -> Session:
        return Session(authenticated=self._token is None)

    def end_session(self, session: Session) -> None:
        """The connection closed: release its snapshots and its watches."""
        session.closed = True
        self.snapshots.session_closed(session)
        watches, session.watches = session.watches, {}
        spent, session.spent = session.spent, {}
        _release_all([*watches.values(), *spent.values()])

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
                    return Write([("put", key, value, None)], len(key) + len(value), _true)
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
        except _Invalid as exc:
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
            raise _Invalid(
                ErrorCode.BATCH_TOO_LARGE, f"mget of {len(keys)} keys > {self._max_batch}"
            )
        return Read(self._read_many, keys)

    def _read_many(self, keys: list[bytes]) -> list[bytes | None]:
        get = self._db.get
        return [get(k) for k in keys]

    def _scan(self, session: Session, args: tuple[Any, ...]) -> Outcome:
        prefix, cursor, count = args
        return Read(self._read_scan, (self._key(prefix), None if cursor is None else cursor, count))

    def _read_scan(self, query: tuple[bytes, bytes | None, int]) -> list[Any]:
        # One key more than asked tells whether another page exists, so the last page
        # already answers the finished cursor (nil), never one more empty page.
        prefix, cursor, count = query
        keys = self._db.scan(prefix, after=cursor, limit=count + 1)
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
        return self._write([("put", key, value, ttl)], len(key) + len(value), _true)

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
        return self._write(ops, size, _true)

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
        return self._write([], 0, _true, sync=True)

    def _merge(self, session: Session, args: tuple[Any, ...]) -> Outcome:
        def start(settle: Done_) -> None:
            fut = asyncio.get_running_loop().run_in_executor(None, self._db.merge)
            fut.add_done_callback(lambda f: _settle(f, settle, _report))

        return Async(start)

    # ---- atomic read-modify-write (engine Ops, decided by the writer at apply time) ----

    def _op(self, kind: str, args: tuple[Any, ...]) -> tuple[Any, int]:
        """The engine Op for one normalised request (or commit op), and its size."""
        key = self._key(args[0])
        if kind == "set":
            _, value, nx, xx, _get, keep, ttl, at_ms = args
            value = self._value(value)
            op: Any = bitcask.Set(key, value, _expiry(ttl, at_ms), nx, xx, keep)
            return op, len(key) + len(value)
        if kind == "incr":
            return bitcask.Incr(key, args[1]), len(key)
        if kind == "incr_float":
            return bitcask.IncrFloat(key, args[1]), len(key)
        if kind == "append":
            suffix = self._value(args[1])
            return bitcask.Append(key, suffix), len(key) + len(suffix)
        if kind == "get_delete":
            return bitcask.GetDel(key), len(key)
        if kind == "expire":
            _, ttl, at_ms, cond = args
            return bitcask.Expire(key, _expiry(ttl, at_ms), cond), len(key)
        if kind == "persist":
            return bitcask.Persist(key), len(key)
        if kind == "rename":
            dst = self._key(args[1])
            return bitcask.Rename(key, dst, args[2]), len(key) + len(dst)
        if kind == "put":
            value = self._value(args[1])
            return ("put", key, value, args[2]), len(key) + len(value)
        if kind == "delete":
            return ("delete", key), len(key)
        raise _Invalid(ErrorCode.INVALID_PARAMS, f"{kind!r} is not an operation")

    def _single(self, kind: str, session: Session, args: tuple[Any, ...]) -> Outcome:
        op, nbytes = self._op(kind, args)
        shape = _SHAPES[kind]
        if kind == "set" and args[4]:
            shape = _set_get
        return self._write([op], nbytes, lambda results: _only(results, shape))

    def _clear(self, session: Session, args: tuple[Any, ...]) -> Outcome:
        return self._write([bitcask.Clear()], 0, lambda results: _only(results, int))

    def _watch(self, session: Session, args: tuple[Any, ...]) -> Outcome:
        keys = [self._key(k) for k in args[0]]
        self._check_batch(len(keys))
        if len(session.watches) >= MAX_WATCHES:
            raise _Invalid(
                ErrorCode.BATCH_TOO_LARGE,
                f"this connection holds {MAX_WATCHES} watches; commit or unwatch some",
            )
        # The id is this connection's at once (a pipelined commit may name it); the
        # watch itself is taken by a Read, once this connection's earlier writes
        # applied, so they never count as a change its own commit sees.
        session.last_watch += 1
        ref = WatchRef()
        session.watches[session.last_watch] = ref
        return Read(self._take_watch, (ref, keys, session.last_watch))

    def _take_watch(self, query: tuple[WatchRef, list[bytes], int]) -> int:
        ref, keys, wid = query
        ref.take(self._db.watch(*keys))
        return wid

    def _unwatch(self, session: Session, args: tuple[Any, ...]) -> Outcome:
        wid = args[0]
        if wid is None:
            refs, session.watches = list(session.watches.values()), {}
        else:
            ref = session.watches.pop(wid, None)
            refs = [] if ref is None else [ref]
        # Released in order with this connection's reads, so after a pending watch's.
        return Read(_release_all, refs)

    def _commit(self, session: Session, args: tuple[Any, ...]) -> Outcome:
        items, wid = args
        self._check_batch(len(items))
        ops: list[Any] = []
        shapes: list[Callable[[Any], Any]] = []
        size = 0
        for item in items:
            op, nbytes = self._op(item[0], item[1:])
            ops.append(op)
            size += nbytes
            shapes.append(_set_get if item[0] == "set" and item[5] else _SHAPES[item[0]])
        if wid is None:
            return self._write(ops, size, lambda results: _each(results, shapes))
        # The watch is consumed by its commit (as EXEC ends a Redis WATCH): a second
        # commit with the same id, or an id this connection does not hold (released,
        # or from an earlier connection), aborts.
        watch = session.watches.pop(wid, None)
        if watch is None:
            return Done(None, None)
        session.spent[id(watch)] = watch  # released by the reply or when the connection ends
        try:
            return self._write(
                ops, size, lambda r: _watched(r, shapes, session, watch), watch=watch.get
            )
        except BaseException:
            _release(session, watch)
            raise

    def _snapshot_begin(self, session: Session, args: tuple[Any, ...]) -> Outcome:
        return Async(self.snapshots.begin(session, args))

    def _snapshot_read(self, session: Session, args: tuple[Any, ...]) -> Outcome:
        try:
            return Async(self.snapshots.read(session, args))
        except Exception as exc:
            return Done(None, error_for(exc, error_info))

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
    ) -> Outcome:
        if self.shutting_down:
            raise _Invalid(ErrorCode.SHUTTING_DOWN, "the server is shutting down")
        reason = self._db.readonly_reason
        if reason:
            raise _Invalid(ErrorCode.READ_ONLY, f"the store is read-only: {reason}")
        return Write(ops, nbytes, shape, sync, watch)

    # ---- checks ----

    def _key(self, key: bytes) -> bytes:
        if len(key) > self._max_key:
            raise _Invalid(ErrorCode.KEY_TOO_LARGE, f"key of {len(key)} bytes > {self._max_key}")
        return key

    def _value(self, value: bytes) -> bytes:
        if len(value) > self._max_value:
            raise _Invalid(
                ErrorCode.VALUE_TOO_LARGE, f"value of {len(value)} bytes > {self._max_value}"
            )
        return value

    def _check_batch(self, n: int) -> None:
        if n > self._max_batch:
            raise _Invalid(
                ErrorCode.BATCH_TOO_LARGE, f"{n} operations > max_batch {self._max_batch}"
            )


_SINGLE_OPS = (
    "set",
    "incr",
    "incr_float",
    "append",
    "get_delete",
    "expire",
    "persist",
    "rename",
)


def _true(results: list[Any]) -> bool:
    return True


def _first(results: list[Any]) -> Any:
    return bool(results[0])


def _batch_results(results: list[Any]) -> list[bool]:
    return [True if r is None else bool(r) for r in results]


MAX_WATCHES = 64
"""Watches one connection may hold at once (each costs a counter per watched key)."""


def _expiry(ttl: float | None, at_ms: int | None) -> int:
    if at_ms is not None:
        return at_ms
    if ttl is None:
        return 0
    return min(int(time.time() * 1000 + ttl * 1000), 2**63 - 1)


def _applied(result: Any) -> bool:
    return bool(result[0])  # Set: (applied, old value)


def _set_get(result: Any) -> Any:
    return result[1]


def _put_result(result: Any) -> bool:
    return True


_SHAPES: dict[str, Callable[[Any], Any]] = {
    "set": _applied,
    "incr": int,
    "incr_float": bytes,
    "append": int,
    "get_delete": lambda r: r,
    "expire": bool,
    "persist": bool,
    "rename": bool,
    "put": _put_result,
    "delete": bool,
}


def _only(results: list[Any], shape: Callable[[Any], Any]) -> Any:
    result = results[0]
    if isinstance(result, BaseException):
        raise result  # the op's own error (NotANumberError, ...): the request's error
    return shape(result)


def _each(results: list[Any], shapes: list[Callable[[Any], Any]]) -> list[Any]:
    out: list[Any] = []
    for result, shape in zip(results, shapes, strict=True):
        if isinstance(result, BaseException):
            err = error_info(result)
            out.append({"error": [int(err.code), err.name, err.message]})
        else:
            out.append(shape(result))
    return out


class WatchRef:
    """A watch id's engine Watch: None until the watch's Read ran on the loop."""

    __slots__ = ("released", "watch")

    def __init__(self) -> None:
        self.watch: Any = None
        self.released = False

    def take(self, watch: Any) -> None:
        self.watch = watch
        if self.released:  # unwatched or closed before the watch was taken
            watch.release()

    def get(self) -> Any:
        if self.watch is None:  # its Read failed: never apply as if unwatched
            raise ValueError("the watch was not taken")
        return self.watch

    def release(self) -> None:
        self.released = True
        if self.watch is not None:
            self.watch.release()


def _release_all(refs: list[WatchRef]) -> bool:
    for ref in refs:
        ref.release()
    return True


def _release(session: Session, watch: WatchRef) -> None:
    session.spent.pop(id(watch), None)
    watch.release()


def _watched(
    results: list[Any], shapes: list[Callable[[Any], Any]], session: Session, watch: WatchRef
) -> list[Any] | None:
    # Runs once the writer decided the commit: its watch has done its work.
    _release(session, watch)
    return None if results is WATCH_ABORTED else _each(results, shapes)


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
