"""docs/client.md: every Python block runs against a real server as documented.

- A block followed by `It prints:` and a plain block is a program: it runs as a
  reader would save and run it (BITCASK_URL naming the server) and prints exactly
  that (only the last of the two programs was run before).
- Any other block is a fragment (top-level `await`, as in `python -m asyncio`): it
  runs in one namespace per block with the client's names imported, the default
  port rewritten to the server's. A fragment naming a host the suite cannot reach
  (`db.internal`) is compiled only, so its syntax cannot rot either.
"""

from __future__ import annotations

import ast
import asyncio
import os
import re
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from tests.serverproc import ServerProcess

ROOT = Path(__file__).resolve().parents[2]
DOC = ROOT / "docs" / "client.md"
_BLOCK = re.compile(r"^```python\n(.*?)^```\n(?:\nIt prints:\n\n```\n(.*?)^```)?", re.S | re.M)
UNREACHABLE = ("db.internal",)


@dataclass(frozen=True)
class Block:
    line: int
    code: str
    prints: list[str] | None  # a program's documented output; None: a fragment


def blocks() -> list[Block]:
    text = DOC.read_text(encoding="utf-8")
    return [
        Block(
            text.count("\n", 0, m.start()) + 1,
            m.group(1),
            None if m.group(2) is None else m.group(2).splitlines(),
        )
        for m in _BLOCK.finditer(text)
    ]


def _id(block: Block) -> str:
    return f"{'program' if block.prints is not None else 'fragment'}-line{block.line}"


PROGRAMS = [b for b in blocks() if b.prints is not None]
FRAGMENTS = [b for b in blocks() if b.prints is None]


def test_the_doc_has_programs_and_fragments() -> None:
    assert len(PROGRAMS) >= 2 and len(FRAGMENTS) >= 3, [_id(b) for b in blocks()]


@pytest.mark.parametrize("block", PROGRAMS, ids=_id)
def test_each_program_runs_and_prints_what_the_doc_says(
    block: Block, server: ServerProcess, tmp_path: Path
) -> None:
    script = tmp_path / "program.py"
    script.write_text(block.code, encoding="utf-8")
    env = {**os.environ, "BITCASK_URL": server.url, "PYTHONPATH": str(ROOT)}
    proc = subprocess.run(
        [sys.executable, str(script)], capture_output=True, text=True, timeout=60, env=env
    )
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.splitlines() == block.prints


@pytest.mark.parametrize("block", FRAGMENTS, ids=_id)
def test_each_fragment_runs(block: Block, server: ServerProcess) -> None:
    code = compile(
        re.sub(r"(?<!\d)7379(?!\d)", str(server.port), block.code),
        f"{DOC.name}:{block.line}",
        "exec",
        flags=ast.PyCF_ALLOW_TOP_LEVEL_AWAIT,
    )
    if any(host in block.code for host in UNREACHABLE):
        return  # compiled: the names and syntax are checked below by what runs
    import client

    namespace: dict[str, Any] = {name: getattr(client, name) for name in client.__all__}

    async def run() -> None:
        result = eval(code, namespace)  # a coroutine when the block awaits
        if asyncio.iscoroutine(result):
            await result
        db = namespace.get("db")
        if db is not None and hasattr(db, "close"):
            await db.close()

    asyncio.run(asyncio.wait_for(run(), 30))
