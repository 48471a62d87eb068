"""`bitcask reshard --from OLD.yml --to NEW.yml [--dry-run]`: move keys to their new shards.

Strategy / invariants:
- The two files are nutcracker configs; a shard is its *name* (what ketama
  hashes), its address is read from the file (the NEW file's, when a name is in
  both). Each shard is reached with the binary client on that address.
- Every OLD shard is scanned (cursor paging, so deleting behind the cursor is
  safe). The keys of a page whose owner on the NEW ring is another shard are
  moved in groups (one per target shard, at most max_batch keys, halved while
  their values do not fit one frame), each in steps that are safe to repeat:
  1. watch the group's keys on the old shard (an optimistic transaction), then
     read their values and remaining TTLs;
  2. copy them to the new shard as set-if-absent (`nx`), one atomic commit, TTL
     kept: the new owner's value is never overwritten. A key already there with
     the same value (and a TTL if it has one) is a copy made by an earlier,
     interrupted run; otherwise it is left alone on both sides and reported;
  3. delete the copied keys from the old shard in one commit under the watch of
     step 1: it applies only if none of them was written since it was read. If
     one was, the group is checked again key by key (a key whose value, or
     whether it has a TTL, is no longer the one copied, or that was deleted,
     is reported and kept; the rest are deleted under a new watch).
  So a write on the old shard that lands before the delete is never deleted
  with it, and a rerun after an interruption (even SIGKILL) finishes the same
  move. (One group's move: `_reshard_move.py`.)
- Writes are meant to be stopped (docs/scaling.md gives the order). When they
  were not, a key can be written on its old shard after its group moved (or
  behind the scan's cursor): so once every shard is scanned, a second pass scans
  them again and moves what it finds there that another shard owns now (`late`;
  a key whose new owner already holds another value is reported and kept on
  both). Such a run ends with status 1. Writes after that second pass, and
  deletes of keys already moved, cannot be seen: hence writes stopped first.
- A shard is also a server: two names whose addresses resolve to one server (a
  renamed shard, or a new line whose address was left unchanged), or that show
  the same non-empty store in their stats, are one shard with two names. It is scanned once, and a key whose owner changes between
  them stays where it is (copying it to itself and deleting the "old" copy would
  delete it).
- `--dry-run` only scans and prints how many keys would move per shard pair.
- What a run lists, it says how to settle, as lines to paste: a key on two shards
  (the old one written after the copy) by a rerun with `--settle`, which, writes
  stopped and every writer on the old config until now, gives the new owner the
  old shard's value (the last written) and deletes the old one; a copy left of a
  key deleted from its old shard after the copy (which no rerun can see, the old
  shards no longer hold it) by `bitcask ... delete KEY` on its shard. `--settle` on
  the run that sees such a delete deletes the copy itself.

Exit status: 0 moved (or nothing to move, or everything settled); 1 some keys
changed during the move and were left in place (listed, with what to run), or were
written during it (`late`); 2 error (bad config, unreachable shard); 130 interrupted
(Ctrl-C), 143 stopped by SIGTERM, either saying that a rerun finishes it.
"""

from __future__ import annotations

import argparse
import asyncio
import shlex
import socket
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any, TextIO

from client import (
    AuthFailedError,
    AuthRequiredError,
    CallTimeoutError,
    Client,
    ClientError,
    ConnectError,
    ConnectionLostError,
    NutcrackerPool,
    RedisPortError,
    Ring,
    answers_resp_after,
    connect,
    read_nutcracker_config,
)

from ._progress import Progress
from ._reshard_move import AfterCopy, Report, ReshardError, ShardUnreachableError, move_page
from ._signals import Interrupted, stoppable

__all__ = ["main", "reshard"]

