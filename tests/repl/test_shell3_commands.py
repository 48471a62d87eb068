"""Unknown commands answered with the command to use, through the real programs
against a real server: Redis's names (as a redis-cli user types them) and the other
front end's commands.

Before: `info` suggested incrfloat, `flushall`, `dbsize` and `setex` got no hint or
an unrelated one, `bitcask auth TOKEN` suggested `health`, and `health` typed in the
shell suggested nothing about `bitcask health`.
"""

from __future__ import annotations

import subprocess
import sys

import pytest

from repl import COMMANDS
from repl._table import REDIS_NAMES, lookup
from repl.cli import TABLE
from tests.repl.conftest import ROOT, TIMEOUT, Runner
from tests.repl.test_terminal_safety import _in_pty
from tests.serverproc import ServerProcess


@pytest.mark.parametrize(
    ("typed", "hint"),
    [
        ("info", "use: stats"),
        ("DBSIZE", "use: stats"),
        ("flushall", "use: clear all"),
        ("setex", "use: put KEY VALUE TTL SECONDS"),
        ("mset", "use: mput KEY VALUE [KEY VALUE ...]"),
        ("incrby", "use: incr KEY BY N"),
        ("bgsave", "use: backup DIR"),
        (
            "auth",
            "auth is a command of bitcask-shell; bitcask takes options instead: bitcask --help",
        ),
        (
            "exit",
            "quit is a command of bitcask-shell; bitcask takes options instead: bitcask --help",
        ),
        ("kyes", "did you mean keys?"),
    ],
)
def test_cli_names_the_command_to_use(bitcask_cli: Runner, typed: str, hint: str) -> None:
    r = bitcask_cli(typed, "k", "v")
    assert (r.code, r.out, r.err) == (2, b"", f"(error) unknown command '{typed}' ({hint})\n")


def test_shell_names_the_command_to_use(server: ServerProcess, home_env: dict[str, str]) -> None:
    lines = ["info", "setnx k v", "health", "bgsave", "get k"]
    proc = subprocess.run(
        [sys.executable, "-m", "repl", "--port", str(server.port)],
        input="".join(f"{ln}\n" for ln in lines).encode(), capture_output=True,
        env=home_env, cwd=ROOT, timeout=TIMEOUT,
    )  # fmt: skip
    assert proc.returncode == 2 and proc.stdout == b"\n"  # get k: nothing was stored
    assert proc.stderr.decode().splitlines() == [
        "(error) unknown command 'info' (use: stats)",
        "(error) unknown command 'setnx' (use: set KEY VALUE NX)",
        "(error) unknown command 'health' (health is a command of bitcask, the command "
        "line: bitcask health ...)",
        "(error) unknown command 'bgsave' (try: help)",  # backup is the command line's
    ]


def test_every_redis_name_points_at_a_command_that_exists() -> None:
    for redis_name, use in REDIS_NAMES.items():
        assert lookup(TABLE, use.split()[0], "cli") is not None, redis_name
        assert lookup(TABLE, redis_name, "cli") is None, redis_name  # not a real command
        assert lookup(COMMANDS, redis_name, "shell") is None, redis_name


def test_keys_star_says_keys_takes_a_prefix(
    server: ServerProcess, home_env: dict[str, str], bitcask_cli: Runner
) -> None:
    """`keys *` (redis-cli's habit) asks for the keys starting with "*": it answered a
    bare (empty list) on a store full of keys."""
    assert bitcask_cli("mput", "user:1", "a", "user:2", "b").code == 0
    prompt = f"127.0.0.1:{server.port}>".encode()
    out = _in_pty(
        [sys.executable, "-m", "repl", "--port", str(server.port)],
        {**home_env, "NO_COLOR": "1", "PROMPT_TOOLKIT_NO_CPR": "1"},
        steps=((prompt, b"keys *\r"), (b"(empty list", b"keys\r"), (b'2) "user:2"', b"quit\r")),
    ).decode()
    hint = "(empty list: keys takes a prefix, not a pattern; keys alone lists every key)"
    assert hint in out and '1) "user:1"' in out, out
    assert bitcask_cli("--no-raw", "keys", "nope").out == b"(empty list)\n"
    assert bitcask_cli("keys", "*").out == b""  # raw: no keys, nothing printed
