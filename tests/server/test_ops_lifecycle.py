"""An operator's start-up and stop of bitcask-server: flags that cannot be right, signals
while a large store is still being opened.

Each case was a report: `--data "$DIR"` with DIR unset served the working directory,
`--shutdown-timeout 1e308` crashed the forced-exit watchdog at the first SIGTERM (a
traceback, then no forced exit), and a second Ctrl-C while the store was being opened
only logged "drain ended" (docs/operations.md: a second signal exits at once).
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

import bitcask
from server.cli import main
from server.config import MAX_STOP_SECONDS, ConfigError, ServerConfig
from tests.server.wire import Conn
from tests.serverproc import ServerProcess, free_port

WAIT = 60.0  # bound of every child process here


def test_an_empty_data_path_is_refused(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    # Path("") is Path("."): the store went into whatever directory the server ran in
    monkeypatch.chdir(tmp_path)
    with pytest.raises(SystemExit) as exc:
        main(["--data", "", "--port", "0", "--http-port", "0"])
    assert exc.value.code == 2
    err = capsys.readouterr().err
    assert "argument --data: an empty path" in err and "Traceback" not in err
    assert list(tmp_path.iterdir()) == [], "nothing may be created in the working directory"
    # an empty variable is "not set", as for every BITCASK_* variable
    assert ServerConfig.from_args([], env={"BITCASK_DATA": ""}).data == Path("data")


@pytest.mark.parametrize(
    "argv",
    [
        pytest.param(["--shutdown-timeout", "1e308"], id="shutdown-timeout-huge"),
        pytest.param(["--shutdown-timeout", "inf"], id="shutdown-timeout-inf"),
        pytest.param(["--drain-seconds", "1e300"], id="drain-huge"),
        pytest.param(["--drain-seconds", "nan"], id="drain-nan"),
        pytest.param(["--drain-seconds", str(MAX_STOP_SECONDS + 1)], id="drain-past-a-day"),
    ],
)
def test_stop_waits_past_a_day_are_refused(argv: list[str]) -> None:
    with pytest.raises(ConfigError):
        ServerConfig.from_args(argv, env={})


def test_a_day_is_still_accepted() -> None:
    day = str(MAX_STOP_SECONDS)
    cfg = ServerConfig.from_args(["--shutdown-timeout", day, "--drain-seconds", day], env={})
    assert cfg.shutdown_timeout == cfg.drain_seconds == MAX_STOP_SECONDS


def test_a_huge_shutdown_timeout_exits_2_before_serving(tmp_path: Path) -> None:
    data = tmp_path / "data"
    proc = subprocess.run(
        [sys.executable, "-m", "server", "--data", str(data), "--shutdown-timeout", "1e308"],
        capture_output=True,
        text=True,
        timeout=WAIT,
    )
    assert proc.returncode == 2, proc.stderr
    assert proc.stderr.strip().splitlines() == [
        "bitcask-server: shutdown-timeout must be > 0 and <= 86400 (a day)"
    ]
    assert not data.exists()


# Two signals while the store is still being opened. The patched start sends both, then
# keeps "opening" for far longer than the test waits: only an exit in the signal handler
# ends the process within WAIT.
_TWO_SIGNALS_DURING_START = """
import asyncio, os, signal, sys
from server import app, cli

start = app.Server.start

async def slow_start(self):
    sig = getattr(signal, sys.argv[1])
    os.kill(os.getpid(), sig)
    await asyncio.sleep(0.2)
    os.kill(os.getpid(), sig)
    await asyncio.sleep(600)
    await start(self)

app.Server.start = slow_start
sys.exit(cli.main(sys.argv[2:]))
"""


@pytest.mark.parametrize("sig", ["SIGTERM", "SIGINT"])
def test_a_second_signal_during_start_up_exits_at_once(tmp_path: Path, sig: str) -> None:
    data = tmp_path / "data"
    data.mkdir()
    with bitcask.open(data) as db:
        db.put(b"k", b"v")
    args = ["--data", str(data), "--port", str(free_port()), "--http-port", str(free_port())]
    proc = subprocess.run(
        [sys.executable, "-c", _TWO_SIGNALS_DURING_START, sig, *args],
        capture_output=True,
        text=True,
        timeout=WAIT,
        env={**os.environ, "BITCASK_DRAIN_SECONDS": "60"},
    )
    assert proc.returncode == 1, proc.stderr
    assert f"{sig} received" in proc.stderr
    assert f"second {sig} during start-up: exiting now" in proc.stderr, proc.stderr
    assert "drain ended" not in proc.stderr and "Traceback" not in proc.stderr
    with bitcask.open(data) as db:
        assert db.get(b"k") == b"v"


def test_sighup_is_logged_and_ignored(tmp_path: Path) -> None:
    # it used to end the process on the spot (exit -1 by the signal, no hints written,
    # not one log line): a logrotate postrotate `kill -HUP` stopped production
    srv = ServerProcess(data=tmp_path / "data").start()
    try:
        with Conn(srv.port) as c:
            c.call("put", b"k", b"v")
        assert srv.proc is not None
        srv.proc.send_signal(signal.SIGHUP)
        deadline = time.monotonic() + WAIT
        while "SIGHUP ignored" not in srv.log():
            assert time.monotonic() < deadline, srv.log()
            assert srv.proc.poll() is None, srv.log()
            time.sleep(0.05)
        with Conn(srv.port) as c:
            assert c.call("get", b"k") == b"v"
    finally:
        assert srv.stop() == 0, srv.log()
    assert "stopped (clean)" in srv.log()
    assert (tmp_path / "data" / "0000000001.hint").exists()


def test_an_empty_bitcask_auth_is_refused_not_taken_as_no_token(tmp_path: Path) -> None:
    # the Kubernetes manifest feeds BITCASK_AUTH from a Secret: one that came out empty
    # started the server without authentication, open to anyone who could connect
    with pytest.raises(ConfigError, match="BITCASK_AUTH is set but empty"):
        ServerConfig.from_args([], env={"BITCASK_AUTH": ""})
    assert ServerConfig.from_args(["--auth", "t"], env={"BITCASK_AUTH": ""}).auth == "t"
    assert ServerConfig.from_args([], env={"BITCASK_PORT": ""}).port == 7379
    data = tmp_path / "data"
    proc = subprocess.run(
        [sys.executable, "-m", "server", "--data", str(data), "--port", "0", "--http-port", "0"],
        capture_output=True,
        text=True,
        timeout=WAIT,
        env={**os.environ, "BITCASK_AUTH": ""},
    )
    assert proc.returncode == 2
    assert proc.stderr.startswith("bitcask-server: BITCASK_AUTH is set but empty")
    assert not data.exists()


@pytest.mark.parametrize(
    ("argv", "line"),
    [
        pytest.param(["--bogus"], "unrecognized arguments: --bogus", id="unknown-flag"),
        pytest.param(["--port", "x"], "argument --port: invalid int value: 'x'", id="bad-int"),
        pytest.param(["--sync"], "argument --sync: expected one argument", id="missing-value"),
    ],
)
def test_a_bad_flag_is_one_line(argv: list[str], line: str) -> None:
    # argparse printed its 20-line usage first: in a journal the error was buried
    proc = subprocess.run(
        [sys.executable, "-m", "server", *argv], capture_output=True, text=True, timeout=WAIT
    )
    assert proc.returncode == 2
    assert proc.stderr == f"bitcask-server: {line} (--help lists the flags)\n"
