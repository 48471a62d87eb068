"""The read-modify-write commands through the real programs: the shell in its piped
mode (pipelined) and the one-shot `bitcask` CLI (output and exit status)."""

from __future__ import annotations

import subprocess
import sys
import threading

from repl import COMMANDS, help_text
from tests.repl.conftest import TIMEOUT, Runner
from tests.serverproc import ServerProcess


def _piped(port: int, env: dict[str, str], script: str) -> subprocess.CompletedProcess[bytes]:
    return subprocess.run(
        [sys.executable, "-m", "repl", "--port", str(port)],
        input=script.encode(), capture_output=True, env=env, timeout=TIMEOUT, check=False,
    )  # fmt: skip


def test_every_command_piped(server: ServerProcess, home_env: dict[str, str]) -> None:
    script = """\
set lock me NX TTL 30
set lock you NX
set lock you XX GET
get lock
set lock again KEEPTTL
incr hits
incr hits BY 10
incr hits by -2
incrfloat price 10.5
incrfloat price 0.1
append log ab
append log cd
getdel log
getdel log
expire hits 100 NX
expire hits 50 GT
persist hits
persist hits
rename hits visits
rename lock visits NX
get visits
incr lock
rename nothing x
set k v NX XX
clear everything
clear all
get visits
"""
    r = _piped(server.port, home_env, script)
    assert r.stdout.decode().splitlines() == [
        "OK", "", "me", "you", "OK",
        "1", "11", "9",
        "10.5", "10.6",
        "2", "4", "abcd", "",
        "1", "0", "1", "0",
        "1", "0", "9",
        "3",  # clear all: lock, visits, price (log was deleted, 'set k' was refused)
        "",
    ]  # fmt: skip
    errors = r.stderr.decode().splitlines()
    assert len(errors) == 4 and r.returncode == 2
    assert "NOT_A_NUMBER" in errors[0]
    assert "NO_SUCH_KEY" in errors[1]
    assert "NX and XX exclude each other" in errors[2]
    assert "clear all" in errors[3]


def test_exit_status_and_formatted_output(bitcask_cli: Runner) -> None:
    assert bitcask_cli("set", "cli:lock", "me", "NX").code == 0
    r = bitcask_cli("set", "cli:lock", "you", "NX")
    assert (r.code, r.out) == (1, b"\n")
    assert bitcask_cli("--no-raw", "incr", "cli:n", "BY", "5").out == b"(integer) 5\n"
    assert bitcask_cli("expire", "cli:missing", "10").code == 1
    assert bitcask_cli("getdel", "cli:missing").code == 1
    r = bitcask_cli("incr", "cli:lock")
    assert r.code == 2 and "NOT_A_NUMBER" in r.err
    r = bitcask_cli("set", "cli:lock", "x", "NX", "SOMETIMES")
    assert r.code == 2 and "unexpected 'SOMETIMES'" in r.err


def test_concurrent_cli_increments_lose_nothing(bitcask_cli: Runner) -> None:
    codes: list[int] = []

    def worker() -> None:
        for _ in range(5):
            codes.append(bitcask_cli("incr", "cli:race").code)

    threads = [threading.Thread(target=worker) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(TIMEOUT * 2)
    assert codes == [0] * 20
    assert bitcask_cli("get", "cli:race").out == b"20\n"


def test_help_lists_them() -> None:
    listing = help_text(COMMANDS, None, "shell")
    for name in ("set", "incr", "incrfloat", "append", "getdel", "expire", "persist", "rename"):
        assert f"\n  {name} " in listing
    assert "set KEY VALUE [NX|XX] [GET] [KEEPTTL] [TTL SECONDS]" in listing
