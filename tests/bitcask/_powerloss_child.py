"""The engine workload of tests/bitcask/test_powerloss_order.py, run under strace.

    python tests/bitcask/_powerloss_child.py STORE BACKUP MARKS

A sync="always" store whose files rotate every few records: puts, a batch, a delete,
a merge, a backup, a close. Around each operation a marker line goes to MARKS, one
``os.write`` each (so strace shows it where it happened): ``BEGIN op`` before the
call, ``ACK op FID`` after it returned (FID: the data file holding the operation's
records, the active one; 0 for merge and backup; a name ending in ``-never``: of
the sync="never" store). Then a store whose writer died
is opened again (recovery seals its file), and a sync="never" store is closed.
Last, a damaged store is repaired (``BEGIN repair`` / ``ACK repair 0``).
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

import bitcask

VALUE = b"v" * 1500  # two records fill a 4 KiB file: every other put rotates


def main(store: str, backup: str, marks: str) -> None:
    fd = os.open(marks, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
    db = bitcask.open(store, sync="always", max_file_size=4096, merge_trigger=0)

    def step(name: str, fn: object, *args: object) -> None:
        os.write(fd, f"BEGIN {name}\n".encode())
        fn(*args)  # type: ignore[operator]
        fid = db.files.active_id if name.startswith(("put", "batch", "delete")) else 0
        os.write(fd, f"ACK {name} {fid}\n".encode())

    for i in range(5):
        step(f"put{i}", db.put, b"k%d" % i, VALUE)
    step("batch", db.write_batch, [("put", b"b1", VALUE), ("put", b"k0", b"x"), ("delete", b"k1")])
    step("delete", db.delete, b"k2")
    step("merge", db.merge)
    step("put-after-merge", db.put, b"k3", VALUE)
    step("backup", db.backup, backup)
    step("put-after-backup", db.put, b"k4", b"y")
    step("close", db.close)
    # Damage a record of the merge's first output (a value byte: its CRC fails) and
    # repair the store: the file is rewritten and renamed over, its hint replaced.
    with open(os.path.join(store, "0000000004.data"), "r+b") as f:
        f.seek(52)
        byte = f.read(1)
        f.seek(52)
        f.write(bytes([byte[0] ^ 0xFF]))
        f.flush()
        os.fsync(f.fileno())  # the damage as a power cut would keep it
    os.write(fd, b"BEGIN repair\n")
    bitcask.repair(store)
    os.write(fd, b"ACK repair 0\n")
    # A writer that died: the next open trims its file's zero tail and seals it.
    crashed = bitcask.open(store + "-crashed", sync="always")
    crashed.put(b"c", VALUE)
    crashed._abandon()
    bitcask.open(store + "-crashed", sync="always").close()
    # sync="never": rotations sync nothing, a clean stop must sync it all.
    never = bitcask.open(store + "-never", sync="never", max_file_size=4096, hint_files=False)
    for i in range(5):
        never.put(b"n%d" % i, VALUE)
    # A forced sync (write_batch(sync=True)) is durable under never too, in a file
    # the last rotation made.
    os.write(fd, b"BEGIN sync-never\n")
    never.write_batch([("put", b"s", VALUE)], sync=True)
    os.write(fd, b"ACK sync-never %d\n" % never.files.active_id)
    os.write(fd, b"BEGIN close-never\n")
    never.close()
    os.write(fd, b"ACK close-never 0\n")
    os.close(fd)


if __name__ == "__main__":
    main(*sys.argv[1:4])
