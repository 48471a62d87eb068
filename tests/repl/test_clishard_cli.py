"""`bitcask` pointed at the wrong thing: a server's own HTTP port for health, a
redis-server without --redis. Real servers, real processes, loopback only.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from tests.repl.conftest import TIMEOUT, Result
from tests.repl.redisprocs import nutcracker, redis_server
from tests.serverproc import ServerProcess, free_port

# --timeout for the redis-server cases: the old client waited all of it; a run that
# does is stopped by WAIT (subprocess.TimeoutExpired), well before
LONG = 120
WAIT = 60.0
assert WAIT < LONG and WAIT <= TIMEOUT


def _bitcask(env: dict[str, str], cwd: Path, *args: str, stdin: bytes = b"") -> Result:
    proc = subprocess.run(
        [sys.executable, "-m", "repl.cli", *args],
        input=stdin, capture_output=True, env=env, cwd=cwd, timeout=WAIT,
    )  # fmt: skip
    return Result(proc.returncode, proc.stdout, proc.stderr.decode("utf-8", "replace"))


def _shell(env: dict[str, str], cwd: Path, *args: str, stdin: bytes) -> Result:
    proc = subprocess.run(
        [sys.executable, "-m", "repl.shell", *args],
        input=stdin, capture_output=True, env=env, cwd=cwd, timeout=WAIT,
    )  # fmt: skip
    return Result(proc.returncode, proc.stdout, proc.stderr.decode("utf-8", "replace"))


def _one_line(r: Result) -> str:
    assert "Traceback" not in r.err, r.err
    lines = r.err.splitlines()
    assert len(lines) == 1, r.err
    return lines[0]


# -- health finds the HTTP port of the server on --port ---------------------------


def test_health_asks_the_server_on_port_for_its_http_port(
    server: ServerProcess, home_env: dict[str, str], tmp_path: Path
) -> None:
    assert _bitcask(home_env, tmp_path, "--port", str(server.port), "put", "k", "v").code == 0
    r = _bitcask(home_env, tmp_path, "--port", str(server.port), "--raw", "health")
    assert (r.code, r.err) == (0, ""), r.err
    answer = json.loads(r.out)
    # this server's answer (one key), not whatever listens on 7380
    assert (answer["status"], answer["keys"]) == ("healthy", 1)
    # the key is still there and still the same
    assert (
        _bitcask(home_env, tmp_path, "--port", str(server.port), "--raw", "get", "k").out == b"v\n"
    )


def test_health_given_http_port_is_asked_without_the_binary_port(
    server: ServerProcess, home_env: dict[str, str], tmp_path: Path
) -> None:
    down = str(free_port())  # nothing listens there: --http-port alone is enough
    r = _bitcask(home_env, tmp_path, "--port", down, "--http-port", str(server.http_port),
                 "--raw", "health")  # fmt: skip
    assert (r.code, r.err, json.loads(r.out)["status"]) == (0, "", "healthy")
    env = {**home_env, "BITCASK_HTTP_PORT": str(server.http_port)}
    r = _bitcask(env, tmp_path, "--port", down, "--raw", "health")
    assert (r.code, r.err, json.loads(r.out)["status"]) == (0, "", "healthy")


def test_health_of_a_down_port_names_http_port(home_env: dict[str, str], tmp_path: Path) -> None:
    port = free_port()
    r = _bitcask(home_env, tmp_path, "--port", str(port), "health")
    assert (r.code, r.out) == (2, b"")
    line = _one_line(r)
    assert line.startswith(f"(error) cannot connect to 127.0.0.1:{port}: connection refused")
    assert "--http-port" in line


# -- a redis-server without --redis -------------------------------------------------


def test_cli_at_a_redis_server_without_redis_says_so_at_once(
    home_env: dict[str, str], tmp_path: Path
) -> None:
    with redis_server(tmp_path) as port:
        subprocess.run(["redis-cli", "-p", str(port), "set", "k", "v"], check=True,
                       capture_output=True, timeout=WAIT)  # fmt: skip
        for args in (["ping"], ["get", "k"], ["put", "k", "other"], ["keys"]):
            r = _bitcask(home_env, tmp_path, "--port", str(port), "--timeout", str(LONG), *args)
            assert (r.code, r.out) == (2, b""), args
            assert _one_line(r) == (
                f"(error) cannot connect to 127.0.0.1:{port}: it is a Redis server (it "
                "answers the Redis protocol, not bitcask's): add --redis (or use a "
                "redis:// URL) to talk to it"
            )
        # nothing was written by the refused put; with --redis the same command works
        r = _bitcask(home_env, tmp_path, "--redis", "--port", str(port), "--raw", "get", "k")
        assert (r.code, r.out, r.err) == (0, b"v\n", "")


def test_shell_at_a_redis_server_without_redis_says_so_at_once(
    home_env: dict[str, str], tmp_path: Path
) -> None:
    with redis_server(tmp_path) as port:
        r = _shell(home_env, tmp_path, "--port", str(port), "--timeout", str(LONG),
                   stdin=b"ping\nget k\n")  # fmt: skip
        assert (r.code, r.out) == (2, b"")
        assert "Traceback" not in r.err
        assert set(r.err.splitlines()) == {
            f"(error) cannot connect to 127.0.0.1:{port}: it is a Redis server (it "
            "answers the Redis protocol, not bitcask's): add --redis (or use a "
            "redis:// URL) to talk to it"
        }


def test_redis_with_a_password_gets_the_hint_after_the_timeout(
    home_env: dict[str, str], tmp_path: Path
) -> None:
    """NOAUTH could be a bitcask-server's RESP too (a slow one): not refused early,
    but the timeout's line says what answered."""
    with redis_server(tmp_path, password="sekrit") as port:
        r = _bitcask(home_env, tmp_path, "--port", str(port), "--timeout", "1", "ping")
        assert (r.code, r.out) == (2, b"")
        assert _one_line(r) == (
            f"(error) cannot connect to 127.0.0.1:{port}: no answer within 1 s; it "
            "answers the Redis protocol: add --redis (or use a redis:// URL) to talk to it"
        )


def test_twemproxy_without_redis_is_one_line(
    server: ServerProcess, home_env: dict[str, str], tmp_path: Path
) -> None:
    with nutcracker(tmp_path, [server.port]) as port:
        r = _bitcask(home_env, tmp_path, "--port", str(port), "--timeout", str(LONG), "ping")
        assert (r.code, r.out) == (2, b"")
        line = _one_line(r)
        assert line.startswith(f"(error) cannot connect to 127.0.0.1:{port}: "), line
        assert "--redis" in line, line


def test_a_silent_port_is_not_taken_for_redis(home_env: dict[str, str], tmp_path: Path) -> None:
    """A port that accepts and never answers (neither the hello nor the probe): the
    plain timeout line, no Redis hint."""
    import socket

    with socket.create_server(("127.0.0.1", 0), backlog=16) as listener:
        port = listener.getsockname()[1]
        r = _bitcask(home_env, tmp_path, "--port", str(port), "--timeout", "1", "ping")
    assert (r.code, r.out) == (2, b"")
    assert _one_line(r) == f"(error) cannot connect to 127.0.0.1:{port}: no answer within 1 s"
