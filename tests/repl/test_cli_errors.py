"""Error lines of `bitcask` and piped `bitcask-shell` that name the fix, once."""

from __future__ import annotations

import contextlib
import json
import socket
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

from client import AuthRequiredError
from repl._context import CommandError, ConnectOptions
from repl._session import describe
from tests.repl.conftest import TIMEOUT, Runner
from tests.serverproc import ServerProcess, free_port


def test_http_port_is_recognised_and_the_fix_named(
    bitcask_cli: Runner, server: ServerProcess
) -> None:
    r = bitcask_cli("--port", str(server.http_port), "ping", connect=False)
    assert r.code == 2
    assert "answered HTTP" in r.err and "--port" in r.err
    assert "frame of" not in r.err and "bytes exceeds" not in r.err


def test_auth_hint_names_the_flag_and_variable(
    server_factory: Callable[..., ServerProcess], home_env: dict[str, str], tmp_path: Path
) -> None:
    srv = server_factory(extra=["--auth", "s3cret"])
    conn = ["--port", str(srv.port)]

    def cli(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "repl.cli", *conn, *args],
            capture_output=True, text=True, env=env or home_env, cwd=tmp_path, timeout=TIMEOUT,
        )  # fmt: skip

    r = cli("ping")
    assert r.returncode == 2
    assert "--auth" in r.stderr and "BITCASK_AUTH" in r.stderr and "auth=" not in r.stderr
    assert cli("--auth", "s3cret", "ping").stdout == "PONG\n"
    assert cli("ping", env={**home_env, "BITCASK_AUTH": "s3cret"}).stdout == "PONG\n"


def test_shell_auth_command_and_hint(
    server_factory: Callable[..., ServerProcess], home_env: dict[str, str], tmp_path: Path
) -> None:
    srv = server_factory(extra=["--auth", "s3cret"])
    lines = "put a 1\nauth wrong\nauth s3cret\nput a 1\nget a\n"
    r = subprocess.run(
        [sys.executable, "-m", "repl.shell", "--port", str(srv.port)],
        input=lines, capture_output=True, text=True, env=home_env, cwd=tmp_path, timeout=TIMEOUT,
    )  # fmt: skip
    assert r.stdout == "OK\nOK\n1\n"
    err = r.stderr.splitlines()
    assert len(err) == 2
    assert "type auth TOKEN" in err[0] and "auth=" not in err[0]
    assert err[1].startswith("(error) AUTH_FAILED")
    assert r.returncode == 2


def test_health_on_a_closed_port_is_a_sentence(bitcask_cli: Runner) -> None:
    r = bitcask_cli("--http-port", str(free_port()), "health", connect=False)
    assert r.code == 2
    assert "[Errno" not in r.err and "connection refused (is the server running" in r.err


def test_import_error_names_the_code_once(bitcask_cli: Runner, tmp_path: Path) -> None:
    dump = tmp_path / "big.jsonl"
    dump.write_text(json.dumps({"key": "k" * 70_000, "value": "v"}) + "\n")
    r = bitcask_cli("import", str(dump))
    assert r.code == 2
    assert r.err.count("KEY_TOO_LARGE") == 1, r.err
    assert "(300)" not in r.err


def test_describe_shows_bytes_not_surrogates() -> None:
    exc = AuthRequiredError.local("x")
    assert "auth TOKEN" in describe(exc, ConnectOptions(), "shell")
    assert "--auth" in describe(exc, ConnectOptions(), "cli")
    assert describe(CommandError("no such file: caf\udcff"), ConnectOptions()) == (
        "no such file: caf\\xff"
    )


def test_a_server_that_accepts_and_never_answers_is_named_a_timeout(
    bitcask_cli: Runner, home_env: dict[str, str]
) -> None:
    """A hung server (listening, never replying): the handshake times out. The line
    used to end in 'CancelledError', the cancellation asyncio's timeout is made of."""
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen(8)
        port = listener.getsockname()[1]
        r = bitcask_cli("--port", str(port), "--timeout", "0.5", "get", "k", connect=False)
        assert r.code == 2
        assert r.err == f"(error) cannot connect to 127.0.0.1:{port}: no answer within 0.5 s\n"
        piped = subprocess.run(
            [sys.executable, "-m", "repl", "--port", str(port), "--timeout", "0.5"],
            input=b"get k\n", capture_output=True, env=home_env, timeout=TIMEOUT, check=False,
        )  # fmt: skip
        assert piped.returncode == 2
        assert piped.stderr.decode() == r.err


def test_an_endpoints_control_characters_never_reach_the_terminal(
    home_env: dict[str, str], tmp_path: Path
) -> None:
    """A hostile endpoint's error text is shown with its control bytes as \\xNN.

    The endpoint answers every command with an error line carrying an OSC title change
    and a clear-screen sequence; printed raw, the user's terminal would run them.
    """
    import threading

    evil = "\x1b]0;pwned\x07\x1b[2J evil \x9b1m".encode()  # U+009B: the C1 CSI
    listener = socket.create_server(("127.0.0.1", 0))
    port = listener.getsockname()[1]
    conns: list[socket.socket] = []

    def answer_errors() -> None:
        with contextlib.suppress(OSError):
            while True:
                conn, _ = listener.accept()
                conns.append(conn)
                while conn.recv(65536):
                    conn.sendall(b"-ERR " + evil + b"\r\n")

    threading.Thread(target=answer_errors, daemon=True).start()
    try:
        proc = subprocess.run(
            [sys.executable, "-m", "repl.cli", "--url", f"redis://127.0.0.1:{port}", "get", "k"],
            capture_output=True, env=home_env, cwd=tmp_path, timeout=TIMEOUT,
        )  # fmt: skip
    finally:
        listener.close()
        for conn in conns:
            conn.close()
    assert proc.returncode == 2
    assert proc.stdout == b""
    err = proc.stderr.decode("utf-8")
    assert err == "(error) ERR \\x1b]0;pwned\\x07\\x1b[2J evil \\x9b1m\n"
    assert not any(ord(ch) < 0x20 and ch != "\n" for ch in err)
