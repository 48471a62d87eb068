"""How many bytes of values a reply would hold, sized before anything is read.

Strategy: a reply's values are bounded by --max-reply-bytes (Redis's
client-output-buffer-limit; on the binary port also the frame) before the store is
read, from the keydir (`Bitcask.value_bytes`: no value is loaded), by one rule for
both dialects: an MGET / mget (`values_over`), the ops of one batch or EXEC
(`batch_values`, then `sizes_over`), the replies of one EXEC. One value alone is
bounded by max_value_size, so only replies of two parts or more are refused, with
`reply_too_large`'s text. Without it an mget of one 64 MiB key named 1,000 times
read 64 GB. Used by server/_dispatch.py (binary) and the Redis handlers
(server/_redis_strings.py, server/_redis_transactions.py, server/_redis_replies.py).
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import bitcask

__all__ = ["batch_values", "reply_too_large", "sizes_over", "values_over"]


def values_over(db: Any, keys: list[bytes], limit: int) -> int:
    """The reply bound of both dialects, one rule: the bytes of values reading `keys`
    would hold (a key named twice counts twice), sized from the keydir before any
    value is read (Bitcask.value_bytes); 0 when they fit `limit` (--max-reply-bytes;
    for the binary port also --max-frame). One key is bounded by max_value_size.
    Without it an mget of one 64 MiB key named 1,000 times read 64 GB."""
    if len(keys) < 2:
        return 0
    size: int = db.value_bytes(keys)
    return size if size > limit else 0


def sizes_over(sizes: Iterable[int], limit: int) -> int:
    """values_over's rule for parts already sized (the ops of one batch, the replies of
    one EXEC): their sum when it exceeds `limit` and more than one part holds bytes
    (one value alone is bounded by max_value_size, one walk by its own rule), else 0."""
    total = parts = 0
    for size in sizes:
        if size:
            total += size
            parts += 1
    return total if total > limit and parts > 1 else 0


def batch_values(db: Any, ops: Iterable[Any], max_value: int) -> list[int]:
    """Per op of one engine batch (a binary commit, a Redis EXEC), the most bytes of
    values its result holds until the reply is built: the value a GetEx or GetDel
    reads, the old value a Set reads (returned with `get`, held by the writer's results
    either way: a commit of 300 `set nx` of a 1 MiB key held 300 MiB). Sized as
    values_over sizes, from the keydir (no value is read), plus what the batch's own
    earlier ops may have put in the key (put, Set, Append, MSetNx, Rename onto it,
    counted whole; a counter 64 bytes), each at most max_value. Other ops: 0."""
    kd = db.value_bytes
    grown: dict[bytes, int] = {}
    sizes = []
    for op in ops:
        n = 0
        if type(op) is tuple:  # ("put", key, value, ttl) | ("delete", key)
            if op[0] == "put":
                grown[op[1]] = grown.get(op[1], 0) + len(op[2])
            sizes.append(0)
            continue
        kind, key = type(op), getattr(op, "key", b"")
        if kind is bitcask.GetEx or kind is bitcask.GetDel or kind is bitcask.Set:
            n = min(kd((key,)) + grown.get(key, 0), max_value)
        if kind is bitcask.Set:
            grown[key] = grown.get(key, 0) + len(op.value)
        elif kind is bitcask.Append:
            grown[key] = grown.get(key, 0) + len(op.suffix)
        elif kind is bitcask.MSetNx:
            for k, v in op.pairs:
                grown[k] = grown.get(k, 0) + len(v)
        elif kind is bitcask.Rename:
            moved = kd((key,)) + grown.get(key, 0)
            grown[op.dst] = grown.get(op.dst, 0) + moved
        elif kind is bitcask.Incr or kind is bitcask.IncrFloat:
            grown[key] = grown.get(key, 0) + 64  # a number's digits
        sizes.append(n)
    return sizes


def reply_too_large(size: int, limit: int, what: str = "values") -> str:
    """The refusal's text (binary: FRAME_TOO_LARGE's message; RESP: after "ERR ")."""
    return (
        f"reply of {size} bytes of {what} exceeds max-reply-bytes {limit} "
        "(client-output-buffer-limit): ask for fewer keys at a time"
    )
