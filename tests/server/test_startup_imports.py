"""A server start imports only what starting needs (its cost is measured, never
asserted: see the commit log; here only *which* modules load is checked)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]

PROBE = """
import sys
import server.cli
print(" ".join(sorted(sys.modules)))
"""

# on first use only: the aiofiles writer mode (aiofiles brings tempfile and random),
# backup and repair (bitcask.backup, bitcask._repair), the Redis dialect (at the first
# text connection: its reader, writer and command table)
NOT_AT_START = {
    "aiofiles",
    "tempfile",
    "random",
    "bitcask.backup",
    "bitcask._repair",
    "protocol.resp_dialect",
    "protocol._redis_table",
    "protocol._resp_reader",
    "protocol._resp_writer",
}


def test_importing_the_server_skips_what_only_later_uses() -> None:
    proc = subprocess.run(
        [sys.executable, "-c", PROBE], capture_output=True, text=True, cwd=ROOT, timeout=60,
        check=True,
    )  # fmt: skip
    modules = set(proc.stdout.split())
    assert "server.app" in modules and "bitcask.merge" in modules
    assert not modules & NOT_AT_START


def test_the_lazy_names_are_the_functions() -> None:
    """bitcask.repair is loaded on first use; bitcask.check stays the function even
    when its module is imported by name (a submodule import sets the package's
    attribute of its name)."""
    probe = (
        "import importlib, bitcask; importlib.import_module('bitcask._repair');"
        "importlib.import_module('bitcask.check');"
        "print(callable(bitcask.check), callable(bitcask.repair), bitcask.RepairReport.__name__)"
    )
    proc = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, cwd=ROOT, timeout=60,
        check=True,
    )  # fmt: skip
    assert proc.stdout.split() == ["True", "True", "RepairReport"]
