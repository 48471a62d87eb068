"""bitcask-shell under SIGTERM, a hang-up and Ctrl-C, in a real terminal (tmux) against
real servers: the terminal is given back, the history kept, the connection closed.

Before: a SIGTERM at the prompt killed the shell on the spot (the pane's shell said
`Terminated`), leaving the terminal in raw mode with echo off and the toolbar drawn;
during a command, the same death and no line. A terminal closed under a shell that
ignored SIGHUP (nohup, `trap '' HUP`) ended it with a 40-line EIO traceback.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.repl.conftest import Runner, need_binary
from tests.repl.test_offline_interrupt import _done as done
from tests.repl.test_offline_interrupt import _every_key_answers as every_key_answers
from tests.repl.test_offline_interrupt import _reading as reading
from tests.repl.test_offline_interrupt import make_store
from tests.repl.test_shell_tmux import WAIT, Tmux
from tests.serverproc import ServerProcess

STOPPED = "(error) stopped by {name}; the connection to 127.0.0.1:{port} is closed"


class Pane:
    """The shell in tmux, its exit status and stderr caught in files by the pane's sh."""

    def __init__(
        self, tmp: Path, env: dict[str, str], port: int, options: str = "", before: str = ""
    ) -> None:
        self.status, self.stderr = tmp / "status", tmp / "stderr"
        then = f" 2>{self.stderr}; echo $? > {self.status}; sleep 600"
        self.tmux = Tmux(tmp / "tmux.sock", env, port, options, then, before)

    def put_a(self, port: int) -> None:
        """Wait for the prompt, then `put a 1` (history and the server have it)."""
        self.tmux.wait_for(f"127.0.0.1:{port}>")
        self.tmux.type("put a 1\r")
        self.tmux.wait_for("OK")

    def pid(self) -> int:
        """The shell's own process (the pane's sh is its parent)."""
        sh = self.tmux.run("display-message", "-p", "#{pane_pid}").strip()
        deadline = time.monotonic() + WAIT
        while True:
            children = Path(f"/proc/{sh}/task/{sh}/children").read_text().split()
            if children:
                return int(children[0])
            assert time.monotonic() < deadline, "the shell never started"
            time.sleep(0.05)

    def exit_status(self) -> int:
        deadline = time.monotonic() + WAIT
        while not (self.status.exists() and self.status.read_text().strip()):
            assert time.monotonic() < deadline, f"the shell never exited:\n{self.tmux.screen()}"
            time.sleep(0.05)
        return int(self.status.read_text())

    def modes(self) -> list[str]:
        """The terminal's modes as `stty -a` lists them (`icanon`; `-icanon` is raw)."""
        tty = self.tmux.run("display-message", "-p", "#{pane_tty}").strip()
        out = subprocess.run(
            ["stty", "-F", tty, "-a"], capture_output=True, text=True, timeout=WAIT, check=True
        )
        return out.stdout.replace(";", " ").split()

    def assert_terminal_given_back(self) -> None:
        modes = self.modes()
        assert "icanon" in modes and "echo" in modes, modes  # not left in raw mode
        assert self.tmux.run("display-message", "-p", "#{cursor_flag}").strip() == "1"


def gone(pid: int) -> bool:
    """Wait (bounded) for `pid` to exit; whether it did (a zombie has exited)."""
    deadline = time.monotonic() + WAIT
    while time.monotonic() < deadline:
        try:
            state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
        except FileNotFoundError:
            return True
        if state == "Z":
            return True
        time.sleep(0.05)
    return False


def history(env: dict[str, str]) -> list[str]:
    path = Path(env["XDG_DATA_HOME"]) / "bitcask" / "shell_history"
    return [ln[1:] for ln in path.read_text().splitlines() if ln.startswith("+")]


def only_ours_open(bitcask_cli: Runner) -> None:
    """Wait (bounded) until the server counts one connection open: the one asking."""
    deadline = time.monotonic() + WAIT
    while True:
        result = bitcask_cli("stats")
        assert result.code == 0, result.err
        n = json.loads(result.out)["server"]["connections"]
        if n == 1:
            return
        assert time.monotonic() < deadline, f"{n} connections still open at the server"
        time.sleep(0.05)


def wait_until_received(port: int) -> None:
    """Wait until a request sits unread at a stopped server: its socket's Recv-Q."""
    deadline = time.monotonic() + WAIT
    while True:
        out = subprocess.run(
            ["ss", "-tnH", "state", "established", f"( sport = :{port} )"],
            capture_output=True, text=True, timeout=WAIT, check=True,
        ).stdout  # fmt: skip
        if any(int(line.split()[0]) > 0 for line in out.splitlines()):
            return
        assert time.monotonic() < deadline, f"no request reached port {port}: {out}"
        time.sleep(0.05)


