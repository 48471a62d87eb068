"""ServerConfig and the CLI: flags, BITCASK_* variables, validation, exit codes, start-up line."""

from __future__ import annotations

import socket
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest

from server.cli import main
from server.config import ConfigError, ServerConfig
from tests.server.wire import Conn
from tests.serverproc import ServerProcess, free_port


def test_defaults() -> None:
    cfg = ServerConfig.from_args([], env={})
    assert (cfg.host, cfg.port, cfg.http_port, cfg.sync) == ("127.0.0.1", 7379, 7380, "always")
    assert cfg.auth is None and cfg.resolved_writer == "thread"


def test_env_then_flags() -> None:
    env = {"BITCASK_PORT": "9000", "BITCASK_SYNC": "never", "BITCASK_IDLE_TIMEOUT": "2.5"}
    cfg = ServerConfig.from_args(["--port", "9001"], env=env)
    assert cfg.port == 9001, "a flag beats the environment"
    assert cfg.sync == "never" and cfg.idle_timeout == 2.5
    assert cfg.resolved_writer == "loop"


@pytest.mark.parametrize(
    ("argv", "env"),
    [
        pytest.param(["--sync", "sometimes"], {}, id="bad-sync"),
        pytest.param(["--port", "70000"], {}, id="port-range"),
        pytest.param(["--port", "7000", "--http-port", "7000"], {}, id="same-ports"),
        pytest.param(["--max-frame", str(512 * 1024 * 1024)], {}, id="frame-ceiling"),
        pytest.param(["--max-connections", "0"], {}, id="no-connections"),
        pytest.param(["--idle-timeout", "-1"], {}, id="negative-timeout"),
        pytest.param(["--writer", "fast"], {}, id="bad-writer"),
        pytest.param([], {"BITCASK_PORT": "seven"}, id="env-not-a-number"),
        pytest.param(["--auth", ""], {}, id="empty-token"),
    ],
)
def test_invalid(argv: list[str], env: dict[str, str]) -> None:
    with pytest.raises(ConfigError):
        ServerConfig.from_args(argv, env=env)


def test_config_is_frozen() -> None:
    cfg = ServerConfig()
    with pytest.raises(AttributeError):
        cfg.port = 1  # type: ignore[misc]


def test_cli_bad_config_exits_2(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["--sync", "sometimes"]) == 2
    assert "sync must be one of" in capsys.readouterr().err
    with pytest.raises(SystemExit) as exc:
        main(["--no-such-flag"])
    assert exc.value.code == 2


def test_startup_line(server_factory: Callable[..., ServerProcess]) -> None:
    srv = server_factory(sync="never")
    line = next(line for line in srv.wait_for_log("listening").splitlines() if "listening" in line)
    assert f"binary=127.0.0.1:{srv.port}" in line and f"http=127.0.0.1:{srv.http_port}" in line
    assert "keys=0" in line and "recovery=" in line and "truncated_bytes" in line


def _run(args: list[str], timeout: float = 30) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "server", *args], capture_output=True, text=True, timeout=timeout
    )


def test_locked_store_exits_3(server_factory: Callable[..., ServerProcess]) -> None:
    srv = server_factory(sync="never")
    ports = ["--port", str(free_port()), "--http-port", str(free_port())]
    result = _run(["--data", str(srv.data), *ports])
    assert result.returncode == 3, result.stderr
    assert "locked" in result.stderr


def test_port_in_use_exits_4(tmp_path: Path) -> None:
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        result = _run(
            ["--data", str(tmp_path / "d"), "--port", str(port), "--http-port", str(free_port())]
        )
    assert result.returncode == 4, result.stderr
    assert "cannot listen" in result.stderr


def test_engine_options_from_flags_and_env() -> None:
    env = {"BITCASK_MERGE_TRIGGER": "0.25", "BITCASK_MAX_FILE_SIZE": "1048576"}
    cfg = ServerConfig.from_args(["--max-value-size", "1000", "--max-key-size", "32"], env=env)
    assert (cfg.merge_trigger, cfg.max_file_size) == (0.25, 1 << 20)
    assert (cfg.max_key_size, cfg.max_value_size) == (32, 1000)
    assert ServerConfig.from_args([], env={}).merge_trigger is None  # the engine's default


def test_engine_limits_reach_clients(server_factory: Callable[..., ServerProcess]) -> None:
    srv = server_factory(sync="never", extra=["--max-key-size", "8", "--max-value-size", "100"])
    with Conn(srv.port) as conn:
        limits = conn.call("hello")["limits"]
        assert (limits["max_key_size"], limits["max_value_size"]) == (8, 100)
        assert conn.call("put", b"k" * 8, b"v" * 100) is True
        assert conn.error("put", b"k" * 9, b"v").name == "KEY_TOO_LARGE"
        assert conn.error("put", b"k", b"v" * 101).name == "VALUE_TOO_LARGE"


def test_bad_engine_option_exits_2(tmp_path: Path) -> None:
    ports = ["--port", str(free_port()), "--http-port", str(free_port())]
    result = _run(["--data", str(tmp_path / "d"), *ports, "--merge-trigger", "2"])
    assert result.returncode == 2, result.stderr
    assert "merge_trigger" in result.stderr
