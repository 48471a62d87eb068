"""`bitcask` argument handling: values from stdin, --help per command, --version."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from repl import COMMANDS, help_text
from tests.repl.conftest import ROOT, Runner


def test_value_dash_reads_stdin_binary_safe(bitcask_cli: Runner) -> None:
    blob = os.urandom(10 << 20) + b"\x00\xff\n\r"  # 10 MiB: far over any argv limit
    r = bitcask_cli("put", "blob", "-", input=blob)
    assert (r.code, r.out, r.err) == (0, b"OK\n", "")
    assert bitcask_cli("get", "blob").out == blob + b"\n"


def test_value_dash_with_ttl_and_a_literal_dash(bitcask_cli: Runner) -> None:
    assert bitcask_cli("put", "k", "-", "TTL", "100", input=b"from stdin").code == 0
    assert bitcask_cli("get", "k").out == b"from stdin\n"
    assert 0 < float(bitcask_cli("ttl", "k").out) <= 100
    assert bitcask_cli("put", "dash", "-", input=b"-").code == 0
    assert bitcask_cli("get", "dash").out == b"-\n"
    assert bitcask_cli("get", "-").code == 1  # a key named "-" is still just a key
    # mput's pairs are taken as written (docs/shell.md): stdin is not read for them
    assert bitcask_cli("mput", "a", "-", "b", "-", input=b"unread").code == 0
    assert bitcask_cli("mget", "a", "b").out == b"-\n-\n"


@pytest.mark.parametrize("flag", ["--help", "-h"])
@pytest.mark.parametrize("command", ["get", "import", "put", "health", "check"])
def test_every_subcommand_has_help(bitcask_cli: Runner, command: str, flag: str) -> None:
    r = bitcask_cli(command, flag)
    assert r.code == 0, r.err
    assert r.out.decode() == help_text(COMMANDS, command, "cli") + "\n"
    assert r.out.split(maxsplit=1)[0] == command.encode()


def test_help_after_double_dash_is_an_argument(bitcask_cli: Runner) -> None:
    assert bitcask_cli("put", "--", "--help", "v").code == 0
    assert bitcask_cli("get", "--", "--help").out == b"v\n"


def test_unknown_command_help_is_an_error(bitcask_cli: Runner) -> None:
    r = bitcask_cli("frobnicate", "--help")
    assert r.code == 2 and "unknown command 'frobnicate' (bitcask help lists them)" in r.err


def test_help_describes_the_front_end_it_is_shown_in() -> None:
    cli, shell = help_text(COMMANDS, "put", "cli"), help_text(COMMANDS, "put", "shell")
    assert "\\xNN" in shell and "\\xNN" not in cli
    assert "standard input" in cli and "standard input" not in shell
    assert "bitcask put" in cli and "bitcask put" not in shell


@pytest.mark.parametrize(
    ("module", "prog"), [("repl.cli", "bitcask"), ("repl.shell", "bitcask-shell")]
)
def test_version(module: str, prog: str) -> None:
    proc = subprocess.run(
        [sys.executable, "-m", module, "--version"],
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=60,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.startswith(f"{prog} 0.") and "Python" in proc.stdout


@pytest.mark.parametrize("name", [c.name for c in COMMANDS])
def test_no_help_promises_what_its_front_end_lacks(name: str) -> None:
    """Exit statuses and `bitcask` examples only in the CLI's help; the pager, `\\xNN`
    input escapes and `help CMD` wording only in the shell's."""
    cmd = next(c for c in COMMANDS if c.name == name)
    if "shell" in cmd.scope:
        shell = help_text(COMMANDS, name, "shell")
        assert "exit status" not in shell.lower() and "bitcask " not in shell
    if "cli" in cmd.scope:
        cli = help_text(COMMANDS, name, "cli")
        assert "pager" not in cli and "double-quoted" not in cli
    assert "bitcask CMD --help" in help_text(COMMANDS, None, "cli")
    assert "bitcask" not in help_text(COMMANDS, None, "shell")


def test_an_integer_beyond_64_bits_is_a_usage_error(bitcask_cli: Runner) -> None:
    # it used to reach the client and print "(error) InterfaceError: delta must be ..."
    r = bitcask_cli("incr", "n", "BY", "9223372036854775808")
    assert r.code == 2
    assert r.err == (
        "(error) N must be a signed 64-bit integer, got '9223372036854775808' "
        "(usage: incr KEY [BY N])\n"
    )
    assert bitcask_cli("incr", "n", "BY", "-9223372036854775808").out == b"-9223372036854775808\n"


def test_reshard_is_named_by_help_and_after_global_options(bitcask_cli: Runner) -> None:
    # `bitcask --help` did not list reshard, `bitcask help reshard` and
    # `bitcask --timeout 3 reshard ...` answered "unknown command 'reshard' (did you mean repair?)"
    assert b"bitcask reshard --from OLD.yml --to NEW.yml" in bitcask_cli("--help").out
    r = bitcask_cli("help")  # the same overview as --help's
    assert r.code == 0 and b"\nTools:\n" in r.out
    assert r.out.rstrip().endswith(b"its own options come after it (bitcask reshard --help).")
    r = bitcask_cli("help", "reshard")
    assert r.code == 0 and r.out.startswith(b"bitcask reshard --from OLD.yml --to NEW.yml")
    r = bitcask_cli("--timeout", "3", "reshard", "--from", "a.yml", "--to", "b.yml")
    assert r.code == 2
    assert r.err.startswith("(error) reshard must be the first word: bitcask reshard --from")
