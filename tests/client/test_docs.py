"""docs/client.md: the complete application runs against a real server as documented."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

from tests.serverproc import ServerProcess

ROOT = Path(__file__).resolve().parents[2]
DOC = ROOT / "docs" / "client.md"


def _app_and_output() -> tuple[str, list[str]]:
    text = DOC.read_text(encoding="utf-8")
    section = text.split("## A complete application", 1)[1]
    app = re.search(r"```python\n(.*?)```", section, re.S)
    out = re.search(r"It prints:\n\n```\n(.*?)```", section, re.S)
    assert app is not None and out is not None
    return app.group(1), out.group(1).splitlines()


def test_the_documented_app_runs_and_prints_what_the_doc_says(
    server: ServerProcess, tmp_path: Path
) -> None:
    app, expected = _app_and_output()
    script = tmp_path / "inventory.py"
    script.write_text(app, encoding="utf-8")
    env = {**os.environ, "BITCASK_URL": server.url, "PYTHONPATH": str(ROOT)}
    proc = subprocess.run(
        [sys.executable, str(script)], capture_output=True, text=True, timeout=60, env=env
    )
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.splitlines() == expected
