"""redis-cli's subscribe modes against bitcask-server, which has no pub/sub
(docs/redis.md section 8): SUBSCRIBE, PSUBSCRIBE and SSUBSCRIBE answer an unknown
command's error, redis-cli leaves its "Reading messages..." loop at once (against
Redis it would wait for messages for ever), and the commands after it are served,
one-shot, from stdin and at a terminal (tmux). The other modes are in
tests/server/test_redis_tools_diff.py. Every run is under a timeout.
"""

from __future__ import annotations

import subprocess
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from tests.protocol._redis_server import require_binary
from tests.serverproc import ServerProcess

TIMEOUT = 30.0


@pytest.fixture
def srv(server_factory: Callable[..., ServerProcess]) -> ServerProcess:
    return server_factory(sync="never")


def _cli(
    srv: ServerProcess, *args: str, stdin: str | None = None
) -> subprocess.CompletedProcess[str]:
    cli = require_binary("redis-cli", "redis-tools")
    return subprocess.run(
        [cli, "-p", str(srv.port), *args],
        input=stdin,
        capture_output=True,
        text=True,
        timeout=TIMEOUT,
    )


@pytest.mark.parametrize("command", ["SUBSCRIBE", "PSUBSCRIBE", "SSUBSCRIBE"])
def test_subscribe_one_shot_ends_with_the_error(srv: ServerProcess, command: str) -> None:
    done = _cli(srv, command, "ch")
    refused = f"ERR unknown command '{command}', with args beginning with: 'ch' \n"
    assert (done.returncode, done.stdout, done.stderr) == (0, refused + "\n", "")


def test_subscribe_from_stdin_then_the_rest_is_served(srv: ServerProcess) -> None:
    done = _cli(srv, stdin="SET k v\nSUBSCRIBE ch\nGET k\nMONITOR\nINCR n\n")
    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines() == [
        "OK",
        "ERR unknown command 'SUBSCRIBE', with args beginning with: 'ch' ",
        "",
        "v",
        "ERR unknown command 'MONITOR', with args beginning with: ",
        "",
        "1",
    ]


def test_subscribe_at_a_terminal_gives_the_prompt_back(srv: ServerProcess, tmp_path: Path) -> None:
    tmux = require_binary("tmux", "tmux")
    cli = require_binary("redis-cli", "redis-tools")
    sock = str(tmp_path / "tmux.sock")

    def tm(*args: str) -> str:
        return subprocess.run(
            [tmux, "-S", sock, *args], capture_output=True, text=True, timeout=TIMEOUT
        ).stdout

    def screen_when(lines: int) -> list[str]:
        """The screen once `lines` prompts are drawn (bounded)."""
        deadline = time.monotonic() + TIMEOUT
        while True:
            screen = [ln.rstrip() for ln in tm("capture-pane", "-p").splitlines() if ln.strip()]
            if sum(ln.startswith("127.0.0.1:") for ln in screen) >= lines:
                return screen
            assert time.monotonic() < deadline, screen
            time.sleep(0.05)

    tm("new-session", "-d", "-x", "120", "-y", "30", f"{cli} -p {srv.port}")
    try:
        prompt = f"127.0.0.1:{srv.port}>"
        for n, line in enumerate(["SET after sub", "SUBSCRIBE ch", "GET after"], start=1):
            screen_when(n)
            tm("send-keys", "-l", line + "\r")
        screen = screen_when(4)
    finally:
        subprocess.run([tmux, "-S", sock, "kill-server"], capture_output=True, timeout=TIMEOUT)
    assert screen == [
        f"{prompt} SET after sub",
        "OK",
        f"{prompt} SUBSCRIBE ch",
        "Reading messages... (press Ctrl-C to quit)",
        "(error) ERR unknown command 'SUBSCRIBE', with args beginning with: 'ch'",
        f"{prompt} GET after",
        '"sub"',
        prompt,
    ]