PAGE = 1000
EXIT_OK, EXIT_CHANGED, EXIT_ERROR = 0, 1, 2
RERUN = "the keys moved so far are in place, run the same command again to finish the move"


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
            except (ConnectError, CallTimeoutError) as exc:
                if isinstance(exc, RedisPortError) and exc.redis_server:  # at once
                    raise ReshardError(
                        f"shard {name} ({address}) is a Redis server, not a bitcask-server: "
                        "nothing was moved; reshard moves keys between bitcask-servers (their "
                        "binary port): correct its address in the config"
                    ) from exc
                # down or wedged, before any move: say so, and what to do; a RESP answer
                # (twemproxy, a Redis with a password) is a wrong address
                if await answers_resp_after(exc, host, int(port), timeout):
                    failed = exc.__cause__ if isinstance(exc, RedisPortError) else exc
                    raise ReshardError(
                        f"shard {name} ({address}): {failed}; it answers the Redis protocol, "
                        "not bitcask's: nothing was moved; correct its address in the config"
                    ) from exc
                raise ReshardError(
                    f"shard {name} ({address}): {exc}; nothing was moved: start it (or correct "
                    "its address in the config), then run the same command again"
                ) from exc
            except (AuthRequiredError, AuthFailedError) as exc:
                # the CLI's words, not the client API's ("pass auth= to connect()")
                why = "needs a token" if isinstance(exc, AuthRequiredError) else "refused the token"
                raise ReshardError(
                    f"shard {name} ({address}) {why}: nothing was moved; give the shards' "
                    "token with --auth TOKEN (or redis_auth in the new config)"
                ) from exc
            except ClientError as exc:  # another protocol version...
                raise ReshardError(f"shard {name} ({address}): {exc}; nothing was moved") from exc
    except BaseException:
        await asyncio.gather(*(c.close() for c in clients.values()))
        raise
    return clients


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
    after_copy: AfterCopy | None = None,
    settle: bool = False,
) -> Report:
    """Move every key whose owner differs between the two rings; see the module notes.

    `after_copy(source, target, keys)`, if given, is awaited after each group of keys
    is on its new shard and before it is deleted from the old one (tests use it to
    write in that window, or to stop the run there). `settle` (writes stopped, every
    writer on the old config until now): a key on two shards takes its old shard's
    value (`_move_group`), instead of being listed.

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
    try:
        server_of = await _same_servers(addresses, clients)
    except BaseException:
        await asyncio.gather(*(c.close() for c in clients.values()))
        raise
    report = Report(addresses=addresses)
    report.same_server = [(n, c, addresses[n]) for n, c in server_of.items() if n != c]
    # each server is scanned once, under the first name that reaches it
    sources = [n for n in old_ring.names if server_of[n] == n]
    try:
        stats = await asyncio.gather(*(clients[n].stats() for n in sources))
        total = sum(int(s.get("keys", 0)) for s in stats)
        bar = Progress("reshard", total, progress or sys.stderr)
        for source in sources:
            cursor: bytes | None = None
            while True:
                cursor, keys = await clients[source].scan_page(cursor=cursor, count=page)
                report.scanned += len(keys)
                await move_page(keys, source, new_ring, clients, report, dry_run, after_copy,
                                 server_of, settle)  # fmt: skip
                bar.update(report.scanned)
                if cursor is None:
                    break
        bar.finish()
        if not dry_run:
            await _second_pass(sources, new_ring, clients, report, page, after_copy, server_of,
                               settle)  # fmt: skip
    finally:
        await asyncio.gather(*(c.close() for c in clients.values()))
    return report


async def _second_pass(
    sources: list[str],
    new_ring: Ring,
    clients: dict[str, Client],
    report: Report,
    page: int,
    after_copy: AfterCopy | None,
    server_of: dict[str, str],
    settle: bool = False,
) -> None:
    """Scan every old shard again for keys another shard owns now: written during the
    first pass (writes were not stopped). Keys already reported are left alone."""
    reported = {key for key, _ in report.changed}
    for source in sources:
        cursor: bytes | None = None
        while True:
            cursor, keys = await clients[source].scan_page(cursor=cursor, count=page)
            late = [
                k for k in keys if k not in reported and server_of[new_ring.name_for(k)] != source
            ]
            report.late += len(late)
            await move_page(late, source, new_ring, clients, report, False, after_copy,
                             server_of, settle)  # fmt: skip
            if cursor is None:
                break


async def _same_servers(addresses: dict[str, str], clients: dict[str, Client]) -> dict[str, str]:
    """name -> the first name that reaches the same server (itself if none).

    Two names on one server (a renamed shard, or a new line whose address was not
    changed): a key "moving" between them is already where it must be. Copied as
    set-if-absent it would be found there, taken for the copy of an earlier run and
    deleted from the old name, that is from the only server holding it. One server:
    addresses that resolve to a common one, or (another address of the same host, a
    port forward) the same store seen by both, non-empty: same data directory, key
    count, byte counts and files."""
    loop = asyncio.get_running_loop()
    resolved: dict[str, set[tuple[str, int]]] = {}
    for name, address in addresses.items():
        host, _, port = address.rpartition(":")
        try:
            infos = await loop.getaddrinfo(host, int(port), type=socket.SOCK_STREAM)
        except (OSError, ValueError) as exc:
            raise ReshardError(f"shard {name} ({address}): {exc}") from exc
        resolved[name] = {(str(info[4][0]), int(info[4][1])) for info in infos}
    stats = await asyncio.gather(*(clients[n].stats() for n in addresses))
    store = {n: _store_of(st) for n, st in zip(addresses, stats, strict=True)}
    server_of: dict[str, str] = {}
    for name, found in resolved.items():
        first = (
            n
            for n, c in server_of.items()
            if c == n and (resolved[n] & found or (store[n] and store[n] == store[name]))
        )
        server_of[name] = next(first, name)
    return server_of


def _store_of(stats: dict[str, object]) -> str:
    """What identifies a non-empty store in its stats ("" for an empty one)."""
    if not stats.get("keys"):
        return ""
    fields = ("path", "keys", "live_bytes", "dead_bytes", "disk_bytes", "files", "active_file")
    return repr([stats.get(f) for f in fields])


def _print(report: Report, dry_run: bool, out: TextIO) -> None:
    verb = "would move" if dry_run else "moved"
    out.write(f"reshard: scanned {report.scanned} keys, {verb} {report.moved}\n")
    for name, other, address in report.same_server:
        out.write(f"  {name} is the server of {other} ({address}): keys between them stay\n")
    for (source, target), n in sorted(report.moves.items()):
        out.write(f"  {source} -> {target}: {n}\n")
    if report.already:
        out.write(f"  {report.already} copied by an earlier run, removed from their old shard\n")
    if report.expired:
        out.write(f"  {report.expired} expired during the move\n")
    if report.late:
        out.write(
            f"  {report.late} written during the move on a shard that no longer owns them "
            "(writes were not stopped?), moved by a second pass or listed below\n"
        )
    for key, why in report.changed:
        out.write(f"  changed during the move, left in place: {key!r}: {why}\n")
    if report.settled:
        out.write(f"  {report.settled} on two shards settled: the old shard's value kept\n")


def _settle_hint(report: Report, command: str, out: TextIO) -> None:
    """What to run about the keys a run listed: exactly, as a line to paste."""
    stale = {key for key, _ in report.stale_copies}
    on_both = sum(1 for key, _ in report.changed if key not in stale)
    if on_both:
        out.write(
            f"to settle the {on_both} key(s) listed on two shards (the old shard's value was "
            "written last, as long as every writer used the old config): stop the writers, "
            f"then run\n  {command} --settle\n"
        )
    if stale:
        out.write(
            f"{len(stale)} key(s) were deleted from their old shard after their copy, which "
            "a rerun cannot see; with the writers stopped, delete the copies:\n"
        )
    for key, shard in report.stale_copies:
        host, _, port = report.addresses.get(shard, "?:?").rpartition(":")
        try:
            name = key.decode("utf-8")
        except UnicodeDecodeError:
            name = ""
        if name.isprintable() and name and not name.startswith("-"):
            out.write(f"  bitcask --host {host} --port {port} delete {shlex.quote(name)}\n")
        else:  # not a word a shell can pass as typed: the client's delete takes bytes
            out.write(f"  {key!r} on {shard} ({host}:{port}): delete it with the client\n")


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
    parser.add_argument(
        "--settle",
        action="store_true",
        help="writers stopped, all on the old config until now: a key on two shards "
        "(listed by an earlier run) takes its old shard's value",
    )
    parser.add_argument("--auth", metavar="TOKEN", help="the shards' token (default: redis_auth)")
    parser.add_argument("--timeout", type=float, default=10.0, help="seconds per call")
    parser.add_argument("--page", type=int, default=PAGE, help=f"keys per scan page ({PAGE})")
    return parser


def _command(args: argparse.Namespace) -> str:
    """This run's command line, to run again (the token itself never printed)."""
    words = ["bitcask", "reshard", "--from", args.old, "--to", args.new]
    if args.pool:
        words += ["--pool", args.pool]
    if args.auth:
        words += ["--auth", "TOKEN"]
    if args.timeout != 10.0:
        words += ["--timeout", f"{args.timeout:g}"]
    return " ".join(shlex.quote(w) if w != "TOKEN" else w for w in words)


