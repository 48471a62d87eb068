"""Method -> handler, shared by the binary, inline and HTTP front ends.

Strategy: `Dispatcher.call(session, method, params)` never performs a write and never
blocks. It checks auth, validates the params (protocol.validate_params plus our size
limits, so one bad request fails alone instead of failing its whole group commit) and
returns an *outcome* tuple saying what to do, leaving *when* to the caller (the
per-connection Pipeline enforces read-your-writes):

    (DONE, result, error)    answer now (hello, auth, ping, and every validation error)
    (READ, fn, arg)          a read: run fn(arg) on the loop when allowed; it may raise
    (DEFERRED, start)        start(done) begins a write (writer queue) or a merge
                             (worker thread); done(result, error) runs later on the loop

Errors are always protocol.ErrorInfo with a stable ErrorCode; `error_info()` maps engine
exceptions to codes by class, never by message text.
"""

from __future__ import annotations

import asyncio
import dataclasses
import hmac
import logging
import math
from collections.abc import Callable, Mapping
from typing import Any

import bitcask
from protocol import METHODS, PROTOCOL_VERSION, ErrorCode, ErrorInfo, ProtocolError, validate_params

from ._writer import Writer
from .config import ServerConfig

__all__ = ["DEFERRED", "DONE", "READ", "Dispatcher", "Session", "error_info", "make_error"]

log = logging.getLogger("bitcask.server")

DONE, READ, DEFERRED = 0, 1, 2
OPEN_METHODS = frozenset({"hello", "auth", "ping"})  # allowed before authentication
SERVER_VERSION = "0.1.0"
MAX_SCAN_COUNT = 10_000

# done(result, error) — exactly one of them is meaningful
Done = Callable[[Any, ErrorInfo | None], None]
Outcome = tuple[Any, ...]


def make_error(code: ErrorCode, message: str) -> ErrorInfo:
    """An ErrorInfo for `code` (name is the ErrorCode member name)."""
    return ErrorInfo(int(code), code.name, message)


_EXC_CODES: tuple[tuple[type[BaseException], ErrorCode], ...] = (
    (bitcask.KeyTooLargeError, ErrorCode.KEY_TOO_LARGE),
    (bitcask.ValueTooLargeError, ErrorCode.VALUE_TOO_LARGE),
    (bitcask.ReadOnlyError, ErrorCode.READ_ONLY),
    (bitcask.StoreIOError, ErrorCode.IO_ERROR),
    (bitcask.CorruptRecordError, ErrorCode.CORRUPT_RECORD),
    (bitcask.MergeInProgressError, ErrorCode.MERGE_IN_PROGRESS),
    (bitcask.StoreClosedError, ErrorCode.SHUTTING_DOWN),
)


def error_info(exc: BaseException) -> ErrorInfo:
    """Map an exception from the engine or protocol to the ErrorInfo sent to clients."""
    if isinstance(exc, ProtocolError):
        return make_error(exc.code, str(exc))
    for cls, code in _EXC_CODES:
        if isinstance(exc, cls):
            return make_error(code, str(exc) or code.name.lower())
    if isinstance(exc, OSError):  # a disk error surfacing outside write_batch
        return make_error(ErrorCode.IO_ERROR, str(exc))
    if isinstance(exc, ValueError | TypeError):
        return make_error(ErrorCode.INVALID_PARAMS, str(exc))
    log.error("internal error", exc_info=exc)
    return make_error(ErrorCode.INTERNAL, f"internal error: {type(exc).__name__}")


class Session:
    """Per-connection state the dispatcher needs: is this connection authenticated?"""

    __slots__ = ("authenticated", "client")

    def __init__(self, authenticated: bool) -> None:
        self.authenticated = authenticated
        self.client: str | None = None


def _ttl_of(extra: Any) -> float | None:
    """The ttl of a put's optional third param ({"ttl": s}, or an already normalised number)."""
    if extra is None:
        return None
    if isinstance(extra, Mapping):
        extra = extra.get("ttl")
        if extra is None:
            return None
    if isinstance(extra, bool) or not isinstance(extra, int | float):
        raise _invalid("ttl must be a number of seconds")
    if not math.isfinite(extra) or extra <= 0:
        raise _invalid("ttl must be > 0 seconds")
    return float(extra)


class _Invalid(Exception):
    """A request failed one of the server's own checks."""

    def __init__(self, code: ErrorCode, message: str) -> None:
        super().__init__(message)
        self.info = make_error(code, message)


def _invalid(message: str) -> _Invalid:
    return _Invalid(ErrorCode.INVALID_PARAMS, message)


