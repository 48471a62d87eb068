"""Helpers for the shell's end-to-end tests: run the real programs in a scratch home.

Every child gets HOME and the XDG directories under tmp_path, so no test reads or
writes the real user's config or history, and PYTHONPATH points at the checkout.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.serverproc import ServerProcess

ROOT = Path(__file__).resolve().parents[2]
TIMEOUT = 60.0


@dataclass
class Result:
    code: int
    out: bytes
    err: str

    @property
    def text(self) -> str:
        return self.out.decode("utf-8", "replace")


def need_binary(name: str, package: str) -> str:
    """The path of a program a test needs; skip (fail under CI=true) when it is missing."""
    path = shutil.which(name)
    if path is None:
        reason = f"{name} not installed (Debian package {package})"
        if os.environ.get("CI") == "true":
            pytest.fail(reason)
        pytest.skip(reason)
    return path


@pytest.fixture
def home_env(tmp_path: Path) -> dict[str, str]:
    """An environment whose HOME, XDG config and data dirs live in tmp_path."""
    home = tmp_path / "home"
    home.mkdir()
    # COLUMNS and LINES too: pytest-xdist's workers have COLUMNS=80 LINES=24, which
    # would size every terminal the shell draws on (shutil.get_terminal_size reads them
    # first), whatever the test's window is
    skip = ("BITCASK_", "XDG_", "NO_COLOR", "COLUMNS", "LINES")
    env = {k: v for k, v in os.environ.items() if not k.startswith(skip)}
    env.update(
        HOME=str(home),
        XDG_CONFIG_HOME=str(home / ".config"),
        XDG_DATA_HOME=str(home / ".local" / "share"),
        PYTHONPATH=str(ROOT),
        PYTHONUNBUFFERED="1",
        TERM="xterm",
    )
    return env


Runner = Callable[..., Result]


@pytest.fixture
def bitcask_cli(server: ServerProcess, home_env: dict[str, str], tmp_path: Path) -> Runner:
    """`bitcask_cli("get", "k", input=b"")` runs `python -m repl.cli` against `server`."""

    def run(*args: str, input: bytes | None = None, connect: bool = True) -> Result:
        conn = ["--port", str(server.port), "--http-port", str(server.http_port)] if connect else []
        proc = subprocess.run(
            [sys.executable, "-m", "repl.cli", *conn, *args],
            input=input,
            capture_output=True,
            env=home_env,
            cwd=tmp_path,
            timeout=TIMEOUT,
        )
        return Result(proc.returncode, proc.stdout, proc.stderr.decode("utf-8", "replace"))

    return run
