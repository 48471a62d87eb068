"""Resource bounds of the engine: descriptors at the limit, O(1) counts.

Each test runs real stores in tmp_path; the descriptor tests run a child process under
a lowered RLIMIT_NOFILE (soft = hard, so the engine cannot raise it).
"""

from __future__ import annotations

import resource
import subprocess
import sys
from pathlib import Path

# A store under sync="never" that rotated (files sealed, never fsynced), then a process
# at its descriptor limit: sync() must still make every write durable and leave the
# store writable.
_SYNC_AT_LIMIT = """
import errno, os, sys
import bitcask
db = bitcask.open(sys.argv[1], sync="never", max_file_size=64, merge_trigger=0)
for i in range(20):
    db.put(b"k%d" % i, b"v" * 40)  # a rotation each
held = []
try:
    while True:
        held.append(os.open(os.devnull, os.O_RDONLY))
except OSError as exc:
    assert exc.errno == errno.EMFILE, exc
try:
    db.sync()
    print("synced")
except OSError as exc:
    print("sync-failed", exc.errno)
for fd in held:  # descriptors again: the next put (a rotation) needs some
    os.close(fd)
db.put(b"after", b"x")
print("writable", db.get(b"after"))
db.close()
with bitcask.open(sys.argv[1]) as db:
    print("keys", len(db))
"""


def _run_limited(code: str, path: Path, limit: int) -> str:
    def lower() -> None:
        resource.setrlimit(resource.RLIMIT_NOFILE, (limit, limit))

    out = subprocess.run(
        [sys.executable, "-c", code, str(path)],
        preexec_fn=lower,  # the child has no threads before exec
        capture_output=True,
        timeout=60,
        check=False,
    )
    assert out.returncode == 0, out.stderr.decode()
    return out.stdout.decode()


def test_sync_at_the_descriptor_limit_keeps_the_store_writable(tmp_path: Path) -> None:
    # sync() under never opened every sealed file (and the directory) to fsync it: at
    # the descriptor limit the open raised EMFILE, taken as a failed fsync, and the
    # store turned read-only (every later write refused until reopen).
    out = _run_limited(_SYNC_AT_LIMIT, tmp_path, 256)
    assert out.split("\n")[:3] == ["synced", "writable b'x'", "keys 21"]
