"""A linearizability checker for histories of one register per key (Wing & Gong, with
Lowe's memo), and a recorder of real histories from clients in several threads.

A history is a list of `Call`s: who, what (kind, key, argument), what came back, and
when the call was invoked and answered (time.monotonic_ns() of the client, taken
before sending and after the reply arrived, so the server's real moment lies
between). A call that got no answer (the server died, a timeout, an I/O error) may
have taken effect or not: it is *pending* (`done=None`), free to be placed anywhere
after its invocation or left out.

The model of one key: its value (bytes, or None when absent). Kinds:

    read            -> the value
    write  v        -> True                 (put, SET, PUT /kv)
    delete          -> whether it existed   (delete, DEL's count, HTTP 204/404)
    incr   n        -> the new value (int); "NaN" when the value is not an integer
                       (nothing changes)
    setnx  v        -> whether v was stored (only when absent)

The check is per key (a key's calls never constrain another key's: P-compositionality),
each an exhaustive search: depth-first over the calls that may come next (invoked
before every unplaced call was answered), memoizing (placed set, value) pairs. A key
with about 30 calls is checked in milliseconds.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

__all__ = ["Call", "Recorder", "check", "check_key", "step"]

NAN = "NaN"  # the answer of an incr of a value that is not an integer


@dataclass
class Call:
    client: int
    kind: str  # read | write | delete | incr | setnx
    key: bytes
    arg: Any  # the value written, the increment
    invoked: int  # ns
    done: int | None = None  # ns; None: no answer (pending: may or may not have applied)
    result: Any = None

    def __repr__(self) -> str:
        end = "?" if self.done is None else f"{self.done / 1e6:.3f}"
        arg = "" if self.arg is None else f" {self.arg!r}"
        return (
            f"c{self.client} {self.kind}{arg} -> {self.result!r} [{self.invoked / 1e6:.3f}, {end}]"
        )


def step(kind: str, arg: Any, value: bytes | None) -> tuple[Any, bytes | None]:
    """The model: (the answer, the value after) of one call on `value`."""
    if kind == "read":
        return value, value
    if kind == "write":
        return True, arg
    if kind == "delete":
        return value is not None, None
    if kind == "setnx":
        return (True, arg) if value is None else (False, value)
    if kind == "incr":
        try:
            n = 0 if value is None else int(value)
        except ValueError:
            return NAN, value
        if value is not None and value != str(n).encode():
            return NAN, value  # "07", "+1", " 1": not Redis's integer form
        return n + arg, str(n + arg).encode()
    raise ValueError(f"unknown kind {kind!r}")


def check_key(calls: list[Call], initial: bytes | None = None) -> list[Call] | None:
    """None when the calls of one key are linearizable from `initial`; else the
    longest prefix of an order found before the search got stuck (for the message)."""
    calls = sorted(calls, key=lambda c: c.invoked)
    n = len(calls)
    if n > 80:
        raise ValueError(f"{n} calls on one key: too many to check exhaustively (at most 80)")
    never = 1 << 62
    ends = [never if c.done is None else c.done for c in calls]
    must = 0  # the answered calls: every one of them has to be placed
    for i, c in enumerate(calls):
        if c.done is not None:
            must |= 1 << i
    seen: set[tuple[int, bytes | None]] = set()
    best: list[int] = []
    # Iterative DFS: (placed mask, value, order so far).
    stack: list[tuple[int, bytes | None, list[int]]] = [(0, initial, [])]
    while stack:
        placed, value, order = stack.pop()
        if placed & must == must:
            return None
        if (placed, value) in seen:
            continue
        seen.add((placed, value))
        if len(order) > len(best):
            best = order
        # A call may come next if it was invoked before every unplaced call was answered.
        horizon = min((ends[i] for i in range(n) if not placed >> i & 1), default=never)
        for i in range(n):
            if placed >> i & 1 or calls[i].invoked > horizon:
                continue
            c = calls[i]
            answer, after = step(c.kind, c.arg, value)
            if c.done is not None and answer != c.result:
                continue
            stack.append((placed | 1 << i, after, [*order, i]))
    return [calls[i] for i in best]


def check(calls: Iterable[Call], initial: dict[bytes, bytes | None] | None = None) -> list[str]:
    """Check every key's calls; returns one message per key that is not linearizable
    (empty: the whole history is)."""
    by_key: dict[bytes, list[Call]] = {}
    for c in calls:
        by_key.setdefault(c.key, []).append(c)
    problems: list[str] = []
    for key, cs in sorted(by_key.items()):
        start = (initial or {}).get(key)
        stuck = check_key(cs, start)
        if stuck is not None:
            lines = "\n  ".join(map(repr, sorted(cs, key=lambda c: c.invoked)))
            placed = "\n  ".join(map(repr, stuck))
            problems.append(
                f"key {key!r} (initially {start!r}) is not linearizable:\n  {lines}\n"
                f"longest valid order:\n  {placed}"
            )
    return problems


@dataclass
class Recorder:
    """Collects calls from many client threads (the list is guarded by a lock)."""

    calls: list[Call] = field(default_factory=list)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def run(self, client: int, kind: str, key: bytes, arg: Any, fn: Callable[[], Any]) -> Any:
        """Time one call of `fn` (which returns the answer in the model's terms); an
        exception leaves the call pending and is raised again."""
        call = Call(client, kind, key, arg, time.monotonic_ns())
        with self._lock:
            self.calls.append(call)
        result = fn()
        call.done = time.monotonic_ns()
        call.result = result
        return result
