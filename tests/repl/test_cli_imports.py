"""One-shot commands import only what they use (start-up time is measured, not
asserted: see the commit log; here only *which* modules load is checked)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

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


# pip's console script, with a Ctrl-C arriving while it imports repl.cli (after the
# package's own top ran): before, a KeyboardInterrupt traceback from the script's
# `from repl.cli import main` line, and death by SIGINT instead of status 130
WRAPPER = """
import os, signal, sys
import repl
if sys.argv[1:] == ["ctrl-c"]:
    os.kill(os.getpid(), signal.SIGINT)
from repl.{module} import main
code = main({argv})
print(signal.getsignal(signal.SIGINT) is signal.default_int_handler, file=sys.stderr)
sys.exit(code)
"""


@pytest.mark.parametrize(
    ("name", "module", "argv"),
    [("bitcask", "cli", ["help", "get"]), ("bitcask-shell", "shell", ["--port", "1"])],
)
def test_ctrl_c_while_the_console_script_imports_is_130_and_quiet(
    tmp_path: Path, name: str, module: str, argv: list[str]
) -> None:
    script = tmp_path / name
    script.write_text(WRAPPER.format(module=module, argv=argv))
    run = [sys.executable, str(script)]
    proc = subprocess.run(
        [*run, "ctrl-c"], capture_output=True, cwd=ROOT, timeout=TIMEOUT, stdin=subprocess.DEVNULL
    )
    assert (proc.returncode, proc.stdout, proc.stderr) == (130, b"", b"")
    # no Ctrl-C: the script runs, with Python's own Ctrl-C handler given back
    proc = subprocess.run(
        run, capture_output=True, text=True, cwd=ROOT, timeout=TIMEOUT, stdin=subprocess.DEVNULL
    )
    assert (proc.returncode, proc.stderr) == (0, "True\n"), proc.stderr
    # a program importing repl (pytest, any other) keeps its Ctrl-C handler
    probe = (
        "import repl, signal; print(signal.getsignal(signal.SIGINT) is signal.default_int_handler)"
    )
    out = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, cwd=ROOT, timeout=TIMEOUT
    )
    assert out.stdout == "True\n"
