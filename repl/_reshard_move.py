"""How one group of keys moves between two shards, for `bitcask reshard` (_reshard.py).

Strategy / invariants (the steps are _reshard.py's module notes 1-3):
- A group is the keys of one scan page bound for one target shard, at most the
  smaller max_batch of the two, halved while its values do not fit one frame.
- The watch on the old shard is taken before the read; the copy is set-if-absent
  (never overwriting the new owner's value, except under --settle, where writes are
  stopped and the old shard's value is the last written); the delete commits only
  under that watch, else key by key under new ones (at most DELETE_ATTEMPTS).
- Every step is safe to repeat: a rerun after any interruption finishes the move.
"""

from __future__ import annotations

import asyncio
from collections import Counter
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass, field

from client import (
    CallTimeoutError,
    Client,
    ConnectError,
    ConnectionLostError,
    FrameTooLargeError,
    Ring,
    Transaction,
)

__all__ = ["AfterCopy", "Report", "ReshardError", "ShardUnreachableError", "move_page"]


class ReshardError(Exception):
    """A config or a shard that makes the move impossible (nothing is changed)."""


class ShardUnreachableError(ReshardError):
    """A shard stopped answering in the middle of a move (a rerun finishes it)."""


@dataclass
class Report:
    """What a run did (or, dry, would do)."""

    scanned: int = 0
    moves: Counter[tuple[str, str]] = field(default_factory=Counter)
    already: int = 0  # copied by an earlier run, deleted from the old shard now
    late: int = 0  # found on a shard that no longer owns them by the second pass
    # (name, the name it shares a server with, address): keys between them stay
    same_server: list[tuple[str, str, str]] = field(default_factory=list)
    expired: int = 0  # gone (TTL) between scan and copy
    changed: list[tuple[bytes, str]] = field(default_factory=list)
    # --settle: keys on two shards whose new owner's copy was replaced by the old
    # shard's value (or removed, the old one deleted) before the old one was deleted
    settled: int = 0
    # (key, shard): a copy left on `shard` of a key deleted from its old shard after
    # the copy; a rerun cannot see it (it scans the old shards), so it is named
    stale_copies: list[tuple[bytes, str]] = field(default_factory=list)
    addresses: dict[str, str] = field(default_factory=dict)  # shard name -> host:port

    @property
    def moved(self) -> int:
        return sum(self.moves.values())


AfterCopy = Callable[[str, str, list[bytes]], Awaitable[None]]

DELETE_ATTEMPTS = 8

Copied = tuple[bytes, bool]  # the value copied, and whether it had a TTL


async def move_page(
    keys: list[bytes],
    source: str,
    new_ring: Ring,
    clients: dict[str, Client],
    report: Report,
    dry_run: bool,
    after_copy: AfterCopy | None = None,
    server_of: dict[str, str] | None = None,
    settle: bool = False,
) -> None:
    same = server_of or {}
    by_target: dict[str, list[bytes]] = {}
    for key in keys:
        target = new_ring.name_for(key)
        if same.get(target, target) != same.get(source, source):
            by_target.setdefault(target, []).append(key)
    if dry_run:
        for target, ks in by_target.items():
            report.moves[(source, target)] += len(ks)
        return
    old = clients[source]
    for target, ks in by_target.items():
        new = clients[target]
        limit = min(old.limits.max_batch, new.limits.max_batch)
        for start in range(0, len(ks), limit):
            await _move_keys(ks[start : start + limit], source, target, old, new, report,
                             after_copy, settle)  # fmt: skip


async def _move_keys(
    ks: list[bytes],
    source: str,
    target: str,
    old: Client,
    new: Client,
    report: Report,
    after_copy: AfterCopy | None,
    settle: bool = False,
) -> None:
    """`_move_group`, in halves while a group's values do not fit one frame (the
    mget's reply refused by the server, or the copy's commit by the client): every
    step of a move is safe to repeat, so a half starts over from its watch."""
    counts = (report.moves[(source, target)], report.already, report.expired, len(report.changed),
              report.settled, len(report.stale_copies))  # fmt: skip
    try:
        await _move_group(ks, source, target, old, new, report, after_copy, settle)
    except (CallTimeoutError, ConnectionLostError, ConnectError) as exc:
        raise ShardUnreachableError(f"moving keys from {source} to {target}: {exc}") from exc
    except FrameTooLargeError:
        if len(ks) == 1:
            raise
        # the halves count again what this attempt counted before it failed
        report.moves[(source, target)], report.already, report.expired = counts[:3]
        del report.changed[counts[3] :]
        report.settled = counts[4]
        del report.stale_copies[counts[5] :]
        half = len(ks) // 2
        await _move_keys(ks[:half], source, target, old, new, report, after_copy, settle)
        await _move_keys(ks[half:], source, target, old, new, report, after_copy, settle)


