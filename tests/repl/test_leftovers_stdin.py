"""`bitcask put k -` reads at most the server's max_value_size + 1 bytes of stdin.

It read the whole of stdin before the size was checked: `cat /dev/zero | bitcask put
k -` ran until memory ran out. Now one byte past the limit (hello's max_value_size) is
refused with the usual VALUE_TOO_LARGE line and exit 2, at once, whatever follows.
The child runs under an address-space limit, so a regression fails with MemoryError
instead of taking the machine's memory.
"""

from __future__ import annotations

import resource
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from tests.serverproc import ServerProcess

LIMIT = 1000
AS_LIMIT = 1 << 30  # bytes of address space the CLI child may map


@pytest.fixture
def small(server_factory: Callable[..., ServerProcess]) -> ServerProcess:
    return server_factory(sync="never", extra=["--max-value-size", str(LIMIT)])


def _cli(srv: ServerProcess, env: dict[str, str], cwd: Path, *args: str, stdin: object) -> Any:
    def bounded() -> None:
        resource.setrlimit(resource.RLIMIT_AS, (AS_LIMIT, AS_LIMIT))

    return subprocess.run(
        [sys.executable, "-m", "repl.cli", "--port", str(srv.port), *args],
        stdin=stdin,
        capture_output=True,
        env=env,
        cwd=cwd,
        timeout=60,
        preexec_fn=bounded,
    )


def test_endless_stdin_is_refused_past_max_value_size(
    small: ServerProcess, home_env: dict[str, str], tmp_path: Path
) -> None:
    with open("/dev/zero", "rb") as zero:
        done = _cli(small, home_env, tmp_path, "put", "k", "-", stdin=zero)
    assert done.returncode == 2
    assert done.stderr.decode() == (
        f"(error) VALUE_TOO_LARGE value of more than {LIMIT} bytes (stdin) exceeds the "
        f"server's max_value_size {LIMIT}\n"
    )


@pytest.mark.parametrize(("size", "code"), [(LIMIT, 0), (LIMIT + 1, 2), (0, 0)])
def test_stdin_value_up_to_the_limit_is_stored(
    small: ServerProcess, home_env: dict[str, str], tmp_path: Path, size: int, code: int
) -> None:
    value = tmp_path / "value"
    value.write_bytes(b"\x00\xff" * (size // 2) + b"z" * (size % 2))
    with open(value, "rb") as f:
        done = _cli(small, home_env, tmp_path, "put", f"k{size}", "-", stdin=f)
    assert done.returncode == code, done.stderr
    got = _cli(small, home_env, tmp_path, "--raw", "get", f"k{size}", stdin=subprocess.DEVNULL)
    if code == 0:
        assert got.stdout == value.read_bytes() + b"\n"  # --raw: the bytes, one newline
    else:
        assert got.returncode == 1  # nothing stored
