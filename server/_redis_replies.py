"""What every Redis command family shares to shape a reply from its ops' results.

Strategy: an op that failed alone (NotANumberError, CorruptRecordError, ...) comes
back as the exception in its place of the writer's results; a reply shape hands it
to `op_error`, which raises `ErrorReply` with the error's own code, so the
connection's pipeline counts it (bitcask_request_errors_total) and EXEC places its
line in the array. The shapes used by more than one family (server/_redis.py's fast
path, _redis_strings.py, _redis_keys.py, _redis_transactions.py) live here; a
family's own shapes live with it.
"""

from __future__ import annotations

from typing import Any

import bitcask
from protocol import ErrorCode, ErrorInfo

from ._outcome import Invalid
from ._redis_session import OK, redis_error
from ._reply_bounds import reply_too_large

__all__ = ["TOO_BIG", "ErrorReply", "int_of_applied", "ok", "op_error", "reply_too_big"]

TOO_BIG = "ERR string exceeds maximum allowed size (proto-max-bulk-len)"


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


def op_error(result: Any) -> None:
    """Raise ErrorReply if `result` is the error of an op that failed alone."""
    if isinstance(result, BaseException):
        if isinstance(result, bitcask.CorruptRecordError):
            message = f"corrupt record: {result}"
        elif isinstance(result, bitcask.ValueTooLargeError):  # APPEND that raced the hint
            raise ErrorReply(ErrorInfo.from_code(ErrorCode.VALUE_TOO_LARGE, TOO_BIG[4:]))
        else:  # the engine words these as Redis does ("value is not an integer ...")
            message = str(result).strip("'\"") or type(result).__name__
        for cls, code in _OP_CODES:
            if isinstance(result, cls):
                raise ErrorReply(ErrorInfo.from_code(code, message))
        raise ErrorReply(redis_error("ERR " + message))


def ok(results: list[Any]) -> bytes:
    if results:
        op_error(results[0])
    return OK


def reply_too_big(size: int, limit: int, what: str = "values") -> str:
    return "ERR " + reply_too_large(size, limit, what)


def int_of_applied(result: Any) -> bytes:
    if isinstance(result, tuple):  # Set's (applied, old)
        result = result[0]
    op_error(result)
    return b":1\r\n" if result else b":0\r\n"
