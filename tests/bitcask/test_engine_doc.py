"""docs/engine.md: its programs run and print what the page says, and the page
names every public name of the package, every public method of Bitcask and every
option with its default (so a new one cannot go undocumented)."""

from __future__ import annotations

import ast
import dataclasses
import re
import subprocess
import sys
from pathlib import Path

import pytest

import bitcask

ROOT = Path(__file__).resolve().parents[2]
DOC = ROOT / "docs" / "engine.md"
UNITS = {"KiB": 1 << 10, "MiB": 1 << 20, "GiB": 1 << 30}


def _text() -> str:
    return DOC.read_text(encoding="utf-8")


@pytest.mark.parametrize(
    "heading",
    [
        pytest.param("## A complete program", id="catalog"),
        pytest.param("## The store as a dict", id="dictlike"),
    ],
)
def test_the_documented_program_runs_and_prints_what_the_page_says(
    tmp_path: Path, heading: str
) -> None:
    section = _text().split(heading, 1)[1]
    program = re.search(r"```python\n(.*?)```", section, re.S)
    printed = re.search(r"It prints:\n\n```\n(.*?)```", section, re.S)
    assert program is not None and printed is not None
    script = tmp_path / "program.py"
    script.write_text(program.group(1), encoding="utf-8")
    proc = subprocess.run(
        [sys.executable, str(script)],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=120,
        env={"PYTHONPATH": str(ROOT), "PATH": "/usr/bin:/bin"},
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert proc.stdout.splitlines() == printed.group(1).splitlines()


def test_every_public_name_and_method_is_on_the_page() -> None:
    text = _text()
    missing = [name for name in bitcask.__all__ if not re.search(rf"\b{name}\b", text)]
    assert not missing, f"docs/engine.md does not mention {missing}"
    methods = [m for m in dir(bitcask.Bitcask) if not m.startswith("_")]
    # write_planned is write_group for the server's planned batches (its docstring)
    undocumented = [m for m in methods if m != "write_planned" and f"{m}" not in text]
    assert not undocumented, f"docs/engine.md does not mention Bitcask.{undocumented}"


def _default(cell: str) -> object:
    cell = cell.strip().strip("`")
    m = re.fullmatch(r"(\d+) (KiB|MiB|GiB)", cell)
    return int(m.group(1)) * UNITS[m.group(2)] if m else ast.literal_eval(cell)


def test_the_options_table_has_every_option_with_its_default() -> None:
    rows = {}
    for line in _text().splitlines():
        m = re.match(r"\| `(\w+)` \| (`[^|]+`) \|", line)
        if m:
            rows[m.group(1)] = _default(m.group(2))
    defaults = bitcask.Options()
    for field in dataclasses.fields(bitcask.Options):
        assert field.name in rows, f"option {field.name} is not in docs/engine.md's table"
        assert rows[field.name] == getattr(defaults, field.name), field.name
