"""bitcask-shell in a real terminal emulator (tmux), typed into as a fast typist or a
paste does: the text and the Tab arrive in one write."""

from __future__ import annotations

import shlex
import stat
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.repl.conftest import ROOT, need_binary
from tests.serverproc import ServerProcess

WAIT = 15.0


class Tmux:
    """One tmux server on a private socket, running bitcask-shell in a 100x30 window."""

    def __init__(self, socket: Path, env: dict[str, str], port: int) -> None:
        self.tmux = need_binary("tmux", "tmux")
        self.socket = str(socket)
        exports = " ".join(f"{k}={shlex.quote(v)}" for k, v in env.items())
        cmd = f"cd {shlex.quote(str(ROOT))} && env -i {exports} {sys.executable} -m repl --port {port}"
        self.run("new-session", "-d", "-x", "100", "-y", "30", cmd)

    def run(self, *args: str) -> str:
        proc = subprocess.run(
            [self.tmux, "-S", self.socket, *args],
            capture_output=True, text=True, timeout=WAIT, check=True,
        )  # fmt: skip
        return proc.stdout

    def screen(self) -> str:
        return self.run("capture-pane", "-p")

    def wait_for(self, text: str) -> str:
        deadline = time.monotonic() + WAIT
        while True:
            screen = self.screen()
            if text in screen:
                return screen
            if time.monotonic() > deadline:
                raise AssertionError(f"never saw {text!r}; screen:\n{screen}")
            time.sleep(0.05)

    def type(self, text: str) -> None:
        """All of `text` (Tab included) in one write to the terminal."""
        self.run("send-keys", "-l", text)

    def close(self) -> None:
        subprocess.run(
            [self.tmux, "-S", self.socket, "kill-server"], capture_output=True, timeout=WAIT
        )


@pytest.fixture
def tmux(server: ServerProcess, home_env: dict[str, str], tmp_path: Path) -> Iterator[Tmux]:
    t = Tmux(tmp_path / "tmux.sock", home_env, server.port)
    yield t
    t.close()


def test_tab_in_the_same_write_as_the_text_completes(tmux: Tmux, server: ServerProcess) -> None:
    tmux.wait_for(f"127.0.0.1:{server.port}>")
    tmux.type("put user:alpha 1\r")
    tmux.wait_for("OK")
    tmux.type("me\t")  # a command name, completed at once
    tmux.wait_for(f"{server.port}> merge")
    tmux.type("\x15")  # Ctrl-U: clear the line
    tmux.type("get user:a\t")  # a key, completed from the server
    tmux.wait_for(f"{server.port}> get user:alpha")
    tmux.type("\r")
    tmux.wait_for('"1"')


def test_history_file_written_by_the_shell_is_private(
    tmux: Tmux, server: ServerProcess, home_env: dict[str, str]
) -> None:
    tmux.wait_for(f"127.0.0.1:{server.port}>")
    tmux.type("put token s3cret\r")
    tmux.wait_for("OK")
    history = Path(home_env["XDG_DATA_HOME"]) / "bitcask" / "shell_history"
    deadline = time.monotonic() + WAIT
    while "s3cret" not in (history.read_text() if history.exists() else ""):
        assert time.monotonic() < deadline, "history never written"
        time.sleep(0.05)
    assert stat.S_IMODE(history.stat().st_mode) == 0o600
