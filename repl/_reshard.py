"""`bitcask reshard --from OLD.yml --to NEW.yml [--dry-run]`: move keys to their new shards.

Strategy / invariants:
- The two files are nutcracker configs; a shard is its *name* (what ketama
  hashes), its address is read from the file (the NEW file's, when a name is in
  both). Each shard is reached with the binary client on that address.
- Every OLD shard is scanned (cursor paging, so deleting behind the cursor is
  safe). A key whose owner on the NEW ring is another shard is moved in steps
  that are each safe to repeat: read value and remaining TTL from the old shard;
  read the key on the new shard: absent -> copy (one atomic batch per page,
  TTL kept); the same value -> a copy made by an earlier, interrupted run; a
  different value -> left alone on both sides and reported (the new owner's is
  never overwritten). Then the old shard is read again and the key deleted
  from it only if its value is still the one copied; else it is reported.
  So a rerun after an interruption (even SIGKILL) finishes the same move.
- Without optimistic transactions in the binary protocol the re-read and the
  delete are two calls: a write landing between them is lost. That is why the
  move runs with writes stopped (docs/scaling.md gives the order); the checks
  above catch, and report, writes that were not stopped.
- `--dry-run` only scans and prints how many keys would move per shard pair.

Exit status: 0 moved (or nothing to move); 1 some keys changed during the move
and were left in place (listed); 2 error (bad config, unreachable shard).
"""

from __future__ import annotations

import argparse
import asyncio
import sys
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TextIO

from client import Client, ClientError, NutcrackerPool, Ring, connect, read_nutcracker_config

from ._progress import Progress

__all__ = ["main", "reshard"]

PAGE = 1000
EXIT_OK, EXIT_CHANGED, EXIT_ERROR = 0, 1, 2


class ReshardError(Exception):
    """A config or a shard that makes the move impossible (nothing is changed)."""


@dataclass
class Report:
    """What a run did (or, dry, would do)."""

    scanned: int = 0
    moves: Counter[tuple[str, str]] = field(default_factory=Counter)
    already: int = 0  # copied by an earlier run, deleted from the old shard now
    expired: int = 0  # gone (TTL) between scan and copy
    changed: list[tuple[bytes, str]] = field(default_factory=list)

    @property
    def moved(self) -> int:
        return sum(self.moves.values())


def _pool(path: str, name: str | None) -> NutcrackerPool:
    try:
        pools = read_nutcracker_config(Path(path).read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError) as exc:
        raise ReshardError(f"cannot read {path}: {exc}") from exc
    except ClientError as exc:
        raise ReshardError(f"{path}: {exc}") from exc
    if name is not None:
        if name not in pools:
            raise ReshardError(f"{path}: no pool {name!r} (pools: {sorted(pools)})")
        return pools[name]
    if len(pools) != 1:
        raise ReshardError(f"{path}: {len(pools)} pools, choose one with --pool")
    return next(iter(pools.values()))


def _ring(pool: NutcrackerPool, path: str) -> Ring:
    try:
        return pool.ring()
    except ClientError as exc:
        raise ReshardError(f"{path}: {exc}") from exc


async def _connect(
    addresses: dict[str, str], auth: str | None, timeout: float
) -> dict[str, Client]:
    clients: dict[str, Client] = {}
    try:
        for name, address in addresses.items():
            host, _, port = address.rpartition(":")
            try:
                clients[name] = await connect(host, int(port), auth=auth, timeout=timeout)
            except ClientError as exc:
                raise ReshardError(f"shard {name} ({address}): {exc}") from exc
    except BaseException:
        await asyncio.gather(*(c.close() for c in clients.values()))
        raise
    return clients


async def _move_page(
    keys: list[bytes],
    source: str,
    new_ring: Ring,
    clients: dict[str, Client],
    report: Report,
    dry_run: bool,
) -> None:
    by_target: dict[str, list[bytes]] = {}
    for key in keys:
        target = new_ring.name_for(key)
        if target != source:
            by_target.setdefault(target, []).append(key)
    if dry_run:
        for target, ks in by_target.items():
            report.moves[(source, target)] += len(ks)
        return
    old = clients[source]
    for target, ks in by_target.items():
        new = clients[target]
        values = await old.mget(ks)
        ttls = await asyncio.gather(*(old.ttl(k) for k in ks))
        present = await new.mget(ks)
        copy: list[tuple[bytes, bytes, float | None]] = []
        copied: dict[bytes, bytes] = {}
        for key, value, ttl, there in zip(ks, values, ttls, present, strict=True):
            if value is None or ttl == -2:
                report.expired += 1
            elif there is None:
                copy.append((key, value, ttl if ttl > 0 else None))
                copied[key] = value
            elif there == value:
                report.already += 1
                copied[key] = value
            else:
                report.changed.append((key, f"{target} already holds another value"))
        if copy:
            async with new.batch() as b:
                for key, value, left in copy:
                    b.put(key, value, left)
        # delete from the old shard only what is still the value copied
        check = list(copied)
        now = await old.mget(check) if check else []
        gone: list[bytes] = []
        for key, value in zip(check, now, strict=True):
            if value == copied[key] or value is None:
                gone.append(key)
            else:
                report.changed.append((key, f"{source} changed after the copy"))
        if gone:
            async with old.batch() as b:
                for key in gone:
                    b.delete(key)
        report.moves[(source, target)] += len(copy)


