"""Run tests/node/ioredis_tour.mjs with ioredis installed from package-lock.json.

``python -m tests.node.ioredis_tour PORT [HOST]`` (docs/redis.md runs it, and so does
tests/node/test_ioredis.py). tests/node/_npm.py installs the locked packages once;
npm's own output is shown only when it fails, so the tour's output is exactly what
the docs show. Exit status 3 means node or npm is missing (Debian
packages ``nodejs`` and ``npm``).
"""

from __future__ import annotations

import subprocess
import sys

from tests.node._npm import missing_tools, run_script

MISSING = 3


def run(port: int, host: str = "127.0.0.1") -> subprocess.CompletedProcess[str]:
    """Install if needed, then run the tour against host:port."""
    return run_script("ioredis_tour.mjs", str(port), host)


def main(argv: list[str]) -> int:
    if not 1 <= len(argv) <= 2:
        print("usage: python -m tests.node.ioredis_tour PORT [HOST]", file=sys.stderr)
        return 2
    reason = missing_tools()
    if reason is not None:
        print(reason, file=sys.stderr)
        return MISSING
    done = run(int(argv[0]), *argv[1:])
    sys.stdout.write(done.stdout)
    sys.stderr.write(done.stderr)
    return done.returncode


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
