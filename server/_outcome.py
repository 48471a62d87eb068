"""What a dispatcher handler answers: the outcome types, and engine errors as codes.

Strategy: a handler never performs a write and never blocks; it returns an *outcome*
saying what to do and leaves *when* to its caller (the per-connection Pipeline, the
HTTP routes, the Redis dialect), which enforces read-your-writes:

    Done(result, error)                answer now (hello, auth, ping, every validation error)
    Read(fn, arg)                      a read: run fn(arg) on the loop when allowed; may raise
    Write(ops, nbytes, shape, sync)    submit ops to the writer; shape(results) is the reply
    Async(start)                       start(settle) begins work off the loop (merge);
                                       settle(result, error) runs later on the loop

Errors are always protocol.ErrorInfo with a stable ErrorCode: `error_info()` maps engine
exceptions to codes by class, never by message text; `Invalid` is a request that failed
one of the server's own checks, already carrying its ErrorInfo.
"""

from __future__ import annotations

import asyncio
import logging
import struct
from collections.abc import Callable
from typing import Any

import bitcask
from bitcask.logthrottle import LogThrottle
from protocol import ErrorCode, ErrorInfo, ProtocolError

__all__ = [
    "Async",
    "Done",
    "Done_",
    "Invalid",
    "Outcome",
    "Read",
    "Write",
    "always_true",
    "error_info",
    "loop_exception_handler",
    "make_error",
]

log = logging.getLogger("bitcask.server")
# An unexpected exception is a bug a client may hit once per request: one line with
# its traceback per exception type every 10 s, the rest counted (bitcask/logthrottle.py).
internal_errors = LogThrottle(log)

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
    watched key was written, see Writer.submit); `shape(results)` is the reply, and
    `failed()`, if given, runs instead when the writer failed or refused the ops."""

    __slots__ = ("failed", "nbytes", "ops", "shape", "sync", "watch")

    def __init__(
        self,
        ops: list[Any],
        nbytes: int,
        shape: Callable[[list[Any]], Any],
        sync: bool = False,
        watch: Any = None,
        failed: Callable[[], None] | None = None,
    ) -> None:
        self.ops = ops
        self.nbytes = nbytes
        self.shape = shape
        self.sync = sync
        self.watch = watch
        self.failed = failed


class Async:
    """`start(settle)` begins work off the loop (merge); settle(result, error) ends it."""

    __slots__ = ("start",)

    def __init__(self, start: Callable[[Done_], None]) -> None:
        self.start = start


Outcome = Done | Read | Write | Async


def always_true(results: list[Any]) -> bool:
    """The `shape` of a write whose reply is True whatever the engine answered (put,
    mput, sync). _Slot.__call__ answers True for it without calling it: a Python call
    less per put (bench.request_path, put depth 16: docs/architecture.md)."""
    return True


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
    if isinstance(exc, Invalid):  # a check's own answer (the Redis dialect's ErrorReply)
        return exc.info
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
    internal_errors.log(
        type(exc).__name__, logging.ERROR, "internal error: %s", type(exc).__name__, exc_info=exc
    )
    return make_error(ErrorCode.INTERNAL, f"internal error: {type(exc).__name__}")


def loop_exception_handler(loop: asyncio.AbstractEventLoop, context: dict[str, Any]) -> None:
    """The event loop's report of an exception nothing caught (a protocol callback's, a
    task's): asyncio's own line and traceback, at most one per kind every 10 s. Without
    it a bug a client reaches in data_received wrote a traceback per connection."""
    exc = context.get("exception")
    tail = internal_errors.admit(f"loop: {context.get('message')}: {type(exc).__name__}")
    if tail is not None:
        loop.default_exception_handler({**context, "message": f"{context.get('message')}{tail}"})


class Invalid(Exception):
    """A request failed one of the server's own checks."""

    def __init__(self, code: ErrorCode, message: str) -> None:
        super().__init__(message)
        self.info = make_error(code, message)
