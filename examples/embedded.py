"""The storage engine inside your own program: `import bitcask`, no server.

Run it:

    python examples/embedded.py            # works in a temporary directory, removed after
    python examples/embedded.py scratch/embedded  # or in a directory you name (kept; must be new)

It needs no server (the engine is a library: one process opens a store for
writing, and takes the directory's lock). It walks through put/get, a batch,
atomic read-modify-write (incr, set nx, append, a watched commit, rename), TTLs
(with a fake clock, so it never sleeps), paging with scan, merge, stats,
backup and reopening, printing what each step returns, and exits.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
from pathlib import Path

import bitcask


class FakeClock:
    """Seconds since the epoch, advanced by hand: TTLs without sleeping."""

    def __init__(self) -> None:
        self.now = 1_700_000_000.0

    def __call__(self) -> float:
        return self.now


def tour(root: Path) -> None:
    path = root / "store"
    clock = FakeClock()
    # sync="always": every put is fsynced before it returns (the server's default).
    # Small files so that this short run has several files to merge.
    with bitcask.open(path, sync="always", max_file_size=4096, clock=clock) as db:
        print("== put, get, delete")
        db.put(b"user:1", b"Ada")
        db.put("user:2", "Grace")  # str keys and values are UTF-8 encoded
        print("get user:1 ->", db.get(b"user:1"))
        print("get user:9 ->", db.get(b"user:9"))
        print("'user:2' in db ->", "user:2" in db, "| len(db) ->", len(db))
        print("delete user:2 ->", db.delete(b"user:2"), "| again ->", db.delete(b"user:2"))

        print("== an atomic batch: all of it or none of it, even after a crash")
        with db.batch() as b:
            b.put(b"account:alice", b"90")
            b.put(b"account:bob", b"110")
            b.delete(b"user:1")
        print("after the batch ->", dict(db.items(b"account:")), "| user:1 ->", db.get(b"user:1"))

        print("== read-modify-write, decided atomically by the one writer")
        print("incr visits ->", db.incr(b"visits"), db.incr(b"visits", 10))
        print("set lock nx ->", db.set(b"lock", b"me", nx=True, ttl=30))
        print("set lock nx again ->", db.set(b"lock", b"you", nx=True))
        print("append log ->", db.append(b"log", b"a"), db.append(b"log", b"b"))
        with db.watch(b"account:alice") as w:  # optimistic: commit only if unchanged
            balance = int(db.get(b"account:alice") or b"0")
            db.put(b"account:alice", b"95")  # someone else writes meanwhile
            done = db.commit([("put", b"account:alice", str(balance - 10))], watch=w)
        print("commit after a concurrent write ->", done)
        print("rename log -> journal:", db.rename(b"log", b"journal"), db.get(b"journal"))

        print("== time to live")
        db.put(b"session:42", b"cart=3", ttl=30)
        print("ttl session:42 ->", db.ttl(b"session:42"), "| no TTL ->", db.ttl(b"account:bob"))
        clock.now += 31
        print("31 s later: get ->", db.get(b"session:42"), "| in db ->", b"session:42" in db)

        print("== paging through keys with scan")
        for i in range(250):
            db.put(f"item:{i:04d}", f"value {i}" * 5)
        pages, after = 0, None
        while page := db.scan(b"item:", after=after, limit=100):
            pages, after = pages + 1, page[-1]
            print(f"page {pages}: {len(page)} keys, {page[0]!r} .. {page[-1]!r}")

        print("== overwrite everything, then merge to reclaim the dead bytes")
        for i in range(250):
            db.put(f"item:{i:04d}", f"new {i}")
        before = db.stats()
        report = db.merge()
        after_stats = db.stats()
        print(
            f"dead bytes {before['dead_bytes']} -> {after_stats['dead_bytes']};"
            f" disk {before['disk_bytes']} -> {after_stats['disk_bytes']} bytes"
        )
        print(
            f"merged {len(report.inputs)} files: {report.records_copied} records copied,"
            f" {report.records_dropped} dropped ({report.expired_dropped} expired)"
        )
        print("keys after merge ->", after_stats["keys"], "| item:0007 ->", db.get("item:0007"))

        print("== backup: a consistent copy that opens as a store")
        db.backup(root / "backup")
        db.put(b"after-backup", b"not in the copy")

    with bitcask.open(root / "backup", readonly=True) as copy:
        print("backup keys ->", len(copy), "| after-backup ->", copy.get(b"after-backup"))
    print("check backup ->", "OK" if bitcask.check(root / "backup").ok else "PROBLEMS")

    print("== reopen: the keydir is rebuilt from hint files")
    with bitcask.open(path) as db:
        recovery = db.stats()["recovery"]
        print("keys ->", len(db), "| hinted files ->", recovery["hinted_files"] > 0)
        print("torn bytes truncated ->", recovery["truncated_bytes"])


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(
        prog="python examples/embedded.py", description=__doc__.splitlines()[0]
    )
    parser.add_argument(
        "directory",
        nargs="?",
        type=Path,
        help="a new directory to keep the store in (default: a temporary one, removed after)",
    )
    args = parser.parse_args(argv)
    if args.directory is not None:
        root = args.directory
        if root.exists() and any(root.iterdir()):
            print(f"embedded: {root} is not empty; name a new directory", file=sys.stderr)
            return 2
        root.mkdir(parents=True, exist_ok=True)
        tour(root)
        print(f"the store is in {os.fspath(root / 'store')}")
        return 0
    with tempfile.TemporaryDirectory(prefix="bitcask-example-") as tmp:
        tour(Path(tmp))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
