"""Run tests/node/ioredis_tour.mjs with ioredis installed from package-lock.json.

``python -m tests.node.ioredis_tour PORT [HOST]`` (docs/redis.md runs it, and so does
tests/node/test_ioredis.py). ``npm ci`` installs the locked packages once into
``.cache/node/<hash of the lock>/`` at the root of the checkout (gitignored); later
runs reuse it. npm's own output is shown only when it fails, so the tour's output is
exactly what the docs show. Exit status 3 means node or npm is missing (Debian
packages ``nodejs`` and ``npm``).
"""

from __future__ import annotations

import fcntl
import hashlib
import shutil
import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent.parent
NPM_TIMEOUT = 300.0
RUN_TIMEOUT = 60.0
MISSING = 3


def missing_tools() -> str | None:
    """Why the tour cannot run here (node or npm not installed), or None."""
    for name, package in (("node", "nodejs"), ("npm", "npm")):
        if shutil.which(name) is None:
            return f"{name} not installed (Debian package {package})"
    return None


def install() -> Path:
    """The directory holding node_modules for the locked packages (installed once)."""
    lock = (HERE / "package-lock.json").read_bytes()
    digest = hashlib.sha256(lock + (HERE / "package.json").read_bytes()).hexdigest()[:16]
    target = ROOT / ".cache" / "node" / digest
    target.mkdir(parents=True, exist_ok=True)
    with (target.parent / f"{digest}.lock").open("w") as guard:
        fcntl.flock(guard, fcntl.LOCK_EX)  # one npm ci at a time (parallel test runs)
        if not (target / "node_modules" / ".installed").exists():
            for name in ("package.json", "package-lock.json"):
                shutil.copyfile(HERE / name, target / name)
            npm_ci = ["npm", "ci", "--ignore-scripts", "--no-audit", "--no-fund"]
            npm_ci += ["--loglevel=error", "--cache", str(ROOT / ".cache" / "npm")]
            done = subprocess.run(
                npm_ci,
                cwd=target,
                stdin=subprocess.DEVNULL,
                capture_output=True,
                text=True,
                timeout=NPM_TIMEOUT,
            )
            if done.returncode != 0:
                raise RuntimeError(
                    f"npm ci failed ({done.returncode}):\n{done.stdout}{done.stderr}"
                )
            (target / "node_modules" / ".installed").touch()
    return target


def run(port: int, host: str = "127.0.0.1") -> subprocess.CompletedProcess[str]:
    """Install if needed, then run the tour against host:port."""
    where = install()
    script = where / "ioredis_tour.mjs"
    shutil.copyfile(HERE / "ioredis_tour.mjs", script)  # ESM resolves imports beside it
    return subprocess.run(
        ["node", str(script), str(port), host],
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=RUN_TIMEOUT,
    )


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
