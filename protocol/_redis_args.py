"""What every Redis command parser shares: `CommandError` and the argument readers.

Strategy / invariants:
- Each reader follows the Redis function it stands for (string2ll, string2ld,
  getIntFromObjectOrReply, getExpireMillisecondsOrReply, C's `%.*s`) and raises
  `CommandError` with Redis 7's exact line, so a parser is a sequence of reads and
  checks that never words an error of its own for a number, a float or an expiry.
- The parsers live by family: protocol/_redis_parse_keys.py (strings and the key
  space), protocol/_redis_parse_admin.py (connection and server commands); the
  lookup, the arity check and the table joining them, protocol/redis_commands.py.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable
from typing import Any

from protocol._redis_requests import Command
from protocol._resp_reader import _string2ll

__all__ = [
    "EXPIRE_UNITS",
    "LLONG_MAX",
    "LLONG_MIN",
    "NOT_INTEGER",
    "SYNTAX_ERROR",
    "CommandError",
    "Parser",
    "all_keys",
    "bare",
    "cstr",
    "expire_at",
    "float_arg",
    "int32_arg",
    "int_arg",
    "is_word",
    "one_key",
]

LLONG_MAX = 2**63 - 1
LLONG_MIN = -(2**63)


class CommandError(Exception):
    """A command refused before it runs; `reply` is the error line Redis 7 sends.

    Args:
        message: the error text with its code, e.g. "ERR syntax error" (latin-1:
            each character is one byte of the reply, so client bytes survive).

    Example:
        >>> CommandError("ERR syntax error").reply
        b'-ERR syntax error\\r\\n'
    """

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message

    @property
    def reply(self) -> bytes:
        """The RESP error line (CR/LF inside become spaces, as Redis does)."""
        raw = self.message.encode("latin-1", "replace").translate(_NO_CRLF)
        return b"-" + raw + b"\r\n"


_NO_CRLF = bytes.maketrans(b"\r\n", b"  ")
SYNTAX_ERROR = "ERR syntax error"
NOT_INTEGER = "ERR value is not an integer or out of range"


def cstr(arg: bytes, limit: int) -> str:
    """`%.<limit>s` of a C string: cut at a NUL and at `limit` bytes (latin-1, byte per char)."""
    nul = arg.find(b"\x00")
    if nul >= 0:
        arg = arg[:nul]
    return arg[:limit].decode("latin-1")


def int_arg(arg: bytes, error: str = NOT_INTEGER) -> int:
    value = _string2ll(arg)
    if value is None:
        raise CommandError(error)
    return value


def is_word(arg: bytes, word: bytes) -> bool:
    return arg.lower() == word


_DECIMAL = re.compile(rb"[+-]?(?:[0-9]+\.?[0-9]*|\.[0-9]+)(?:[eE][+-]?[0-9]+)?")
_HEXFLOAT = re.compile(
    rb"[+-]?0[xX](?:[0-9a-fA-F]+\.?[0-9a-fA-F]*|\.[0-9a-fA-F]+)(?:[pP][+-]?[0-9]+)?"
)
_INFINITY = re.compile(rb"[+-]?(?:inf|infinity)", re.IGNORECASE)


def float_arg(arg: bytes) -> float:
    """Redis's string2ld: what strtold reads whole, no leading space, never NaN."""
    if 0 < len(arg) < 5 * 1024:
        if _DECIMAL.fullmatch(arg) or _INFINITY.fullmatch(arg):
            return float(arg)
        if _HEXFLOAT.fullmatch(arg):
            text = arg.decode("ascii")
            if "p" not in text.lower():
                text += "p0"
            try:
                return float.fromhex(text)
            except OverflowError:  # beyond a double: infinite, as float(b"1e400") is
                return -math.inf if text[0] == "-" else math.inf
    raise CommandError("ERR value is not a valid float")


def expire_at(cmd: str, amount: int, unit_ms: bool, relative: bool, now_ms: int) -> int:
    """SET/SETEX/GETEX's expire argument -> absolute ms (getExpireMillisecondsOrReply)."""
    if amount <= 0 or (not unit_ms and amount > LLONG_MAX // 1000):
        raise CommandError(f"ERR invalid expire time in '{cmd}' command")
    when = amount if unit_ms else amount * 1000
    if relative:
        when += now_ms
    if when > LLONG_MAX or when <= 0:
        raise CommandError(f"ERR invalid expire time in '{cmd}' command")
    return when


EXPIRE_UNITS = {b"ex": (False, True), b"px": (True, True), b"exat": (False, False), b"pxat": (True, False)}  # fmt: skip


def int32_arg(arg: bytes) -> int:
    """Redis's getIntFromObjectOrReply: a long long, then an int's range."""
    value = int_arg(arg)
    if not -(2**31) <= value <= 2**31 - 1:
        raise CommandError(
            "ERR value is out of range, value must between -2147483648 and 2147483647"
        )
    return value


# A parser: (command name, argv, now in ms) -> the typed command (argv already checked for arity)
Parser = Callable[[str, list[bytes], int], Command]


def one_key(cls: Any) -> Parser:
    return lambda name, a, now_ms: cls(name, a[1])


def all_keys(cls: Any) -> Parser:
    return lambda name, a, now_ms: cls(name, tuple(a[1:]))


def bare(cls: Any) -> Parser:
    return lambda name, a, now_ms: cls(name)
