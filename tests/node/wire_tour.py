"""Run tests/node/wire_tour.mjs, the binary protocol from Node.js (@msgpack/msgpack,
locked in package-lock.json), against servers started with the flags each part needs.

``python -m tests.node.wire_tour main|auth|small`` starts a server in a temporary
directory, runs that part of the tour and prints its lines (what
tests/node/test_wire_tour.py expects). Exit status 3 means node or npm is missing
(Debian packages ``nodejs`` and ``npm``).
"""

from __future__ import annotations

import subprocess
import sys
import tempfile
from pathlib import Path

from tests.node._npm import missing_tools, run_script
from tests.serverproc import ServerProcess

MISSING = 3

# the flags of each part: limits small enough to reach from a test (a 4 MiB value,
# an 8 MiB reply bound, 256 entries a batch), a token, caps on keys and connections,
# a 1-second request timeout and a 1 MiB frame
FLAGS = {
    "main": ["--max-value-size", "4194304", "--max-reply-bytes", "8388608", "--max-batch", "256"],
    "auth": ["--auth", "s3cret"],
    "small": [
        "--max-keys", "3", "--max-connections", "2",
        "--request-timeout", "1", "--max-frame", "1048576",
    ],
}  # fmt: skip


def run(srv: ServerProcess, part: str) -> subprocess.CompletedProcess[str]:
    """Install if needed, then run one part of the tour against srv."""
    return run_script("wire_tour.mjs", str(srv.port), srv.host, part)


def main(argv: list[str]) -> int:
    if len(argv) != 1 or argv[0] not in FLAGS:
        print(f"usage: python -m tests.node.wire_tour {'|'.join(FLAGS)}", file=sys.stderr)
        return 2
    reason = missing_tools()
    if reason is not None:
        print(reason, file=sys.stderr)
        return MISSING
    with tempfile.TemporaryDirectory() as tmp:
        data = Path(tmp) / "data"
        data.mkdir()
        srv = ServerProcess(data=data, extra=FLAGS[argv[0]]).start()
        try:
            done = run(srv, argv[0])
        finally:
            srv.kill()
    sys.stdout.write(done.stdout)
    sys.stderr.write(done.stderr)
    return done.returncode


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
