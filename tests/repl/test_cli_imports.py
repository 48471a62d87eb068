"""One-shot commands import only what they use (start-up time is measured, not
asserted: see the commit log; here only *which* modules load is checked)."""

from __future__ import annotations

import subprocess
import sys

import pytest

from tests.repl.conftest import ROOT, TIMEOUT
from tests.serverproc import ServerProcess

PROBE = """
import sys
from repl.cli import main
code = main(sys.argv[1:])
print(code, " ".join(sorted({m.split(".")[0] for m in sys.modules})))
"""


def _modules(*argv: str) -> tuple[int, set[str]]:
    proc = subprocess.run(
        [sys.executable, "-c", PROBE, *argv],
        capture_output=True, text=True, cwd=ROOT, timeout=TIMEOUT, check=False,
    )  # fmt: skip
    code, _, names = proc.stdout.strip().rpartition("\n")[2].partition(" ")
    return int(code), set(names.split())


@pytest.mark.parametrize("argv", [["ping"], ["put", "k", "v"], ["get", "k"]])
def test_one_shot_commands_do_not_load_the_shell_or_the_engine(
    server: ServerProcess, argv: list[str]
) -> None:
    code, modules = _modules("--port", str(server.port), *argv)
    assert code in (0, 1)  # get of a missing key: 1
    assert "client" in modules  # it did talk to the server
    assert not modules & {"prompt_toolkit", "bitcask", "pygments", "tomllib"}


def test_piped_shell_does_not_load_prompt_toolkit(server: ServerProcess) -> None:
    probe = PROBE.replace("repl.cli", "repl.shell")
    proc = subprocess.run(
        [sys.executable, "-c", probe, "--port", str(server.port)],
        input="ping\n", capture_output=True, text=True, cwd=ROOT, timeout=TIMEOUT, check=False,
    )  # fmt: skip
    pong, last = proc.stdout.splitlines()
    code, _, names = last.partition(" ")
    assert (pong, code) == ("PONG", "0")
    assert "prompt_toolkit" not in names.split()
