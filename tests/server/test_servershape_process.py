"""The process's edges: signals nobody handled, BITCASK_* variables nobody reads.

Each case was a report: `kill -USR1` (meant for another daemon, or a log-reopen
habit) ended bitcask-server on the spot, exit 138, without a log line, a drain or
the hint files; `BITCASK_PROT=7000` was ignored without a word and the server came
up on 7379.
"""

from __future__ import annotations

import re
import signal
import time
from dataclasses import fields
from pathlib import Path

import pytest

import bitcask
from repl import shell as bitcask_shell
from server._flags import ENV_PREFIX, OTHER_PROGRAMS_VARIABLES, unknown_variables
from server.cli import IGNORED_SIGNALS, main
from server.config import ServerConfig
from tests.server.wire import Conn
from tests.serverproc import ServerProcess

WAIT = 60.0  # bound of every wait on the child here


def _wait_for(srv: ServerProcess, text: str) -> None:
    deadline = time.monotonic() + WAIT
    while text not in srv.log():
        assert srv.proc is not None and srv.proc.poll() is None, srv.log()
        assert time.monotonic() < deadline, srv.log()
        time.sleep(0.05)


def test_signals_the_server_gives_no_meaning_are_logged_and_ignored(tmp_path: Path) -> None:
    data = tmp_path / "data"
    srv = ServerProcess(data=data).start()
    try:
        with Conn(srv.port) as c:
            c.call("put", b"before", b"1")
        assert srv.proc is not None
        for sig in IGNORED_SIGNALS:
            srv.proc.send_signal(sig)
            _wait_for(srv, f"WARNING bitcask.server: {sig.name} ignored")
        assert srv.proc.poll() is None, srv.log()
        with Conn(srv.port) as c:
            assert c.call("get", b"before") == b"1"
            c.call("put", b"after", b"2")
    finally:
        code = srv.stop()
    log = srv.log()
    assert code == 0, log
    assert "stopped (clean)" in log
    for sig in IGNORED_SIGNALS:
        assert log.count(f"{sig.name} ignored") == 1, log
    assert "Traceback" not in log
    # the graceful stop ran: the hint files are written and every key is there
    assert (data / "0000000001.hint").exists()
    with bitcask.open(data) as db:
        assert sorted(db.keys()) == [b"after", b"before"]
        assert db.get(b"before") == b"1" and db.get(b"after") == b"2"


def test_sigusr1_is_in_the_ignored_set() -> None:
    # the two an operator sends by habit; SIGHUP has its own INFO line (logrotate)
    assert {signal.SIGUSR1, signal.SIGUSR2} <= set(IGNORED_SIGNALS)
    assert signal.SIGHUP not in IGNORED_SIGNALS and signal.SIGTERM not in IGNORED_SIGNALS


def test_a_misspelt_variable_is_one_warning_naming_the_closest_and_never_the_value(
    tmp_path: Path,
) -> None:
    data = tmp_path / "data"
    env = {
        "BITCASK_PROT": "7000",
        "BITCASK_AUHT": "s3cret-token-value",
        "bitcask_sync": "never",
        "BITCASK_URL": "bitcask://127.0.0.1:1",  # the shell's: not the server's typo
    }
    srv = ServerProcess(data=data, env=env).start()
    try:
        with Conn(srv.port) as c:  # it came up on its own port, without auth
            c.call("put", b"k", b"v")
            assert c.call("get", b"k") == b"v"
    finally:
        assert srv.stop() == 0, srv.log()
    log = srv.log()
    lines = [line for line in log.splitlines() if "is not a bitcask-server variable" in line]
    assert len(lines) == 3, log
    assert any("BITCASK_PROT" in line and "did you mean BITCASK_PORT?" in line for line in lines)
    assert any("BITCASK_AUHT" in line and "did you mean BITCASK_AUTH?" in line for line in lines)
    assert any("bitcask_sync" in line and "did you mean BITCASK_SYNC?" in line for line in lines)
    assert all(line.split()[2] == "WARNING" for line in lines), lines
    assert "s3cret" not in log
    assert not any("7000" in line or "never" in line for line in lines), lines
    assert "BITCASK_URL" not in log


def test_known_variables_are_not_reported() -> None:
    env = {ENV_PREFIX + f.name.upper(): "x" for f in fields(ServerConfig)}
    env[ENV_PREFIX + "AUTH_FILE"] = "x"
    env.update({name: "x" for name in OTHER_PROGRAMS_VARIABLES})
    env.update({"PATH": "/bin", "BITCASKX": "1", "HOME": "/root"})
    assert unknown_variables(env) == []


def test_the_shells_variables_are_all_known_to_the_server() -> None:
    # a container or shell that sets the bitcask shell's variables beside the
    # server's must not get a warning per variable: the two lists stay in step
    helps = bitcask_shell.build_parser().format_help()
    shell = set(re.findall(r"\bBITCASK_[A-Z][A-Z0-9_]*\b", helps)) | {"BITCASK_SHELL_CONFIG"}
    assert shell
    assert unknown_variables(dict.fromkeys(shell, "x")) == []


@pytest.mark.parametrize(
    ("name", "closest"),
    [
        pytest.param("BITCASK_PROT", "BITCASK_PORT", id="transposed"),
        pytest.param("BITCASK_HTTPPORT", "BITCASK_HTTP_PORT", id="underscore-missing"),
        pytest.param("BITCASK_SYNC_INTERVAL", "BITCASK_SYNC_INTERVAL_MS", id="unit-missing"),
        pytest.param("bitcask_max_connections", "BITCASK_MAX_CONNECTIONS", id="lower-case"),
        pytest.param("BITCASK_ZZZZZZZZ", None, id="nothing-close"),
    ],
)
def test_the_closest_known_name(name: str, closest: str | None) -> None:
    [line] = unknown_variables({name: "secret"})
    assert line.startswith(f"{name} is not a bitcask-server variable, ignored")
    assert "secret" not in line
    if closest is None:
        assert "did you mean" not in line
    else:
        assert f"did you mean {closest}?" in line


def test_a_bad_value_still_exits_2_and_the_typo_line_does_not_mask_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    data = tmp_path / "data"
    monkeypatch.setenv("BITCASK_MAX_CONNECTIONS", "0")
    monkeypatch.setenv("BITCASK_PROT", "1")
    assert main(["--data", str(data), "--port", "0", "--http-port", "0"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("bitcask-server: max-connections must be >= 1")
    assert not data.exists()
