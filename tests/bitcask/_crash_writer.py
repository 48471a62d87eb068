"""Child process of tests/bitcask/test_crash.py: write as fast as possible, report each ack.

    python tests/bitcask/_crash_writer.py DIR --sync always --seed 7 [--merge | --reopen-every N | --auto-merge | --big-batches]

Protocol on stdout (a pipe), one line per event, written with a single os.write so
nothing sits in a user-space buffer when the parent SIGKILLs us:

    ready                       the store is open
    ? <op>                      about to call the engine for <op>
    ! <op>                      the call returned: <op> is acknowledged
    merge-start / merge-done    (with --merge) a merge began / finished in the worker thread
    mismatch ...                a put or delete did not read back (then exit status 3)
    reader-error ...            (with --merge) a reader thread's get/scan raised (exit 4)
    auto-merges N               (with --auto-merge) the engine has merged by itself N times

<op> is `put KEY VALUE`, `del KEY` or `batch ITEM ITEM ...` with ITEM `p:KEY:VALUE` or
`d:KEY`. Keys are printable ASCII without spaces or colons; VALUE is a token
`HEAD/N` standing for HEAD followed by N filler bytes (see value_of), so a line
stays short even for megabyte batches. Exactly one
op is in flight at a time (the main thread is the only writer), so the parent knows
the only write whose fate is open: the last `?` without its `!`.

With --merge, a prefill makes garbage across many small files, then a worker thread
runs db.merge() in a loop and another reads, while the main thread keeps writing.
"""

from __future__ import annotations

import argparse
import os
import random
import sys
import threading
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

import bitcask

KEYSPACE = 400


def emit(line: str) -> None:
    os.write(1, (line + "\n").encode())


def value_of(token: str) -> bytes:
    """The value a transcript token stands for: "HEAD/N" is HEAD then N filler bytes."""
    head, n = token.rsplit("/", 1)
    return head.encode() + b"z" * int(n)


def read_back(db: bitcask.Bitcask, key: str, token: str | None) -> None:
    """Read-your-writes, even while a merge swaps files underneath: else exit 3."""
    got = db.get(key.encode())
    if got != (None if token is None else value_of(token)):
        emit(f"mismatch {key} {token} {(got or b'')[:40]!r}")
        os._exit(3)


def do_put(db: bitcask.Bitcask, rng: random.Random, seq: int) -> None:
    key = f"k{rng.randrange(KEYSPACE):04d}"
    token = f"v{seq}./{rng.randrange(0, 300)}"
    op = f"put {key} {token}"
    emit("? " + op)
    db.put(key.encode(), value_of(token), ttl=3600.0 if rng.random() < 0.1 else None)
    emit("! " + op)
    read_back(db, key, token)


def do_delete(db: bitcask.Bitcask, rng: random.Random) -> None:
    key = f"k{rng.randrange(KEYSPACE):04d}"
    op = f"del {key}"
    emit("? " + op)
    db.delete(key.encode())
    emit("! " + op)
    read_back(db, key, None)


def do_batch(db: bitcask.Bitcask, rng: random.Random, seq: int, size: int, fill: int = 80) -> None:
    items: list[str] = []
    ops: list[tuple[str, bytes, bytes, None] | tuple[str, bytes]] = []
    for i in range(size):
        key = f"k{rng.randrange(KEYSPACE):04d}"
        if rng.random() < 0.25:
            items.append(f"d:{key}")
            ops.append(("delete", key.encode()))
        else:
            token = f"b{seq}.{i}./{rng.randrange(0, fill)}"
            items.append(f"p:{key}:{token}")
            ops.append(("put", key.encode(), value_of(token), None))
    op = "batch " + " ".join(items)
    emit("? " + op)
    if rng.random() < 0.5:
        db.write_batch(ops)
    else:
        with db.batch() as b:
            for o in ops:
                if len(o) == 4:
                    b.put(o[1], o[2])
                else:
                    b.delete(o[1])
    emit("! " + op)


def merge_loop(db: bitcask.Bitcask, stop: threading.Event) -> None:
    while not stop.is_set():
        emit("merge-start")
        db.merge()
        emit("merge-done")


def read_loop(db: bitcask.Bitcask, seed: int) -> None:
    """Another thread reading while merges swap files: any exception is a bug."""
    rng = random.Random(seed)
    try:
        while True:
            db.get(f"k{rng.randrange(KEYSPACE):04d}".encode())
            if rng.random() < 0.01:
                db.scan(b"k", after=None, limit=20)
    except Exception as exc:
        emit(f"reader-error {type(exc).__name__}: {exc}")
        os._exit(4)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("dir")
    parser.add_argument("--sync", default="always")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--merge", action="store_true")
    parser.add_argument("--gen", type=int, default=0, help="start of the value sequence")
    parser.add_argument("--reopen-every", type=int, default=0, help="close and reopen every N ops")
    parser.add_argument("--auto-merge", action="store_true", help="let the engine merge by itself")
    parser.add_argument(
        "--big-batches", action="store_true", help="MB-sized batches, one write each"
    )
    args = parser.parse_args()
    rng = random.Random(args.seed)
    options: dict[str, object] = {"sync": args.sync}
    if args.sync == "interval":
        options["sync_interval_ms"] = 20
    if args.merge or args.reopen_every or args.auto_merge:
        options["max_file_size"] = 64 * 1024
    if args.auto_merge:  # the engine's own background merges, triggered by dead bytes
        options.update(merge_trigger=0.3, merge_min_dead_bytes=32 * 1024)
    db = bitcask.open(args.dir, **options)  # type: ignore[arg-type]
    emit("ready")
    seq = args.gen * 10_000_000  # values stay unique across children on one store
    merges = 0
    if args.merge or args.auto_merge:
        # garbage to collect: every key written many times, some deleted
        for _ in range(40):
            seq += 1
            do_batch(db, rng, seq, 60)
            if args.auto_merge and db.stats()["merges"] > merges:
                merges = db.stats()["merges"]
                emit(f"auto-merges {merges}")
    if args.merge:
        stop = threading.Event()
        threading.Thread(target=merge_loop, args=(db, stop), daemon=True).start()
        threading.Thread(target=read_loop, args=(db, args.seed), daemon=True).start()
    while True:  # until SIGKILL; the parent bounds the time
        seq += 1
        if args.auto_merge and seq % 50 == 0 and db.stats()["merges"] > merges:
            merges = db.stats()["merges"]
            emit(f"auto-merges {merges}")
        if args.reopen_every and seq % args.reopen_every == 0:
            # a kill may land in close (hint of the active file) or in open (recovery)
            db.close()
            db = bitcask.open(args.dir, **options)  # type: ignore[arg-type]
        r = rng.random()
        if args.big_batches and r < 0.5:
            # ~1 MB in one write(): a kill often lands inside it, and must drop it whole
            do_batch(db, rng, seq, 100, fill=20_000)
        elif r < 0.7:
            do_put(db, rng, seq)
        elif r < 0.85:
            do_delete(db, rng)
        else:
            do_batch(db, rng, seq, rng.randrange(2, 9))


if __name__ == "__main__":
    main()
