"""bitcask-shell in a real terminal emulator (tmux), typed into as a fast typist or a
paste does: the text and the Tab arrive in one write."""

from __future__ import annotations

import json
import re
import shlex
import stat
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.repl.conftest import ROOT, Runner, need_binary
from tests.serverproc import ServerProcess

WAIT = 15.0


class Tmux:
    """One tmux server on a private socket, running bitcask-shell in a 100x30 window.

    `options` go after `--port`; `before` is shell text run first (`trap '' HUP && `),
    `then` after the shell exits (`; echo $? > FILE`)."""

    def __init__(
        self,
        socket: Path,
        env: dict[str, str],
        port: int,
        options: str = "",
        then: str = "",
        before: str = "",
    ) -> None:
        self.tmux = need_binary("tmux", "tmux")
        self.socket = str(socket)
        exports = " ".join(f"{k}={shlex.quote(v)}" for k, v in env.items())
        cmd = (
            f"cd {shlex.quote(str(ROOT))} && {before}env -i {exports} {sys.executable} -m repl "
            f"--port {port} {options}{then}"
        )
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

    def wait_line(self, port: int, ending: str) -> str:
        """Wait until the last prompt line, as drawn, ends with `ending`; the screen."""
        deadline = time.monotonic() + WAIT
        while True:
            screen = self.screen()
            prompts = [ln.rstrip() for ln in screen.splitlines() if f"{port}>" in ln]
            if prompts and prompts[-1].endswith(ending):
                return screen
            if time.monotonic() > deadline:
                raise AssertionError(f"prompt line never ended with {ending!r}; screen:\n{screen}")
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
    tmux.type("exi\t")  # a whole, unique command name: completed with its space
    tmux.wait_line(server.port, "> exists KEY")  # ... and the argument hint after it
    tmux.type("\x15")
    tmux.type("me\t")  # a command name, completed at once
    tmux.wait_line(server.port, "> merge [DIR]")
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


def _line(screen: str, port: int) -> str:
    """The last prompt line on the screen, as drawn (grey hints and suggestions too)."""
    return [ln for ln in screen.splitlines() if f"{port}>" in ln][-1].rstrip()


def test_argument_hints_follow_what_is_typed(tmux: Tmux, server: ServerProcess) -> None:
    port = server.port
    tmux.wait_for(f"127.0.0.1:{port}>")
    tmux.type("put k")
    tmux.wait_line(port, "> put k VALUE [TTL SECONDS]")
    tmux.type(" v TTL")
    tmux.wait_line(port, "> put k v TTL SECONDS")
    tmux.type(" 5\r")
    tmux.wait_for("OK")
    assert "> put k v TTL 5" in tmux.screen()  # the accepted line keeps no hint
    assert "[TTL SECONDS]" not in tmux.screen()


def test_did_you_mean(tmux: Tmux, server: ServerProcess) -> None:
    tmux.wait_for(f"127.0.0.1:{server.port}>")
    tmux.type("gte k\r")
    tmux.wait_for("(error) unknown command 'gte' (did you mean get?)")


def test_history_suggestion_is_hidden_while_the_menu_is_open(
    tmux: Tmux, server: ServerProcess
) -> None:
    port = server.port
    tmux.wait_for(f"127.0.0.1:{port}>")
    tmux.type("mput user:alpha 1 user:beta 2\r")
    tmux.wait_for("OK")
    tmux.type("get user:alpha\r")
    tmux.wait_for('"1"')
    tmux.type("get u")
    tmux.wait_for("get user:alpha")  # the grey suggestion from history
    tmux.type("\t")
    screen = tmux.wait_for("user:beta")  # the menu
    time.sleep(0.5)  # give a suggestion, if one were coming, time to be drawn
    screen = tmux.screen()
    assert "user:beta" in screen  # the menu is still open
    assert _line(screen, port).endswith("> get user:")  # and no suggestion drawn over it


def test_a_failed_merge_leaves_no_progress_bar_and_shows_bytes_escaped(
    tmux: Tmux, server: ServerProcess
) -> None:
    port = server.port
    tmux.wait_for(f"127.0.0.1:{port}>")
    tmux.type(f"merge {server.data}\r")  # the running server holds its lock
    screen = tmux.wait_for("stop the server first")
    remnant = re.compile(r"^merge [|/\\-] .*\d\.\ds")  # the spinner line of the bar
    assert not any(remnant.match(ln) for ln in screen.splitlines()), screen
    tmux.type('merge "/nonexistent/caf\\xff"\r')
    tmux.wait_for("(error) no such directory: /nonexistent/caf\\xff")


def test_a_pasted_block_runs_line_by_line_and_keeps_auth_out_of_history(
    tmux: Tmux,
    server: ServerProcess,
    home_env: dict[str, str],
    tmp_path: Path,
    bitcask_cli: Runner,
) -> None:
    """A bracketed paste of many lines arrives as one text: it ran as one command
    (`put p1 a` + newline + `put p2 b` was a put of too many words) and went into the
    history file as one entry, an `auth` line in it included. The toolbar's key count
    is asked for once, after the block: it was asked after every line (a `stats` per
    `put`, the round trips of a paste doubled), though not drawn until the end."""
    port = server.port
    tmux.wait_for(f"127.0.0.1:{port}>")
    block = "".join(f"put p{i} v{i}\n" for i in range(50)) + "auth s3cret\nget p49\n"
    (tmp_path / "paste.txt").write_text(block)
    tmux.run("load-buffer", str(tmp_path / "paste.txt"))
    tmux.run("paste-buffer", "-p")  # bracketed, as a terminal pastes
    tmux.type("\r")
    screen = tmux.wait_for('"v49"')
    assert "too many arguments" not in screen
    tmux.wait_for(" 50 keys ")  # the toolbar again: the block is over
    result = bitcask_cli("stats")
    requests = json.loads(result.out)["server"]["requests"]
    assert requests["put"] == 50 and requests["stats"] <= 3, requests  # start, end, this
    history = Path(home_env["XDG_DATA_HOME"]) / "bitcask" / "shell_history"
    text = history.read_text()
    assert "+put p0 v0\n" in text and "+get p49\n" in text and "s3cret" not in text