async def _move_group(
    ks: list[bytes],
    source: str,
    target: str,
    old: Client,
    new: Client,
    report: Report,
    after_copy: AfterCopy | None,
    settle: bool = False,
) -> None:
    """Copy `ks` from `old` to `new` and delete them from `old` if unchanged since read.

    `settle` (writes stopped, every writer on the old config until now): a copy
    already on `new` with another value or TTL is an older one (a key written on
    its old shard after an earlier run copied it), so the old shard's replaces it."""
    # The watch is taken before the read: the delete below commits only if no key of
    # the group was written on the old shard since.
    watch = old.transaction(*ks)
    await watch.watch()
    try:
        values = await old.mget(ks)
        ttls = await asyncio.gather(*(old.ttl(k) for k in ks))
        # copy without ever overwriting: a set-if-absent per key, one atomic commit
        copy = new.transaction()
        offered: list[tuple[bytes, Copied]] = []
        offered_ttl: dict[bytes, float] = {}
        for key, value, ttl in zip(ks, values, ttls, strict=True):
            if value is None or ttl == -2:
                report.expired += 1
            else:
                copy.set(key, value, nx=True, ttl=ttl if ttl > 0 else None)
                offered.append((key, (value, ttl > 0)))
                offered_ttl[key] = ttl
        done = await copy.commit() if offered else []
        assert done is not None  # no watch: a commit without one always applies
        copied: dict[bytes, Copied] = {}
        present: list[tuple[bytes, Copied]] = []
        for (key, item), applied in zip(offered, done, strict=True):
            if applied is True:
                copied[key] = item
                report.moves[(source, target)] += 1
            else:
                present.append((key, item))
        there = await new.mget([k for k, _ in present]) if present else []
        there_ttls = await asyncio.gather(*(new.ttl(k) for k, _ in present))
        replace = new.transaction()
        replaced: dict[bytes, Copied] = {}
        for (key, item), held, ttl in zip(present, there, there_ttls, strict=True):
            if held == item[0] and (ttl > 0) == item[1]:
                report.already += 1  # copied by an earlier, interrupted run
                copied[key] = item
            elif settle:
                value, i = item[0], offered_ttl[key]
                replace.set(key, value, ttl=i if i > 0 else None)
                replaced[key] = item
            elif held == item[0]:
                report.changed.append((key, f"{target} already holds it with another TTL"))
            else:
                report.changed.append((key, f"{target} already holds another value"))
        if replaced:
            await replace.commit()  # no watch: writes are stopped (--settle's condition)
            report.settled += len(replaced)
            copied.update(replaced)
        if after_copy is not None:
            await after_copy(source, target, list(copied))
        if await _delete_watched(watch, copied):
            return
    except BaseException:
        if watch.watched:
            await watch.discard()
        raise
    await _delete_unchanged(old, source, copied, report, new if settle else None, target)


async def _delete_watched(watch: Transaction, keys: Iterable[bytes]) -> bool:
    """End ``watch`` by deleting ``keys`` under it (only releasing it when there are
    none). True when done; False when a watched key was written meanwhile."""
    keys = list(keys)
    if not keys:
        await watch.discard()
        return True
    for key in keys:
        watch.delete(key)
    return await watch.commit() is not None


async def _delete_unchanged(
    old: Client,
    source: str,
    copied: dict[bytes, Copied],
    report: Report,
    settle_on: Client | None = None,
    target: str = "",
) -> None:
    """Some key of the group was written on the old shard after it was read: report
    those whose value (or whether it has a TTL) is no longer the one copied, and those
    deleted there meanwhile; delete the rest under a new watch. A copy whose old key
    was deleted is named (`stale_copies`), or with `settle_on` (the new owner, under
    --settle) deleted there too: the delete was the last write."""
    left = dict(copied)
    for _ in range(DELETE_ATTEMPTS):
        watch = old.transaction(*left)
        await watch.watch()
        try:
            keys = list(left)
            now = await old.mget(keys)
            ttls = await asyncio.gather(*(old.ttl(k) for k in keys))
            for key, current, ttl in zip(keys, now, ttls, strict=True):
                value, had_ttl = left[key]
                why = ""
                if current is None or ttl == -2:
                    if not had_ttl and settle_on is not None:
                        await settle_on.delete(key)
                        report.settled += 1
                    elif not had_ttl:  # else it expired, as it would have on the new shard
                        why = f"deleted from {source} after the copy (the copy is kept)"
                        report.stale_copies.append((key, target))
                elif current != value:
                    why = f"{source} changed after the copy"
                elif (ttl > 0) != had_ttl:
                    why = f"its TTL on {source} changed after the copy"
                else:
                    continue
                if why:
                    report.changed.append((key, why))
                del left[key]
            if await _delete_watched(watch, left):
                return
        except BaseException:
            if watch.watched:
                await watch.discard()
            raise
    for key in left:
        report.changed.append((key, f"{source} kept changing; not deleted"))
