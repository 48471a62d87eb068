"""The shell's history file when the home directory or the file is unusable, through
the real program: at a terminal (tmux, a pty) and from a pipe, against a real server.

Before: a uid with no passwd entry and no HOME (`env -i`, a container run with a
random uid) made even `echo ping | bitcask-shell` die with a RuntimeError traceback;
a history file that became unwritable under the shell (disk full, a directory in its
place) printed prompt_toolkit's traceback after every command; and a history path
that was a directory was blamed on its parent ("cannot create .../bitcask: Is a
directory").
"""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

from tests.repl.conftest import TIMEOUT
from tests.repl.test_shell_tmux import WAIT, Tmux
from tests.repl.test_terminal_safety import _in_pty
from tests.serverproc import ServerProcess

# The program as installed, with the user database not knowing our uid (as for a
# container's random uid): pwd.getpwuid raises KeyError, as it then does.
NO_PASSWD = (
    "import pwd, runpy, sys\n"
    "def missing(uid): raise KeyError(f'getpwuid(): uid not found: {uid}')\n"
    "pwd.getpwuid = missing\n"
    "sys.argv[0] = 'bitcask-shell'\n"
    "runpy.run_module('repl', run_name='__main__')\n"
)


def _homeless(env: dict[str, str]) -> dict[str, str]:
    return {k: v for k, v in env.items() if k not in ("HOME", "XDG_DATA_HOME", "XDG_CONFIG_HOME")}


def test_piped_shell_runs_without_a_home_directory(
    server: ServerProcess, home_env: dict[str, str], tmp_path: Path
) -> None:
    cwd = tmp_path / "cwd"
    cwd.mkdir()
    proc = subprocess.run(
        [sys.executable, "-c", NO_PASSWD, "--port", str(server.port)],
        input=b"put k v\nget k\n", capture_output=True, env=_homeless(home_env),
        cwd=cwd, timeout=TIMEOUT,
    )  # fmt: skip
    assert (proc.returncode, proc.stdout, proc.stderr) == (0, b"OK\nv\n", b"")
    assert list(cwd.iterdir()) == []  # no "~" directory made in the working dir


def test_shell_at_a_terminal_without_a_home_keeps_history_in_memory(
    server: ServerProcess, home_env: dict[str, str], tmp_path: Path
) -> None:
    prompt = f"127.0.0.1:{server.port}>".encode()
    out = _in_pty(
        [sys.executable, "-c", NO_PASSWD, "--port", str(server.port)],
        {**_homeless(home_env), "PROMPT_TOOLKIT_NO_CPR": "1"},
        steps=((prompt, b"put k v\r"), (b"OK", b"get k\r"), (b'"v"', b"quit\r")),
    )
    text = out.decode("utf-8", "replace")
    assert "(error) history not saved: no home directory (set HOME or XDG_DATA_HOME)" in text
    assert "Traceback" not in text and '"v"' in text, text


def _joined(t: Tmux) -> str:
    """The screen with wrapped lines joined: a long error line is one line again."""
    return t.run("capture-pane", "-p", "-J")


def _history(home_env: dict[str, str]) -> Path:
    return Path(home_env["XDG_DATA_HOME"]) / "bitcask" / "shell_history"


def test_a_history_file_that_becomes_unusable_costs_one_line(
    server: ServerProcess, home_env: dict[str, str], tmp_path: Path
) -> None:
    history = _history(home_env)
    t = Tmux(tmp_path / "tmux.sock", home_env, server.port)
    try:
        t.wait_for(f"127.0.0.1:{server.port}>")
        t.type("put k first\r")
        t.wait_for("OK")
        deadline = time.monotonic() + WAIT
        while "put k first" not in (history.read_text() if history.exists() else ""):
            assert time.monotonic() < deadline, "history never written"
            time.sleep(0.05)
        history.unlink()
        history.mkdir()  # what was the file is now a directory: every write fails
        t.type("put k second\r")
        t.wait_for("history not saved from now on")
        t.type("get k\r")
        screen = t.wait_for('"second"')
        t.type("\x1b[A")  # Up: the history of this session is still there, in memory
        t.wait_line(server.port, "> get k")
        screen = _joined(t)
    finally:
        t.close()
    assert "Traceback" not in screen and "Press ENTER" not in screen, screen
    failures = [ln for ln in screen.splitlines() if ln.startswith("(error)")]
    assert failures == [f"(error) history not saved from now on: {history}: Is a directory"]
    assert history.is_dir() and list(history.iterdir()) == []


def test_a_history_path_that_is_a_directory_is_named(
    server: ServerProcess, home_env: dict[str, str], tmp_path: Path
) -> None:
    history = _history(home_env)
    history.mkdir(parents=True)
    t = Tmux(tmp_path / "tmux.sock", home_env, server.port)
    try:
        screen = t.wait_for(f"127.0.0.1:{server.port}>")
        t.type("ping\r")
        t.wait_for("PONG")
        screen = _joined(t)
    finally:
        t.close()
    assert f"(error) history not saved: {history}: Is a directory" in screen, screen