async def reshard(
    old_path: str,
    new_path: str,
    *,
    pool: str | None = None,
    dry_run: bool = False,
    auth: str | None = None,
    timeout: float = 10.0,
    page: int = PAGE,
    progress: TextIO | None = None,
) -> Report:
    """Move every key whose owner differs between the two rings; see the module notes.

    Raises:
        ReshardError: a config cannot be read, or a shard cannot be reached.
        ClientError: a shard failed mid-way (rerun to finish the move).
    """
    old_pool, new_pool = _pool(old_path, pool), _pool(new_path, pool)
    old_ring, new_ring = _ring(old_pool, old_path), _ring(new_pool, new_path)
    addresses = {s.name: s.address for s in old_pool.servers}
    addresses.update({s.name: s.address for s in new_pool.servers})
    token = auth or new_pool.options.get("redis_auth") or None
    clients = await _connect(addresses, token, timeout)
    report = Report()
    try:
        stats = await asyncio.gather(*(clients[n].stats() for n in old_ring.names))
        total = sum(int(s.get("keys", 0)) for s in stats)
        bar = Progress("reshard", total, progress or sys.stderr)
        for source in old_ring.names:
            cursor: bytes | None = None
            while True:
                cursor, keys = await clients[source].scan_page(cursor=cursor, count=page)
                report.scanned += len(keys)
                await _move_page(keys, source, new_ring, clients, report, dry_run)
                bar.update(report.scanned)
                if cursor is None:
                    break
        bar.finish()
    finally:
        await asyncio.gather(*(c.close() for c in clients.values()))
    return report


def _print(report: Report, dry_run: bool, out: TextIO) -> None:
    verb = "would move" if dry_run else "moved"
    out.write(f"reshard: scanned {report.scanned} keys, {verb} {report.moved}\n")
    for (source, target), n in sorted(report.moves.items()):
        out.write(f"  {source} -> {target}: {n}\n")
    if report.already:
        out.write(f"  {report.already} copied by an earlier run, removed from their old shard\n")
    if report.expired:
        out.write(f"  {report.expired} expired during the move\n")
    for key, why in report.changed:
        out.write(f"  changed during the move, left in place: {key!r}: {why}\n")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="bitcask reshard",
        description="Move keys to the shards a new nutcracker config names "
        "(writes stopped; see docs/scaling.md).",
    )
    parser.add_argument("--from", dest="old", required=True, metavar="OLD.yml")
    parser.add_argument("--to", dest="new", required=True, metavar="NEW.yml")
    parser.add_argument("--pool", help="the pool, when a file has several")
    parser.add_argument("--dry-run", action="store_true", help="count, move nothing")
    parser.add_argument("--auth", metavar="TOKEN", help="the shards' token (default: redis_auth)")
    parser.add_argument("--timeout", type=float, default=10.0, help="seconds per call")
    parser.add_argument("--page", type=int, default=PAGE, help=f"keys per scan page ({PAGE})")
    return parser


def main(argv: Sequence[str]) -> int:
    """`bitcask reshard ...`; returns the exit status."""
    args = build_parser().parse_args(list(argv))
    try:
        report = asyncio.run(
            reshard(
                args.old,
                args.new,
                pool=args.pool,
                dry_run=args.dry_run,
                auth=args.auth,
                timeout=args.timeout,
                page=args.page,
            )
        )
    except (ReshardError, ClientError, OSError) as exc:
        sys.stderr.write(f"bitcask reshard: {exc}\n")
        return EXIT_ERROR
    except KeyboardInterrupt:
        return 130
    _print(report, args.dry_run, sys.stdout)
    return EXIT_CHANGED if report.changed else EXIT_OK
