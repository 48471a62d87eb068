"""Call arguments: converted and checked locally, before anything is sent.

Strategy / invariants:
- Every rule a call's arguments must meet (types -> InterfaceError; sizes against
  the server's limits -> KeyTooLargeError / ValueTooLargeError / BatchTooLargeError)
  is checked here or by the ``Checks`` a caller provides, so a bad argument fails at
  once and never costs a round trip; the rules are the server's own.
- The conversions and params builders are shared by the single calls
  (client/_commands.py), the transaction (client/_transaction.py) and the batch
  (client/_batch.py), which is why they live below all three: they depend on a
  ``Checks`` (``Commands`` is one), never on a concrete client class.
"""

from __future__ import annotations

import math
from typing import Any, Protocol

from client.errors import InterfaceError
from protocol.methods import EXPIRE_CONDITIONS, MAX_EXPIRY_MS

__all__ = [
    "Checks",
    "Key",
    "Value",
    "bad_timeout",
    "check_ttl",
    "expire_params",
    "float_params",
    "incr_params",
    "positive",
    "rename_params",
    "set_params",
    "to_bytes",
]

Key = bytes | str
"""Keys: bytes, or str (UTF-8 encoded)."""
Value = bytes | str
"""Values: bytes, or str (UTF-8 encoded); always returned as bytes."""


class Checks(Protocol):
    """The size checks against the server's limits (``Commands`` provides them)."""

    def _key(self, key: Any) -> bytes: ...

    def _value(self, value: Any) -> bytes: ...

    def _batch_size(self, n: int) -> None: ...


def to_bytes(data: Any, what: str) -> bytes:
    """bytes as is, str UTF-8 encoded (strict), bytearray/memoryview copied; else
    InterfaceError (also for a str with a lone surrogate, which has no UTF-8 bytes)."""
    t = type(data)
    if t is bytes:
        return data  # type: ignore[no-any-return]
    if t is str:
        try:
            return data.encode("utf-8")  # type: ignore[no-any-return]
        except UnicodeEncodeError as exc:  # bitcask/_record.as_bytes says the same
            raise InterfaceError(
                f"{what} is a str with a lone surrogate ({data[exc.start]!r} at index "
                f"{exc.start}), which has no UTF-8 bytes: pass bytes (os.fsencode(name) for "
                "a name decoded with surrogateescape)"
            ) from None
    if t is bytearray or t is memoryview:
        return bytes(data)
    raise InterfaceError(f"{what} must be bytes or str, got {t.__name__}")


def positive(timeout: Any) -> bool:
    """Whether a per-call timeout is a number > 0 (False for 0, a negative number, NaN
    and anything that is not a number: a str read from a config file)."""
    try:
        return bool(timeout > 0)
    except TypeError:
        return False


def bad_timeout(timeout: Any) -> InterfaceError:
    """The error for a per-call timeout that is not a number > 0 (0, negative, NaN):
    refused before sending, as ClientConfig refuses it, since such a call would be
    sent (a write applied) and then time out at once, or never time out (NaN)."""
    return InterfaceError(f"timeout must be a number of seconds > 0 or None, got {timeout!r}")


def check_ttl(ttl: Any) -> float | None:
    if ttl is None:
        return None
    # the same rule as protocol's validate_params, checked here so misuse fails locally
    if isinstance(ttl, bool) or not isinstance(ttl, int | float) or not 0 < ttl < math.inf:
        raise InterfaceError(f"ttl must be a finite number of seconds > 0, got {ttl!r}")
    return float(ttl)


def _flag(value: Any, name: str) -> bool:
    if type(value) is not bool:
        raise InterfaceError(f"{name} must be True or False, got {value!r}")
    return value


def _at_ms(at_ms: Any) -> int | None:
    if at_ms is None:
        return None
    if type(at_ms) is not int or not 1 <= at_ms <= MAX_EXPIRY_MS:
        raise InterfaceError(f"at_ms must be an int of ms since the epoch > 0, got {at_ms!r}")
    return at_ms


def set_params(
    c: Checks,
    key: Any,
    value: Any,
    nx: bool,
    xx: bool,
    get: bool,
    keep_ttl: bool,
    ttl: Any,
    at_ms: Any,
) -> list[Any]:
    """The params of `set`, checked locally (the same rules as the server's)."""
    opts: dict[str, Any] = {}
    for name, flag in (("nx", nx), ("xx", xx), ("get", get), ("keep_ttl", keep_ttl)):
        if _flag(flag, name):
            opts[name] = True
    if nx and xx:
        raise InterfaceError("nx and xx exclude each other")
    t, at = check_ttl(ttl), _at_ms(at_ms)
    if t is not None and at is not None:
        raise InterfaceError("give ttl or at_ms, not both")
    if keep_ttl and (t is not None or at is not None):
        raise InterfaceError("keep_ttl excludes ttl and at_ms")
    if t is not None:
        opts["ttl"] = t
    if at is not None:
        opts["at_ms"] = at
    params: list[Any] = [c._key(key), c._value(value)]
    return [*params, opts] if opts else params


def incr_params(c: Checks, key: Any, delta: Any) -> list[Any]:
    if type(delta) is not int or not -(2**63) <= delta < 2**63:
        raise InterfaceError(f"delta must be a signed 64-bit int, got {delta!r}")
    return [c._key(key)] if delta == 1 else [c._key(key), delta]


def float_params(c: Checks, key: Any, delta: Any) -> list[Any]:
    if isinstance(delta, bool) or not isinstance(delta, int | float) or not math.isfinite(delta):
        raise InterfaceError(f"delta must be a finite number, got {delta!r}")
    return [c._key(key), float(delta)]


def expire_params(c: Checks, key: Any, ttl: Any, at_ms: Any, cond: Any) -> list[Any]:
    t, at = check_ttl(ttl), _at_ms(at_ms)
    if (t is None) == (at is None):
        raise InterfaceError("give exactly one of ttl and at_ms (persist removes an expiry)")
    if cond not in EXPIRE_CONDITIONS:
        raise InterfaceError(f"cond must be one of {list(EXPIRE_CONDITIONS)}, got {cond!r}")
    opts: dict[str, Any] = {"ttl": t} if t is not None else {"at_ms": at}
    if cond:
        opts["cond"] = cond
    return [c._key(key), opts]


def rename_params(c: Checks, key: Any, new_key: Any, nx: Any) -> list[Any]:
    params: list[Any] = [c._key(key), c._key(new_key)]
    return [*params, {"nx": True}] if _flag(nx, "nx") else params
