"""A stored value as a number, as Redis reads it and writes it back.

Strategy / invariants:
- Values are bytes; INCR and INCRBYFLOAT read them as numbers by Redis's own rules,
  so a value Redis refuses is refused here with the same error text
  (NotANumberError): ``_as_int`` is string2ll (optional ``-``, digits, no leading
  zeros, no ``+`` or blanks, signed 64-bit), ``_as_float`` is string2ld (what C
  strtold reads whole: decimal, hexadecimal, inf; never NaN; under 5 KiB).
- ``format_float`` writes a double sum back as Redis prints its long double
  (``%.17Lf``, trailing zeros cut, never an exponent). It is the binary protocol's
  ``incr_float`` (a double delta); a Redis client's INCRBYFLOAT, given the
  increment's text, sums in a long double instead (``bitcask/_ldouble.py``).
- The ops that use these are ``bitcask/_rmw.py``'s ``Incr`` and ``IncrFloat``.
"""

from __future__ import annotations

import math
import re
from decimal import Context, Decimal

from .errors import NotANumberError

__all__ = ["I64_MAX", "I64_MIN", "format_float"]

I64_MIN = -(1 << 63)
I64_MAX = (1 << 63) - 1


def _as_int(raw: bytes) -> int:
    # Redis's string2ll: optional '-', digits, no leading zeros, no '+' or spaces.
    text = raw.decode("ascii", "replace")
    digits = text[1:] if text.startswith("-") else text
    if (
        not digits
        or not digits.isdigit()
        or not digits.isascii()
        or (len(digits) > 1 and digits[0] == "0")
        or text == "-0"
    ):
        raise NotANumberError("value is not an integer or out of range")
    n = int(text)
    if not I64_MIN <= n <= I64_MAX:
        raise NotANumberError("value is not an integer or out of range")
    return n


_17_PLACES = Decimal(1).scaleb(-17)
# From 2**53 up every double is an integer, and its shortest round-trip digits end in
# zeros that are not its value's (2**63 would read 9223372036854776000); Redis's long
# double holds such integers exactly (up to 2**64), so they are printed exactly.
_EXACT_FROM = float(2**53)
_WIDE = Context(prec=400)


def format_float(x: float) -> bytes:
    """A float as INCRBYFLOAT stores it, as Redis prints its long double with
    ``%.17Lf`` and cuts trailing zeros: positional, never an exponent. The double's
    shortest round-trip digits are rounded to 17 places, so 10.5 + 0.1 is ``10.6``
    (as in Redis) and only digits beyond a double's precision can differ. From 2**53
    up (integers only) the double's exact value is printed."""
    exact = abs(x) >= _EXACT_FROM
    fixed = (Decimal(x) if exact else Decimal(repr(x))).quantize(_17_PLACES, context=_WIDE)
    text = format(fixed, "f")
    if "." in text:
        text = text.rstrip("0").rstrip(".")
    return b"0" if text in ("-0", "") else text.encode("ascii")


# Redis's string2ld: what C strtold reads whole (decimal, hexadecimal, inf), under
# 5 KiB, no leading blank, never NaN. Python's float() alone would also take "1_0",
# blanks around the number and non-ASCII digits, and refuse hexadecimal.
_DECIMAL = re.compile(
    rb"[+-]?(?:[0-9]+\.?[0-9]*|\.[0-9]+)(?:[eE][+-]?[0-9]+)?|[+-]?inf(?:inity)?", re.I
)
_HEXFLOAT = re.compile(
    rb"[+-]?0[xX](?:[0-9a-fA-F]+\.?[0-9a-fA-F]*|\.[0-9a-fA-F]+)(?:[pP][+-]?[0-9]+)?"
)


def _as_float(raw: bytes) -> float:
    if 0 < len(raw) < 5 * 1024:
        if _DECIMAL.fullmatch(raw):
            return float(raw)  # inf stays inf: the sum answers "NaN or Infinity"
        if _HEXFLOAT.fullmatch(raw):
            text = raw.decode("ascii")
            try:
                return float.fromhex(text if "p" in text.lower() else text + "p0")
            except OverflowError:  # beyond a double: infinite, as float("1e400") is
                return -math.inf if text[0] == "-" else math.inf
    raise NotANumberError("value is not a valid float")