@pytest.fixture
def pane(server: ServerProcess, home_env: dict[str, str], tmp_path: Path) -> Iterator[Pane]:
    p = Pane(tmp_path, home_env, server.port)
    yield p
    p.tmux.close()


@pytest.mark.parametrize("stop", [signal.SIGTERM, signal.SIGHUP], ids=["sigterm", "kill-hup"])
def test_sigterm_at_the_prompt_gives_the_terminal_back_and_exits_143(
    pane: Pane,
    server: ServerProcess,
    home_env: dict[str, str],
    bitcask_cli: Runner,
    stop: signal.Signals,
) -> None:
    """And a `kill -HUP` from elsewhere, the terminal still there: 129, as visibly."""
    port = server.port
    pane.put_a(port)
    pane.tmux.type("get a")  # typed, not entered: the prompt is up, in raw mode
    pane.tmux.wait_line(port, "> get a")
    pid = pane.pid()
    os.kill(pid, stop)
    assert pane.exit_status() == 128 + stop
    screen = pane.tmux.screen()
    assert screen.count(STOPPED.format(name=stop.name, port=port)) == 1, screen
    assert "Terminated" not in screen and f"127.0.0.1:{port} |" not in screen  # no toolbar left
    assert pane.stderr.read_text() == ""
    pane.assert_terminal_given_back()
    assert history(home_env) == ["put a 1"]
    only_ours_open(bitcask_cli)  # the shell's connection is closed
    assert bitcask_cli("get", "a").out == b"1\n"


def test_sigterm_during_a_command_to_a_silent_server_says_what_is_in_doubt(
    pane: Pane, server: ServerProcess, home_env: dict[str, str], bitcask_cli: Runner
) -> None:
    port = server.port
    pane.put_a(port)
    assert server.proc is not None
    server.proc.send_signal(signal.SIGSTOP)
    try:
        pane.tmux.type("put b 2\r")
        wait_until_received(port)
        os.kill(pane.pid(), signal.SIGTERM)
        assert pane.exit_status() == 143
    finally:
        server.proc.send_signal(signal.SIGCONT)
    screen = pane.tmux.run("capture-pane", "-p", "-J")  # wrapped lines joined
    doubt = (
        f"(error) interrupted: put was sent to 127.0.0.1:{port} and may or may not have been "
        "applied; check before running it again"
    )
    lines = [ln.rstrip() for ln in screen.splitlines() if ln.strip()]
    assert lines[-2:] == [doubt, STOPPED.format(name="SIGTERM", port=port)], screen
    assert pane.stderr.read_text() == ""
    pane.assert_terminal_given_back()
    assert history(home_env) == ["put a 1", "put b 2"]
    # the server, resumed, applied the put it had read; the shell's connection is gone
    assert bitcask_cli("mget", "a", "b").out == b"1\n2\n"
    only_ours_open(bitcask_cli)


@pytest.mark.parametrize("before", ["", "trap '' HUP && "], ids=["sighup", "sighup-ignored"])
def test_closing_the_terminal_ends_the_shell_quietly(
    server: ServerProcess,
    home_env: dict[str, str],
    tmp_path: Path,
    bitcask_cli: Runner,
    before: str,
) -> None:
    """`tmux kill-session`: the terminal goes away. With SIGHUP ignored by whoever
    started the shell, reading the dead terminal failed with EIO: a traceback."""
    p = Pane(tmp_path, home_env, server.port, before=before)
    try:
        p.put_a(server.port)
        pid = p.pid()
        p.tmux.run("kill-session")
        assert gone(pid), "the shell outlived its terminal"
    finally:
        p.tmux.close()
    assert p.stderr.read_text() == ""  # nothing on the way out: no traceback
    assert history(home_env) == ["put a 1"]
    only_ours_open(bitcask_cli)


def _cancel_then_ask_again(p: Pane, port: int, stop: int, resume: int, pid: int) -> str:
    """`get a` to a stopped endpoint, Ctrl-C once it has the request, resume it (it now
    answers the cancelled `get a`), then `get b`: the screen after its answer."""
    os.kill(pid, stop)
    try:
        p.tmux.type("get a\r")
        wait_until_received(port)
        p.tmux.run("send-keys", "C-c")
        p.tmux.wait_for("(error) interrupted")
    finally:
        os.kill(pid, resume)
    p.tmux.wait_line(port, ">")
    p.tmux.type("get b\r")
    return p.tmux.wait_for('"2"')


