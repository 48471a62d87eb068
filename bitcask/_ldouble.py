"""Redis's INCRBYFLOAT arithmetic: a C ``long double`` (x86-64: 64-bit significand).

Strategy / invariants:
- Redis reads the stored value and the increment with ``strtold``, adds them in a
  long double and stores ``"%.17Lf"`` with the trailing zeros cut. A double cannot
  follow it: ten increments of ``0.1`` give ``1`` in Redis and ``0.9999999999999999``
  in doubles. Here every value is an exact ``Fraction`` rounded to the nearest long
  double (ties to even), so the sum and its 17 decimals are Redis's, digit for digit.
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
from fractions import Fraction

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


class _Inf:
    """An infinite long double (``sign`` is +1 or -1)."""

    __slots__ = ("sign",)

    def __init__(self, sign: int) -> None:
        self.sign = sign


def _int(digits: bytes, base: int) -> int:
    """``int(digits, base)`` past Python's 4,300-digit limit for decimal strings."""
    if base == 16 or len(digits) <= 4000:
        return int(digits or b"0", base)
    n = 0
    for i in range(0, len(digits), 4000):
        chunk = digits[i : i + 4000]
        n = n * 10 ** len(chunk) + int(chunk)
    return n


def _round(x: Fraction) -> Fraction | _Inf:
    """``x`` rounded to the nearest long double, ties to even; past LDBL_MAX: infinite."""
    if x == 0:
        return x
    a = abs(x)
    n, d = a.numerator, a.denominator
    e = n.bit_length() - d.bit_length()  # 2**(e-1) <= a < 2**e after the fix below
    if (n << max(-e, 0)) >= (d << max(e, 0)):
        e += 1
    q = max(e - _BITS, _MIN_QUANTUM)
    m = round(a / Fraction(2) ** q) if q >= 0 else round(a * (1 << -q))  # half to even
    r = Fraction(m) * Fraction(2) ** q
    if r >= Fraction(2) ** _MAX_EXP:
        return _Inf(1 if x > 0 else -1)
    return r if x > 0 else -r


def _parse(text: bytes) -> Fraction | _Inf:
    """What ``strtold`` reads from ``text`` as a whole (Redis's string2ld)."""
    if not 0 < len(text) < _MAX_CHARS:
        raise NotANumberError(_NOT_A_FLOAT)
    m = _INF.fullmatch(text)
    if m:
        return _Inf(-1 if m.group(1) == b"-" else 1)
    hexa = _HEX.fullmatch(text)
    if hexa:
        sign, whole, frac, exp, base, digit_bits = *hexa.groups(), 16, 4
    else:
        dec = _DECIMAL.fullmatch(text)
        if not dec:
            raise NotANumberError(_NOT_A_FLOAT)
        sign, whole, frac, exp, base, digit_bits = *dec.groups(), 10, 0
    frac = frac or b""
    if not whole and not frac:
        raise NotANumberError(_NOT_A_FLOAT)
    digits = ((whole or b"") + frac).lstrip(b"0")
    mantissa = _int(digits, base)
    exponent = int(exp or b"0")
    if mantissa == 0:
        return Fraction(0)
    # the value is mantissa * base**(-len(frac)) * (2 or 10)**exponent: bound its
    # magnitude before computing it
    if digit_bits:
        scale = exponent - digit_bits * len(frac)
        magnitude = mantissa.bit_length() + scale  # in bits
        if magnitude > _MAX_EXP + 1 or magnitude < _MIN_QUANTUM - 2:
            raise NotANumberError(_NOT_A_FLOAT)  # ERANGE: Redis refuses both ways
        value = Fraction(mantissa) * Fraction(2) ** scale
    else:
        scale = exponent - len(frac)
        magnitude = len(digits) + scale  # in decimal digits
        if magnitude > 4934 or magnitude < -4952:
            raise NotANumberError(_NOT_A_FLOAT)
        value = Fraction(mantissa) * Fraction(10) ** scale
    rounded = _round(-value if sign == b"-" else value)
    if isinstance(rounded, _Inf) or rounded == 0:
        raise NotANumberError(_NOT_A_FLOAT)  # out of range (ERANGE)
    return rounded


def _format(x: Fraction) -> bytes:
    """``"%.17Lf"`` of ``x`` (glibc rounds exactly, half to even), trailing zeros cut."""
    scaled = round(x * 10**17)
    text = str(Decimal(abs(scaled))).rjust(18, "0")  # Decimal: no 4,300-digit limit
    text = f"{'-' if scaled < 0 else ''}{text[:-17]}.{text[-17:]}".rstrip("0").rstrip(".")
    return b"0" if text == "-0" else text.encode("ascii")


def incr_by_float(old: bytes | None, increment: bytes) -> bytes:
    """The text Redis stores for ``INCRBYFLOAT`` of ``increment`` on ``old`` (None: 0).

    Example:
        >>> [incr_by_float(None, b"0.1"), incr_by_float(b"0.1", b"0.2")]
        [b'0.1', b'0.3']
    """
    a = Fraction(0) if old is None else _parse(old)
    b = _parse(increment)
    if isinstance(a, _Inf) or isinstance(b, _Inf):
        raise NotANumberError("increment would produce NaN or Infinity")
    total = _round(a + b)
    if isinstance(total, _Inf):
        raise NotANumberError("increment would produce NaN or Infinity")
    return _format(total)
