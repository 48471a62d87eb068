"""Node and the locked npm packages of tests/node/, for the tours of Node clients.

``install()`` runs ``npm ci`` once into ``.cache/node/<hash of the lock>/`` at the root
of the checkout (gitignored); later runs reuse it. ``run_script`` copies a tour
(``*.mjs``) beside that ``node_modules`` (ESM resolves imports beside the script) and
runs it under a timeout. npm's own output is shown only when it fails.
"""

from __future__ import annotations

import fcntl
import hashlib
import os
import shutil
import subprocess
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent.parent
NPM_TIMEOUT = 300.0
RUN_TIMEOUT = 60.0


def missing_tools() -> str | None:
    """Why the tours cannot run here (node or npm not installed), or None."""
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


def script_path(name: str) -> Path:
    """tests/node/`name`, copied beside the installed node_modules (with the modules the
    tours share, _*.mjs: _tour.mjs, _wire.mjs); its path there."""
    target = install()
    for shared in HERE.glob("_*.mjs"):
        _place(shared, target / shared.name)
    script = target / name
    _place(HERE / name, script)
    return script


def _place(src: Path, dst: Path) -> None:
    """Copy ``src`` to ``dst`` as one rename: test workers run tours at once from the
    same directory, and a copy in place (truncate, then write) let a tour that was
    starting import a half-written _tour.mjs ("does not provide an export named
    'bounded'"). A copy already up to date is left alone."""
    data = src.read_bytes()
    if dst.is_file() and dst.read_bytes() == data:
        return
    tmp = dst.with_name(f".{dst.name}.{os.getpid()}.tmp")
    tmp.write_bytes(data)
    os.replace(tmp, dst)


def run_script(name: str, *args: str) -> subprocess.CompletedProcess[str]:
    """Install if needed, then `node name args...` (no stdin, RUN_TIMEOUT)."""
    return subprocess.run(
        ["node", str(script_path(name)), *args],
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=RUN_TIMEOUT,
    )
