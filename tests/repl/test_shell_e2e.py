"""The real `bitcask-shell` against a real server: through a pseudo-terminal, and piped.

The pty tests read what prompt_toolkit draws with its escape sequences stripped
(and answer its cursor-position requests, as a terminal does); every wait is
bounded (timeout=10).
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pexpect
import pytest

from tests.serverproc import ServerProcess, free_port

WAIT = 10
COLOUR = re.compile(rb"\x1b\[[0-9;]*(3[0-7]|38;5;\d+|4[0-7]|48;5;\d+)[;m]")
ANSI = re.compile(rb"\x1b\[[0-9;?]*[A-Za-z]|\x1b[()][AB0-2]|\x1b[>=]|\r")


def clean(data: bytes) -> str:
    return ANSI.sub(b"", data).decode("utf-8", "replace")


class Screen:
    """A bitcask-shell child in a 100x30 pty."""

    def __init__(self, port: int, env: dict[str, str], *extra: str) -> None:
        self.child = pexpect.spawn(
            sys.executable,
            ["-m", "repl", "--port", str(port), *extra],
            env=env,
            dimensions=(30, 100),
            timeout=WAIT,
        )
        self.seen = b""
        self.transcript = b""  # everything the child wrote, escapes included

    def expect(self, pattern: str) -> str:
        """Wait until the de-escaped output since the last match contains `pattern` (a regex)."""
        regex = re.compile(pattern)
        while True:
            text = clean(self.seen)
            m = regex.search(text)
            if m:
                self.seen = b""
                return text
            try:
                data = self.child.read_nonblocking(65536, timeout=WAIT)
            except pexpect.TIMEOUT:
                raise AssertionError(f"never saw {pattern!r}; screen:\n{text}") from None
            # answer cursor position requests like a terminal would, so prompt_toolkit
            # knows the height below the prompt and draws the bottom toolbar
            for _ in range(data.count(b"\x1b[6n")):
                self.child.send("\x1b[1;1R")
            self.seen += data
            self.transcript += data

    def prompt(self) -> str:
        return self.expect(r"127\.0\.0\.1:\d+>")

    def run(self, line: str, pattern: str) -> str:
        self.child.send(line + "\r")
        return self.expect(pattern)

    def wait_exit(self) -> int:
        """Read (answering cursor requests) until the child exits; its exit status."""
        while True:
            try:
                data = self.child.read_nonblocking(65536, timeout=WAIT)
            except pexpect.EOF:
                self.child.close()
                return int(self.child.exitstatus or 0)
            for _ in range(data.count(b"\x1b[6n")):
                self.child.send("\x1b[1;1R")

    def close(self) -> None:
        if self.child.isalive():
            self.child.terminate(force=True)


@pytest.fixture
def screen(server: ServerProcess, home_env: dict[str, str]):  # type: ignore[no-untyped-def]
    s = Screen(server.port, home_env)
    yield s
    s.close()


def test_type_complete_read_quit(
    screen: Screen, server: ServerProcess, home_env: dict[str, str]
) -> None:
    first = screen.expect(rf"127\.0\.0\.1:{server.port} \| bitcask \S+ \| 0 keys \| rtt")
    assert "Type help for commands" in first
    screen.run('put user:alpha "hello world"', r"OK")
    screen.expect(r"\| 1 key \| rtt \d+\.\d+ m?s")  # the toolbar after the put
    screen.run("mput user:beta 2 other 3", r"OK")
    screen.expect(r"\| 3 keys \| rtt")
    # Tab completes a key from the server: user:a -> user:alpha
    screen.child.send("get user:a")
    screen.child.send("\t")
    screen.expect(r"get user:alpha")
    screen.run("", r'"hello world"')
    screen.prompt()
    # Tab with two candidates shows a menu; the command name completes too
    screen.child.send("mge\t")
    screen.expect(r"mget")
    screen.run(" user:alpha nope", r'1\) "hello world"\s+2\) \(nil\)')
    screen.prompt()
    assert COLOUR.search(screen.transcript)  # colours on by default
    screen.child.send("quit\r")
    assert screen.wait_exit() == 0
    history = Path(home_env["XDG_DATA_HOME"]) / "bitcask" / "shell_history"
    assert "+put user:alpha" in history.read_text()


def test_errors_leave_the_shell_open_and_help_works(screen: Screen) -> None:
    screen.prompt()
    screen.run("get", r"\(error\) 'get' needs KEY")
    screen.run('put "open', r"\(error\) unbalanced quotes")
    screen.run("nope", r"\(error\) unknown command 'nope'")
    screen.run("HELP put", r"put KEY VALUE \[TTL SECONDS\]")
    screen.run('put bin "\\x00\\xff"', r"OK")
    screen.run("get bin", r'"\\x00\\xff"')
    screen.run("ttl bin", r"\(no ttl\)")
    screen.prompt()
    screen.child.sendeof()  # Ctrl-D at an empty prompt leaves
    assert screen.wait_exit() == 0


def test_a_lost_connection_reconnects_on_the_next_command(
    screen: Screen, server: ServerProcess
) -> None:
    screen.prompt()
    screen.run("put a 1", "OK")
    screen.prompt()
    server.restart()
    screen.run("get a", r'"1"')  # an idempotent read is resent on a fresh connection
    screen.prompt()
    server.stop()
    screen.run("get a", r"\(error\) cannot connect to 127\.0\.0\.1")
    screen.expect(r"not connected")  # the toolbar says so
    server.start()
    screen.run("get a", r'"1"')


def test_no_server_at_start_is_one_error_line(home_env: dict[str, str]) -> None:
    s = Screen(free_port(), home_env)
    try:
        text = s.prompt()
        assert "(error) cannot connect to" in text
        s.run("help", "Keys and values:")
    finally:
        s.close()


def _piped(port: int, env: dict[str, str], script: bytes) -> subprocess.CompletedProcess[bytes]:
    return subprocess.run(
        [sys.executable, "-m", "repl", "--port", str(port)],
        input=script, capture_output=True, env=env, timeout=60,
    )  # fmt: skip


def test_piped_mode_prints_raw_results(server: ServerProcess, home_env: dict[str, str]) -> None:
    script = b'put a 1\nget a\nget missing\n\n# a comment\nput "b c" "\\xff"\nget "b c"\nexists a\nkeys\n'
    r = _piped(server.port, home_env, script)
    assert r.returncode == 0, r.stderr
    assert r.stdout == b"OK\n1\n\nOK\n\xff\n1\na\nb c\n"
    assert r.stderr == b""


def test_piped_mode_reports_errors_and_goes_on(
    server: ServerProcess, home_env: dict[str, str]
) -> None:
    r = _piped(server.port, home_env, b"get\nput k v\nbogus\nget k\n")
    assert r.returncode == 2
    assert r.stdout == b"OK\nv\n"
    assert r.stderr.decode().splitlines() == [
        "(error) 'get' needs KEY (usage: get KEY)",
        "(error) unknown command 'bogus' (try: help)",
    ]
    assert b"\x1b[" not in r.stdout + r.stderr


def test_long_output_goes_through_the_pager(
    server: ServerProcess, home_env: dict[str, str]
) -> None:
    home_env["PAGER"] = "sed s/^/PAGED:/"
    s = Screen(server.port, home_env)
    try:
        s.prompt()
        pairs = " ".join(f"key:{i:02d} v" for i in range(60))
        s.run(f"mput {pairs}", "OK")
        s.prompt()
        s.run("keys key:", r'PAGED:60\) "key:59"')
        s.prompt()
        s.run("keys key:0", r'10\) "key:09"')  # short output is printed directly
        assert "PAGED" not in s.prompt()
    finally:
        s.close()


def test_no_color_turns_colours_off(server: ServerProcess, home_env: dict[str, str]) -> None:
    home_env["NO_COLOR"] = "1"
    s = Screen(server.port, home_env)
    try:
        s.prompt()
        s.child.send("get nope\r")
        s.expect(r"\(nil\)")
        s.prompt()
        assert b"(nil)" in s.transcript
        assert not COLOUR.search(s.transcript)
    finally:
        s.close()


def test_ctrl_c_cancels_a_command_and_the_shell_stays(
    screen: Screen, server: ServerProcess
) -> None:
    screen.prompt()
    screen.run("put a 1", "OK")
    screen.prompt()
    assert server.proc is not None
    os.kill(server.proc.pid, signal.SIGSTOP)  # the server hangs: the next get waits
    try:
        screen.child.send("get a\r")
        screen.expect(r"get a\n")  # the line was accepted: the command is running
        time.sleep(0.3)
        screen.child.send("\x03")
        screen.expect(r"\(error\) interrupted")
    finally:
        os.kill(server.proc.pid, signal.SIGCONT)
    screen.run("get a", r'"1"')


def test_config_file_is_read_and_a_bad_one_falls_back(
    server: ServerProcess, home_env: dict[str, str]
) -> None:
    cfg = Path(home_env["XDG_CONFIG_HOME"]) / "bitcask" / "shell.toml"
    cfg.parent.mkdir(parents=True)
    cfg.write_text("[shell]\nhistory_size = 0\n")  # keep no history
    s = Screen(server.port, home_env)
    try:
        s.prompt()
        s.run("ping", "PONG")
        s.prompt()
        s.child.send("quit\r")
        assert s.wait_exit() == 0
    finally:
        s.close()
    assert not (Path(home_env["XDG_DATA_HOME"]) / "bitcask" / "shell_history").exists()
    cfg.write_text("[shell]\nhistroy = 5\n")
    s = Screen(server.port, home_env)
    try:
        s.expect(r"(?s)unknown setting 'histroy'.*config: 1 problem: using the defaults for")
        s.run("ping", "PONG")
    finally:
        s.close()


def test_an_unusable_history_directory_costs_only_the_history(
    server: ServerProcess, home_env: dict[str, str], tmp_path: Path
) -> None:
    blocker = tmp_path / "not-a-dir"
    blocker.write_text("")
    home_env["XDG_DATA_HOME"] = str(blocker)
    s = Screen(server.port, home_env)
    try:
        s.expect(r"\(error\) history not saved: cannot create")
        s.run("ping", "PONG")
    finally:
        s.close()


def test_a_timed_out_command_gives_the_prompt_back_and_ctrl_c_keeps_the_shell(
    server: ServerProcess, home_env: dict[str, str]
) -> None:
    """After a timeout the shell asked the hung server for the toolbar's key count and
    waited one more timeout, with no prompt; a Ctrl-C then left the shell (exit 130)."""
    s = Screen(server.port, home_env, "--timeout", "3")
    assert server.proc is not None
    try:
        s.prompt()
        os.kill(server.proc.pid, signal.SIGSTOP)
        try:
            s.run("put a 1", r"no reply from 127\.0\.0\.1:\d+ within 3 s")
            s.child.send("\x03")  # right after the error: the shell stays
            s.prompt()
            s.child.send("\x03")  # at the prompt: clears the line, the shell stays
            time.sleep(0.5)
        finally:
            os.kill(server.proc.pid, signal.SIGCONT)
        assert s.child.isalive()
        s.run("get a", r'"1"\n')
        s.prompt()
        s.child.send("quit\r")
        assert s.wait_exit() == 0
    finally:
        s.close()