async def _stoppable(*args: Any, **kwargs: Any) -> Report:
    """reshard(...), stopped by Ctrl-C or SIGTERM alike (130 / 143, `_signals.py`):
    SIGTERM's default had ended the process in silence, the move half done."""
    with stoppable():
        return await reshard(*args, **kwargs)


def main(argv: Sequence[str]) -> int:
    """`bitcask reshard ...`; returns the exit status."""
    args = build_parser().parse_args(list(argv))
    try:
        report = asyncio.run(
            _stoppable(
                args.old,
                args.new,
                pool=args.pool,
                dry_run=args.dry_run,
                auth=args.auth,
                timeout=args.timeout,
                page=args.page,
                settle=args.settle,
            )
        )
    except (ShardUnreachableError, CallTimeoutError, ConnectionLostError, ConnectError) as exc:
        # a shard unreachable mid-move: every step is safe to repeat (module docstring)
        sys.stderr.write(f"bitcask reshard: {exc}; stopped: {RERUN}\n")
        return EXIT_ERROR
    except (ReshardError, ClientError, OSError) as exc:
        sys.stderr.write(f"bitcask reshard: {exc}\n")
        return EXIT_ERROR
    except (KeyboardInterrupt, Interrupted) as exc:
        # Ctrl-C or SIGTERM mid-move: the operator must learn the move is half done, and
        # how to finish (on a terminal, after the progress bar's line)
        newline = "\n" if sys.stderr.isatty() else ""
        sys.stderr.write(f"{newline}bitcask reshard: interrupted: {RERUN}\n")
        return exc.exit_code if isinstance(exc, Interrupted) else 130
    _print(report, args.dry_run, sys.stdout)
    if not args.dry_run:
        _settle_hint(report, _command(args), sys.stdout)
    return EXIT_CHANGED if report.changed or report.late else EXIT_OK
