"""The shell scripts the docs give to copy (```sh blocks) run as written.

tests/test_docs.py runs the ```console blocks; a ```sh block is a file a reader
saves and runs (from cron, say), so it is run here as a file, its paths moved
under tmp_path, against a real server. Every ```sh block of the docs must have a
test here (test_every_sh_block_is_run).
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

from tests.serverproc import ServerProcess
from tests.test_docs import DOCS, skip_without

ROOT = Path(__file__).resolve().parent.parent
OPERATIONS = ROOT / "docs" / "operations.md"
_SH = re.compile(r"^```sh\n(.*?)^```", re.S | re.M)

# (document, the script's first comment line) of every ```sh block run below
# (README.md's wheel build is run by tests/test_packaging.py)
RUN = {
    ("operations.md", "# /etc/cron.d: 15 3 * * * bitcask /usr/local/bin/bitcask-nightly"),
    (
        "README.md",
        "# in the checkout, after make venv: dist/bitcask-VERSION-py3-none-any.whl and the sdist",
    ),
}


def sh_blocks(doc: Path) -> list[str]:
    return _SH.findall(doc.read_text(encoding="utf-8"))


def test_every_sh_block_is_run() -> None:
    found = {
        (doc.name, next(line for line in block.splitlines() if line.startswith("# ")))
        for doc in DOCS
        for block in sh_blocks(doc)
    }
    assert found == RUN


def test_the_nightly_backup_script_backs_up_and_keeps_seven(
    server: ServerProcess, tmp_path: Path
) -> None:
    (script_text,) = sh_blocks(OPERATIONS)
    base = tmp_path / "backups" / "bitcask"
    script = tmp_path / "bitcask-nightly"
    script.write_text(script_text.replace("/backups/bitcask", str(base)), encoding="utf-8")
    script.chmod(0o755)
    path = os.pathsep.join([str(Path(sys.executable).parent), os.environ.get("PATH", "")])
    need = [f"{n} (Debian package findutils)" for n in ("xargs",) if not shutil.which(n, path=path)]
    skip_without(need, "the nightly backup script")
    # eight older runs (names sort as dates do), then tonight's
    old = [base / f"2026-01-0{day}T0315" for day in range(1, 9)]
    for d in old:
        d.mkdir(parents=True)
    subprocess.run(
        [sys.executable, "-m", "repl.cli", "--port", str(server.port), "put", "k", "v"],
        check=True,
        capture_output=True,
        timeout=60,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
    )
    env = {**os.environ, "PATH": path, "BITCASK_URL": server.url, "PYTHONPATH": str(ROOT)}
    proc = subprocess.run(
        ["sh", str(script)], capture_output=True, text=True, timeout=120, env=env, cwd=tmp_path
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    kept = sorted(p.name for p in base.iterdir())
    # the two oldest went; seven stay, tonight's among them, and it holds the store
    assert len(kept) == 7 and kept[:6] == [d.name for d in old[2:]], kept
    tonight = base / kept[-1]
    assert tonight not in old and any(tonight.glob("*.data")), sorted(tonight.iterdir())
    check = subprocess.run(
        [sys.executable, "-m", "repl.cli", "check", str(tonight)],
        capture_output=True,
        text=True,
        timeout=60,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
    )
    assert check.returncode == 0, check.stdout + check.stderr