class Dispatcher:
    """Turns (method, params) into outcomes; one per Server.

    Args:
        db: the open store.
        writer: the group-commit writer every mutation goes through.
        config: limits and the auth token.
        max_key_size / max_value_size: the store's limits, checked before queueing.
        server_stats: returns the server counters merged into `stats`.
        run_blocking: runs a blocking callable off the loop (merge).
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
    ) -> None:
        self._db = db
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
        }
        missing = set(METHODS) - set(self._handlers)
        if missing:
            raise RuntimeError(f"protocol methods without a server handler: {sorted(missing)}")

    @property
    def auth_required(self) -> bool:
        return self._token is not None

    def new_session(self) -> Session:
        return Session(authenticated=self._token is None)

    def check_token(self, token: Any) -> bool:
        """Constant-time comparison of a presented token with the configured one."""
        if self._token is None:
            return True
        if isinstance(token, str):
            token = token.encode()
        if not isinstance(token, bytes | bytearray):
            return False
        return hmac.compare_digest(bytes(token), self._token)

    def call(self, session: Session, method: str, params: Any) -> Outcome:
        """Decide what to do with one request (see the module docstring)."""
        handler = self._handlers.get(method)
        if handler is None:
            return (DONE, None, make_error(ErrorCode.UNKNOWN_METHOD, f"unknown method {method!r}"))
        if not session.authenticated and method not in OPEN_METHODS:
            return (
                DONE,
                None,
                make_error(ErrorCode.AUTH_REQUIRED, "authenticate first (auth or hello)"),
            )
        try:
            args = validate_params(method, params)
            return handler(session, tuple(args))
        except _Invalid as exc:
            return (DONE, None, exc.info)
        except Exception as exc:
            return (DONE, None, error_info(exc))

    # ---- open methods ----

    def _hello(self, session: Session, args: tuple[Any, ...]) -> Outcome:
        opts = args[0] if args and isinstance(args[0], Mapping) else {}
        version = opts.get("protocol", PROTOCOL_VERSION)
        if version != PROTOCOL_VERSION:
            msg = f"protocol {version!r} not supported; this server speaks {PROTOCOL_VERSION}"
            return (DONE, None, make_error(ErrorCode.UNSUPPORTED_VERSION, msg))
        if opts.get("auth") is not None:
            if not self.check_token(opts["auth"]):
                return (DONE, None, make_error(ErrorCode.AUTH_FAILED, "invalid token"))
            session.authenticated = True
        if isinstance(opts.get("client"), str):
            session.client = opts["client"]
        return (
            DONE,
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
            return (DONE, None, make_error(ErrorCode.AUTH_FAILED, "invalid token"))
        session.authenticated = True
        return (DONE, True, None)

    def _ping(self, session: Session, args: tuple[Any, ...]) -> Outcome:
        return (DONE, args[0] if args else "PONG", None)

    # ---- reads (run on the loop, straight from the engine) ----

    def _get(self, session: Session, args: tuple[Any, ...]) -> Outcome:
        return (READ, self._db.get, self._key(args[0]))

    def _exists(self, session: Session, args: tuple[Any, ...]) -> Outcome:
        return (READ, self._db.__contains__, self._key(args[0]))

    def _ttl(self, session: Session, args: tuple[Any, ...]) -> Outcome:
        return (READ, self._read_ttl, self._key(args[0]))

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
        return (READ, self._read_many, keys)

    def _read_many(self, keys: list[bytes]) -> list[bytes | None]:
        get = self._db.get
        return [get(k) for k in keys]

    def _scan(self, session: Session, args: tuple[Any, ...]) -> Outcome:
        opts = args[0] if args and isinstance(args[0], Mapping) else {}
        prefix = self._key(opts.get("prefix") or b"", allow_empty=True)
        cursor = opts.get("cursor")
        cursor = None if cursor is None else self._key(cursor, allow_empty=True)
        count = opts.get("count", 100)
        if (
            isinstance(count, bool)
            or not isinstance(count, int)
            or not 1 <= count <= MAX_SCAN_COUNT
        ):
            raise _invalid(f"scan count must be an integer in 1..{MAX_SCAN_COUNT}")
        return (READ, self._read_scan, (prefix, cursor, count))

    def _read_scan(self, query: tuple[bytes, bytes | None, int]) -> list[Any]:
        prefix, cursor, count = query
        keys = self._db.scan(prefix, after=cursor, limit=count)
        return [keys[-1] if len(keys) == count else None, keys]

    def _stats(self, session: Session, args: tuple[Any, ...]) -> Outcome:
        return (READ, self._read_stats, None)

    def _read_stats(self, _: None) -> dict[str, Any]:
        stats = dict(self._db.stats())
        stats["server"] = self._server_stats()
        return stats

    # ---- writes (through the writer queue) ----

    def _put(self, session: Session, args: tuple[Any, ...]) -> Outcome:
        key, value = self._key(args[0]), self._value(args[1])
        ttl = _ttl_of(args[2]) if len(args) > 2 else None
        return self._write([("put", key, value, ttl)], len(key) + len(value), _true)

    def _delete(self, session: Session, args: tuple[Any, ...]) -> Outcome:
        key = self._key(args[0])
        return self._write([("delete", key)], len(key), _first)

    def _mput(self, session: Session, args: tuple[Any, ...]) -> Outcome:
        pairs = args[0].items() if isinstance(args[0], Mapping) else args[0]
        ops: list[tuple[Any, ...]] = []
        size = 0
        for pair in pairs:
            key, value = self._key(pair[0]), self._value(pair[1])
            ops.append(("put", key, value, None))
            size += len(key) + len(value)
        self._check_batch(len(ops))
        return self._write(ops, size, _true)

    def _batch(self, session: Session, args: tuple[Any, ...]) -> Outcome:
        ops: list[tuple[Any, ...]] = []
        size = 0
        for op in args[0]:
            kind = op[0].decode() if isinstance(op[0], bytes) else op[0]
            if kind == "put":
                key, value = self._key(op[1]), self._value(op[2])
                ttl = _ttl_of(op[3]) if len(op) > 3 else None
                ops.append(("put", key, value, ttl))
                size += len(key) + len(value)
            elif kind == "delete":
                key = self._key(op[1])
                ops.append(("delete", key))
                size += len(key)
            else:
                raise _invalid(f"batch op must be put or delete, not {kind!r}")
        self._check_batch(len(ops))
        return self._write(ops, size, _batch_results)

    def _sync(self, session: Session, args: tuple[Any, ...]) -> Outcome:
        return self._write([], 0, _true, sync=True)

    def _merge(self, session: Session, args: tuple[Any, ...]) -> Outcome:
        def start(done: Done) -> None:
            loop = asyncio.get_running_loop()
            fut = loop.run_in_executor(None, self._db.merge)
            fut.add_done_callback(lambda f: _settle(f, done, _report))

        return (DEFERRED, start)

    def _write(
        self,
        ops: list[tuple[Any, ...]],
        nbytes: int,
        shape: Callable[[list[Any]], Any],
        sync: bool = False,
    ) -> Outcome:
        if self.shutting_down:
            raise _Invalid(ErrorCode.SHUTTING_DOWN, "the server is shutting down")
        reason = getattr(self._db, "readonly_reason", None)
        if reason:
            raise _Invalid(ErrorCode.READ_ONLY, f"the store is read-only: {reason}")
        writer = self._writer

        def start(done: Done) -> None:
            def finished(results: list[Any] | None, exc: BaseException | None) -> None:
                if exc is not None:
                    done(None, error_info(exc))
                else:
                    done(shape(results or []), None)

            if not writer.submit(ops, finished, nbytes=nbytes, sync=sync):
                if writer.closed:
                    done(None, make_error(ErrorCode.SHUTTING_DOWN, "the server is shutting down"))
                else:
                    done(None, make_error(ErrorCode.BUSY, "writer queue full; retry later"))

        return (DEFERRED, start)

    # ---- checks ----

    def _key(self, key: Any, allow_empty: bool = False) -> bytes:
        if isinstance(key, str):
            key = key.encode()
        if not isinstance(key, bytes):
            raise _invalid("a key must be bytes or str")
        if len(key) > self._max_key:
            raise _Invalid(ErrorCode.KEY_TOO_LARGE, f"key of {len(key)} bytes > {self._max_key}")
        return key

    def _value(self, value: Any) -> bytes:
        if isinstance(value, str):
            value = value.encode()
        if not isinstance(value, bytes):
            raise _invalid("a value must be bytes or str")
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


def _true(results: list[Any]) -> bool:
    return True


def _first(results: list[Any]) -> Any:
    return bool(results[0])


def _batch_results(results: list[Any]) -> list[bool]:
    return [True if r is None else bool(r) for r in results]


def _report(report: Any) -> Any:
    if dataclasses.is_dataclass(report) and not isinstance(report, type):
        return dataclasses.asdict(report)
    if isinstance(report, Mapping):
        return dict(report)
    return getattr(report, "__dict__", report)


def _settle(fut: asyncio.Future[Any], done: Done, shape: Callable[[Any], Any]) -> None:
    if fut.cancelled():
        done(None, make_error(ErrorCode.SHUTTING_DOWN, "cancelled"))
    elif fut.exception() is not None:
        exc = fut.exception()
        assert exc is not None
        done(None, error_info(exc))
    else:
        done(shape(fut.result()), None)
