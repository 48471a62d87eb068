"""Redis's INCRBYFLOAT arithmetic: a C ``long double`` (x86-64: 64-bit significand).

Strategy / invariants:
- Redis reads the stored value and the increment with ``strtold``, adds them in a
  long double and stores ``"%.17Lf"`` with the trailing zeros cut. A double cannot
  follow it: ten increments of ``0.1`` give ``1`` in Redis and ``0.9999999999999999``
  in doubles. Here every value is an exact integer significand and binary exponent
  rounded to the nearest long double (ties to even), so the sum and its 17 decimals
  are Redis's, digit for digit.
- Inputs are bounded before any big arithmetic: at most 5 KiB of text (Redis's
  MAX_LONG_DOUBLE_CHARS) and an exponent that decides overflow or underflow
  without computing ``10**exponent``.
- Errors are Redis's: a text ``strtold`` does not read whole, NaN, a leading blank,
  or a value out of the long double range is "value is not a valid float"; a
  sum that is infinite or NaN is "increment would produce NaN or Infinity".
"""

from __future__ import annotations

import re
from decimal import Decimal

from .errors import NotANumberError

__all__ = ["incr_by_float"]

_BITS = 64  # the significand of the x87 extended format
_MAX_EXP = 16384  # LDBL_MAX < 2**16384
_MIN_QUANTUM = -16445  # the smallest subnormal is 2**-16445
_MAX_CHARS = 5 * 1024

_DECIMAL = re.compile(rb"([+-]?)([0-9]*)(?:\.([0-9]*))?(?:[eE]([+-]?[0-9]+))?")
_HEX = re.compile(rb"([+-]?)0[xX]([0-9a-fA-F]*)(?:\.([0-9a-fA-F]*))?(?:[pP]([+-]?[0-9]+))?")
_INF = re.compile(rb"([+-]?)inf(?:inity)?", re.IGNORECASE)

_NOT_A_FLOAT = "value is not a valid float"


# A finite long double is (negative, m, q): (-1 if negative) * m * 2**q, m < 2**64.
# An infinite one is None. Integers only: Fraction made a typical call ~140 us.
_LD = tuple[bool, int, int]


def _int(digits: bytes, base: int) -> int:
    """``int(digits, base)`` past Python's 4,300-digit limit for decimal strings."""
    if base == 16 or len(digits) <= 4000:
        return int(digits or b"0", base)
    n = 0
    for i in range(0, len(digits), 4000):
        chunk = digits[i : i + 4000]
        n = n * 10 ** len(chunk) + int(chunk)
    return n


def _round(negative: bool, n: int, d: int) -> _LD | None:
    """n / d rounded to the nearest long double, ties to even; past LDBL_MAX: None."""
    if n == 0:
        return (False, 0, 0)
    e = n.bit_length() - d.bit_length()  # then 2**(e-1) <= n/d < 2**e
    if (n << max(-e, 0)) >= (d << max(e, 0)):
        e += 1
    q = max(e - _BITS, _MIN_QUANTUM)
    num, den = (n, d << q) if q >= 0 else (n << -q, d)
    m, r = divmod(num, den)
    if 2 * r > den or (2 * r == den and m & 1):
        m += 1
    if m.bit_length() + q > _MAX_EXP:
        return None
    return (negative, m, q)


def _parse(text: bytes) -> _LD | None:
    """What ``strtold`` reads from ``text`` as a whole (Redis's string2ld); None: inf."""
    if not 0 < len(text) < _MAX_CHARS:
        raise NotANumberError(_NOT_A_FLOAT)
    if _INF.fullmatch(text):
        return None
    hexa = _HEX.fullmatch(text)
    if hexa:
        sign, whole, frac, exp = hexa.groups()
        base = 16
    else:
        dec = _DECIMAL.fullmatch(text)
        if not dec:
            raise NotANumberError(_NOT_A_FLOAT)
        sign, whole, frac, exp = dec.groups()
        base = 10
    frac = frac or b""
    if not whole and not frac:
        raise NotANumberError(_NOT_A_FLOAT)
    digits = ((whole or b"") + frac).lstrip(b"0")
    if not digits:
        return (False, 0, 0)
    mantissa = _int(digits, base)
    exponent = int(exp or b"0")
    # the value is mantissa * base**(-len(frac)) * (2 or 10)**exponent: bound its
    # magnitude before computing it (ERANGE either way: Redis refuses both)
    if base == 16:
        scale = exponent - 4 * len(frac)
        magnitude = mantissa.bit_length() + scale
        if magnitude > _MAX_EXP + 1 or magnitude < _MIN_QUANTUM - 2:
            raise NotANumberError(_NOT_A_FLOAT)
        n, d = (mantissa << scale, 1) if scale >= 0 else (mantissa, 1 << -scale)
    else:
        scale = exponent - len(frac)
        magnitude = len(digits) + scale
        if magnitude > 4934 or magnitude < -4952:
            raise NotANumberError(_NOT_A_FLOAT)
        n, d = (mantissa * 10**scale, 1) if scale >= 0 else (mantissa, 10**-scale)
    value = _round(sign == b"-", n, d)
    if value is None or value[1] == 0:
        raise NotANumberError(_NOT_A_FLOAT)  # out of range (ERANGE)
    return value


def _add(a: _LD, b: _LD) -> _LD | None:
    q = min(a[2], b[2])
    total = (-1 if a[0] else 1) * (a[1] << (a[2] - q)) + (-1 if b[0] else 1) * (b[1] << (b[2] - q))
    n, d = (abs(total) << q, 1) if q >= 0 else (abs(total), 1 << -q)
    return _round(total < 0, n, d)


def _format(x: _LD) -> bytes:
    """``"%.17Lf"`` of ``x`` (glibc rounds exactly, half to even), trailing zeros cut."""
    negative, m, q = x
    if q >= 0:
        scaled = (m << q) * 10**17
    else:
        scaled, r = divmod(m * 10**17, 1 << -q)
        if 2 * r > (1 << -q) or (2 * r == (1 << -q) and scaled & 1):
            scaled += 1
    digits = str(scaled) if scaled.bit_length() < 14000 else str(Decimal(scaled))
    text = digits.rjust(18, "0")
    text = f"{text[:-17]}.{text[-17:]}".rstrip("0").rstrip(".")
    return (b"-" if negative and text != "0" else b"") + text.encode("ascii")


def incr_by_float(old: bytes | None, increment: bytes) -> bytes:
    """The text Redis stores for ``INCRBYFLOAT`` of ``increment`` on ``old`` (None: 0).

    Example:
        >>> [incr_by_float(None, b"0.1"), incr_by_float(b"0.1", b"0.2")]
        [b'0.1', b'0.3']
    """
    a = (False, 0, 0) if old is None else _parse(old)
    b = _parse(increment)
    total = None if a is None or b is None else _add(a, b)
    if total is None:
        raise NotANumberError("increment would produce NaN or Infinity")
    return _format(total)
