"""Nothing an endpoint sends can drive the user's terminal: the real programs in a
real pseudo-terminal, against a real redis-server that another client has poisoned.

Any Redis client can put bytes of its choosing into INFO: a script's error reply
names a new error prefix, and `INFO errorstats` (a default section) lists it. Those
bytes reach `stats` (`bitcask --redis stats`, the shell's `stats`), so a terminal
escape there must be shown as `\\xNN`, never sent to the terminal as it is.
"""

from __future__ import annotations

import contextlib
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.repl.conftest import ROOT, TIMEOUT
from tests.repl.ptyrun import in_pty as _in_pty
from tests.repl.redisprocs import redis_server
from tests.serverproc import ServerProcess

# an OSC title change, a bell, a clear screen, the C1 CSI (U+009B): what the poisoned
# error prefix carries
EVIL = "\x1b]0;pwned\x07\x1b[2J\u009b1m"
SHOWN = "\\x1b]0;pwned\\x07\\x1b[2J\\x9b1m"


def _poison(port: int) -> None:
    """One error reply with EVIL as its prefix: INFO errorstats now names it."""
    import redis

    r = redis.Redis(port=port)
    with contextlib.suppress(redis.ResponseError):
        r.eval(f"return redis.error_reply('{EVIL}FOO boom')", 0)
    r.close()


@pytest.fixture
def poisoned_redis(tmp_path: Path) -> Iterator[int]:
    with redis_server(tmp_path) as port:
        _poison(port)
        yield port


def test_cli_stats_on_a_terminal_shows_a_poisoned_info_escaped(
    poisoned_redis: int, home_env: dict[str, str]
) -> None:
    out = _in_pty(
        [sys.executable, "-m", "repl.cli", "--redis", "--port", str(poisoned_redis), "stats"],
        {**home_env, "NO_COLOR": "1"},
    )
    text = out.decode("utf-8", "replace")
    assert f"errorstat_{SHOWN}FOO" in text, text
    assert b"pwned\x07" not in out and "\u009b".encode() not in out


def test_cli_stats_formatted_into_a_pipe_has_no_control_bytes(
    poisoned_redis: int, home_env: dict[str, str]
) -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "repl.cli", "--redis", "--port", str(poisoned_redis),
         "--no-raw", "stats"],
        capture_output=True, env=home_env, cwd=ROOT, timeout=TIMEOUT,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    text = proc.stdout.decode("utf-8")
    assert f"errorstat_{SHOWN}FOO" in text
    assert not any((ord(ch) < 0x20 and ch != "\n") or 0x7F <= ord(ch) <= 0x9F for ch in text)


def test_shell_stats_shows_a_poisoned_info_escaped(
    poisoned_redis: int, home_env: dict[str, str]
) -> None:
    config = Path(home_env["XDG_CONFIG_HOME"]) / "bitcask" / "shell.toml"
    config.parent.mkdir(parents=True)
    config.write_text('[shell]\npager = ""\n')  # the whole table on the screen
    prompt = f"127.0.0.1:{poisoned_redis}>".encode()
    out = _in_pty(
        [sys.executable, "-m", "repl", "--redis", "--port", str(poisoned_redis)],
        {**home_env, "PROMPT_TOOLKIT_NO_CPR": "1"},  # no cursor position request to answer
        steps=((prompt, b"stats\r"), (b"errorstat_", b"quit\r")),
    )
    text = out.decode("utf-8", "replace")
    assert f"errorstat_{SHOWN}FOO" in text, text
    assert b"pwned\x07" not in out and "\u009b".encode() not in out


@pytest.mark.parametrize("env", [{"TERM": "dumb"}, {"TERM": "xterm", "NO_COLOR": "1"}])
def test_cli_on_a_dumb_or_colourless_terminal_writes_no_escape_sequences(
    server: ServerProcess, home_env: dict[str, str], tmp_path: Path, env: dict[str, str]
) -> None:
    """prompt_toolkit's printer wrapped every reply in `\\x1b[0m\\x1b[?7h` (and colour
    on TERM=dumb), and import drew its bar with `\\x1b[K`: junk on a dumb terminal."""
    env = {**home_env, **env}
    (tmp_path / "in.jsonl").write_text('{"key": "k", "value": "v"}\n')
    cli = [sys.executable, "-m", "repl.cli", "--port", str(server.port)]
    imported = _in_pty([*cli, "import", str(tmp_path / "in.jsonl")], env)
    if env["TERM"] == "dumb":  # NO_COLOR keeps the bar: it is not colour
        assert imported.startswith(b"imported 1 key"), imported
    assert _in_pty([*cli, "mget", "k", "nokey"], env) == b'1) "v"\r\n2) (nil)\r\n'
    assert (
        _in_pty([*cli, "frob"], env)
        == b"(error) unknown command 'frob' (bitcask help lists them)\r\n"
    )


def test_shell_on_a_dumb_terminal_prints_replies_without_escapes(
    server: ServerProcess, home_env: dict[str, str]
) -> None:
    prompt = f"127.0.0.1:{server.port}> ".encode()
    out = _in_pty(
        [sys.executable, "-m", "repl", "--port", str(server.port)],
        {**home_env, "TERM": "dumb"},
        steps=((prompt, b"put k v\r"), (b"OK", b"mget k nokey\r"), (b"(nil)", b"quit\r")),
    )
    assert b"\r\nOK\r\n" in out and b'\r\n1) "v"\r\n2) (nil)\r\n' in out, out
    # (prompt_toolkit itself sends a cursor reset before the greeting)
    assert b"\x1b" not in out.split(b"Ctrl-D to quit.", 1)[1], out