def test_ctrl_c_cancels_only_the_command_and_its_late_reply_reaches_nobody(
    pane: Pane, server: ServerProcess
) -> None:
    port = server.port
    pane.tmux.wait_for(f"127.0.0.1:{port}>")
    pane.tmux.type("mput a 1 b 2\r")
    pane.tmux.wait_for("OK")
    assert server.proc is not None
    screen = _cancel_then_ask_again(pane, port, signal.SIGSTOP, signal.SIGCONT, server.proc.pid)
    assert screen.count("(error) interrupted") == 1 and '"1"' not in screen, screen
    pane.tmux.type("get a\r")
    pane.tmux.wait_for('"1"')
    pane.tmux.type("x")
    pane.tmux.wait_line(port, "> x")
    pane.tmux.run("send-keys", "C-c")  # at the prompt: drops the line, the shell stays
    pane.tmux.wait_line(port, ">")  # a new prompt (a key sent before it could be lost)
    pane.tmux.run("send-keys", "C-d")
    assert pane.exit_status() == 0
    assert pane.stderr.read_text() == ""


def test_ctrl_c_against_redis_server_keeps_replies_in_order(
    home_env: dict[str, str], tmp_path: Path
) -> None:
    """RESP has no request ids: a cancelled command's reply, arriving late on a kept
    connection, would be taken as the next command's. The shell drops the connection."""
    import redis

    from tests.repl.redisprocs import redis_server

    with redis_server(tmp_path) as port:
        r = redis.Redis(port=port)
        r.mset({"a": "1", "b": "2"})
        pid = int(r.info("server")["process_id"])
        p = Pane(tmp_path, home_env, port, options="--redis")
        try:
            p.tmux.wait_for(f"127.0.0.1:{port}>")
            screen = _cancel_then_ask_again(p, port, signal.SIGSTOP, signal.SIGCONT, pid)
            assert '"1"' not in screen, screen
            p.tmux.type("get a\r")
            p.tmux.wait_for('"1"')
            p.tmux.type("quit\r")
            assert p.exit_status() == 0
        finally:
            p.tmux.close()
            r.close()
    assert p.stderr.read_text() == ""


def test_an_offline_merge_stopped_in_the_shell_says_only_what_it_left(
    pane: Pane, server: ServerProcess, tmp_path: Path
) -> None:
    """Ctrl-C, then SIGTERM, during `merge DIR` (offline, in the shell's thread pool).
    The shell, connected to a server all along, added to the merge's own line that "the
    merge goes on in HOST:PORT (the server finishes it)": no merge ran there."""
    store = make_store(tmp_path / "store")
    port = server.port
    pane.tmux.wait_for(f"127.0.0.1:{port}>")
    pid = pane.pid()
    for stop in ("C-c", signal.SIGTERM):
        pane.tmux.type(f"merge {store}\r")
        deadline = time.monotonic() + WAIT
        while not (reading(pid, store) and done(store, "merge") >= 0):  # it writes merge/
            assert time.monotonic() < deadline, "the merge never started"
            time.sleep(0.002)
        if isinstance(stop, str):
            pane.tmux.run("send-keys", stop)
            pane.tmux.wait_line(port, ">")
        else:
            os.kill(pid, stop)
            assert pane.exit_status() == 143
    screen = pane.tmux.run("capture-pane", "-p", "-J")
    lines = [ln.rstrip() for ln in screen.splitlines() if ln.startswith("(error)") or "^C" in ln]
    assert lines == ["^C(error) interrupted", STOPPED.format(name="SIGTERM", port=port)], screen
    said = pane.stderr.read_text().splitlines()  # the merge's own lines: the pane's stderr
    assert len(said) == 2, (said, screen)
    assert all(ln.startswith(f"merge of {store} interrupted") for ln in said), said
    every_key_answers(store)


def test_sigterm_while_the_pager_shows_a_reply_ends_both(
    server: ServerProcess, home_env: dict[str, str], tmp_path: Path, bitcask_cli: Runner
) -> None:
    """The pager runs while the shell waits for it, event loop and all: a SIGTERM to the
    shell did nothing until someone quit less, then the shell stopped."""
    need_binary("less", "less")
    big = b"".join(b"line %d\n" % i for i in range(10_000))
    assert bitcask_cli("put", "big", "-", input=big).code == 0
    p = Pane(tmp_path, {**home_env, "PAGER": "less -FRX"}, server.port)
    try:
        p.tmux.wait_for(f"127.0.0.1:{server.port}>")
        p.tmux.type("get big\r")
        deadline = time.monotonic() + WAIT
        while p.tmux.screen().rstrip("\n").splitlines()[-1] != ":":  # less waits for a key
            assert time.monotonic() < deadline, p.tmux.screen()
            time.sleep(0.05)
        shell = p.pid()
        (pager,) = (
            int(c) for c in Path(f"/proc/{shell}/task/{shell}/children").read_text().split()
        )
        os.kill(shell, signal.SIGTERM)
        assert p.exit_status() == 143
        assert gone(pager)
        assert p.tmux.screen().rstrip().splitlines()[-1] == STOPPED.format(
            name="SIGTERM", port=server.port
        )
        p.assert_terminal_given_back()
    finally:
        p.tmux.close()
    assert p.stderr.read_text() == ""
