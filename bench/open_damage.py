"""Opening a store whose data file holds a damaged region, without its hint.

    python -m bench.open_damage               # 64 MiB of each kind (a few minutes)
    python -m bench.open_damage --mib 8       # quicker
    python -m bench.open_damage --kinds cut   # one kind

Strategy: a store of 20,000 records (~2 MB) in one data file, then a region of
``--mib`` MiB inserted at a record boundary in its middle: valid records before and
after it, the hint removed, so the open scans the file and resynchronises past the
region to the records after it (docs/format.md, "Reading records", rule 5).
Kinds: ``random`` (random bytes), ``zeros``, ``cut`` (records each cut mid-header:
torn appends back to back, the densest garbage in record-like headers), ``small``
(random bytes below 0x20, a third of them zero: binary junk of small numbers).
Each store is opened readonly once (a writer open would truncate nothing here, but
would rewrite hints); the wall and CPU seconds of the open are reported, with the
recovery report's skipped bytes and the keys loaded, which a change to the scanner
must leave as they are. Numbers are reported, never asserted.
"""

from __future__ import annotations

import argparse
import os
import random
import shutil
import tempfile
import time

import bitcask
from bench._util import Column, Table, emit, fmt_bytes
from bitcask._datafile import FILE_HEADER_SIZE, data_name, list_data_files
from bitcask._record import HEADER, HEADER_SIZE, encode

KINDS = ("random", "zeros", "cut", "small")
N_KEYS = 20_000
# byte -> a byte below 0x20, zero for a third of them (``small``)
_SMALL = bytes(b % 48 if b % 48 < 32 else 0 for b in range(256))


def region(kind: str, size: int, rng: random.Random) -> bytes:
    """``size`` bytes of damage of ``kind``."""
    if kind == "random":
        return rng.randbytes(size)
    if kind == "zeros":
        return bytes(size)
    if kind == "small":
        return rng.randbytes(size).translate(_SMALL)
    parts: list[bytes] = []
    total = i = 0
    ts = time.time_ns() // 1000
    while total < size:
        rec = encode(0, ts + i, 0, b"cut:%08d" % i, b"x" * rng.randrange(200))
        part = rec[: rng.randrange(1, HEADER_SIZE)]
        parts.append(part)
        total += len(part)
        i += 1
    return b"".join(parts)[:size]


def build(root: str, kind: str, size: int) -> str:
    path = os.path.join(root, kind)
    with bitcask.open(path, sync="never", max_file_size=1 << 30) as db:
        for i in range(N_KEYS):
            db.put(b"k%06d" % i, b"v%06d-" % i * 12)
    (fid,) = list_data_files(path)
    for name in os.listdir(path):
        if name.endswith(".hint"):
            os.unlink(os.path.join(path, name))
    dpath = os.path.join(path, data_name(fid))
    with open(dpath, "rb") as f:
        blob = f.read()
    pos, n = FILE_HEADER_SIZE, 0
    while n < N_KEYS // 2:  # the record boundary in the middle
        _crc, _flags, _ts, _exp, kl, vl = HEADER.unpack_from(blob, pos)
        pos += HEADER_SIZE + kl + vl
        n += 1
    with open(dpath, "wb") as f:
        f.write(blob[:pos] + region(kind, size, random.Random(1)) + blob[pos:])
    return path


def measure(path: str) -> dict[str, float | int]:
    wall, cpu = time.perf_counter(), time.process_time()
    with bitcask.open(path, readonly=True) as db:
        wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
        return {"wall": wall, "cpu": cpu, "skipped": db.recovery.skipped_bytes, "keys": len(db)}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.open_damage", description=__doc__)
    parser.add_argument("--mib", type=int, default=64, help="size of the damaged region")
    parser.add_argument("--kinds", default=",".join(KINDS), help=f"any of {', '.join(KINDS)}")
    parser.add_argument("--out", help="results directory (default bench/results)")
    args = parser.parse_args(argv)
    table = Table(
        f"readonly open, no hint, {args.mib} MiB of damage in the middle of one data file",
        [
            Column("kind", "damage"),
            Column("wall", "wall s", lambda v: f"{v:.2f}"),
            Column("cpu", "CPU s", lambda v: f"{v:.2f}"),
            Column("skipped", "skipped", fmt_bytes),
            Column("keys", "keys loaded", str),
        ],
    )
    root = tempfile.mkdtemp(prefix="bench-open-damage-")
    try:
        for kind in args.kinds.split(","):
            result = measure(build(root, kind, args.mib << 20))
            table.add(kind=kind, **result)
            print(f"{kind}: {result}", flush=True)
    finally:
        shutil.rmtree(root, ignore_errors=True)
    emit("open_damage", [table], meta={"mib": args.mib, "keys": N_KEYS}, out_dir=args.out)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
