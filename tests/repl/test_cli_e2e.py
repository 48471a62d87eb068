"""`bitcask` one-shot commands against a real server: output and exit codes."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

from tests.repl.conftest import Runner
from tests.serverproc import ServerProcess, free_port


def test_put_get_delete_and_exit_codes(bitcask_cli: Runner) -> None:
    r = bitcask_cli("put", "user:1", "Ada Lovelace")
    assert (r.code, r.out) == (0, b"OK\n")
    r = bitcask_cli("get", "user:1")
    assert (r.code, r.out) == (0, b"Ada Lovelace\n")
    r = bitcask_cli("GET", "missing")
    assert (r.code, r.out) == (1, b"\n")
    assert bitcask_cli("exists", "user:1").code == 0
    assert bitcask_cli("exists", "missing").code == 1
    assert bitcask_cli("delete", "user:1").out == b"1\n"
    r = bitcask_cli("del", "user:1")
    assert (r.code, r.out) == (1, b"0\n")


def test_ttl_mget_mput_scan_keys(bitcask_cli: Runner) -> None:
    assert bitcask_cli("mput", "u:1", "a", "u:2", "b", "v:1", "c").code == 0
    assert bitcask_cli("mget", "u:1", "nope", "u:2").out == b"a\n\nb\n"
    assert bitcask_cli("keys", "u:").out == b"u:1\nu:2\n"
    assert bitcask_cli("keys").out == b"u:1\nu:2\nv:1\n"
    assert bitcask_cli("scan", "u:", "", "1").out.splitlines()[1:] == [b"u:1"]
    r = bitcask_cli("ttl", "u:1")
    assert (r.code, r.out) == (0, b"-1\n")
    assert bitcask_cli("put", "s", "t", "TTL", "100").code == 0
    ttl = float(bitcask_cli("ttl", "s").out)
    assert 90 < ttl <= 100
    r = bitcask_cli("ttl", "gone")
    assert (r.code, r.out) == (1, b"-2\n")


def test_binary_arguments_pass_through_argv(bitcask_cli: Runner) -> None:
    assert bitcask_cli("put", "k", "caf\u00e9 \u2713").code == 0
    assert bitcask_cli("get", "k").out == "caf\u00e9 \u2713\n".encode()


def test_stats_ping_sync_merge_raw(bitcask_cli: Runner) -> None:
    bitcask_cli("put", "a", "1")
    stats = json.loads(bitcask_cli("stats").out)
    assert stats["keys"] == 1
    assert bitcask_cli("ping").out == b"PONG\n"
    assert bitcask_cli("ping", "hello").out == b"hello\n"
    assert bitcask_cli("sync").out == b"OK\n"
    assert bitcask_cli("merge").code == 0


def test_formatted_output_on_request(bitcask_cli: Runner) -> None:
    bitcask_cli("put", "b", "\u2713")
    assert bitcask_cli("--no-raw", "get", "b").out.decode() == '"\u2713"\n'
    assert bitcask_cli("--no-raw", "get", "zz").out == b"(nil)\n"


def test_errors_are_one_line_and_exit_2(bitcask_cli: Runner) -> None:
    r = bitcask_cli("get")
    assert r.code == 2
    assert r.err.strip() == "(error) 'get' needs KEY (usage: get KEY)"
    r = bitcask_cli("frobnicate")
    assert r.code == 2 and "unknown command 'frobnicate'" in r.err
    r = bitcask_cli("put", "k", "v", "TTL", "-1")
    assert r.code == 2 and "greater than 0" in r.err
    r = bitcask_cli("put", "x" * 70_000, "v")
    assert r.code == 2 and r.err.startswith("(error) KEY_TOO_LARGE")


def test_no_server_is_exit_2(bitcask_cli: Runner) -> None:
    r = bitcask_cli("--port", str(free_port()), "get", "k", connect=False)
    assert r.code == 2
    assert r.err.startswith("(error) cannot connect to 127.0.0.1:")
    assert len(r.err.strip().splitlines()) == 1


def test_environment_variables_choose_the_server(
    server: ServerProcess, bitcask_cli: Runner, home_env: dict[str, str]
) -> None:
    home_env["BITCASK_PORT"] = str(server.port)
    bitcask_cli("put", "e", "1")
    r = bitcask_cli("get", "e", connect=False)
    assert (r.code, r.out) == (0, b"1\n")


def test_health(bitcask_cli: Runner) -> None:
    r = bitcask_cli("health")
    assert r.code == 0
    assert json.loads(r.out)["status"] == "healthy"
    r = bitcask_cli("--http-port", str(free_port()), "health", connect=False)
    assert r.code == 2 and "cannot reach http://127.0.0.1:" in r.err


def test_help(bitcask_cli: Runner) -> None:
    r = bitcask_cli("help", connect=False)
    assert r.code == 0 and b"import FILE [--batch N]" in r.out
    r = bitcask_cli("help", "export", connect=False)
    assert r.out.startswith(b"export FILE [PREFIX]\n")


def test_stat_and_latency_are_bounded_by_count(bitcask_cli: Runner) -> None:
    r = bitcask_cli("stat", "--count", "3", "--interval", "0.1")
    assert r.code == 0
    lines = r.text.splitlines()
    assert lines[0].split() == ["keys", "keydir", "live", "dead", "disk", "ops/s", "conns"]
    assert len(lines) == 4
    assert lines[2].split()[-2] != "-"  # ops/s from the second sample on
    r = bitcask_cli("latency", "--count", "20", "--interval", "0")
    summary = json.loads(r.out)
    assert summary["samples"] == 20
    assert 0 < summary["min_ms"] <= summary["p50_ms"] <= summary["p99_ms"] <= summary["max_ms"]


def test_auth_token_from_flag_or_environment(
    server_factory: Callable[..., ServerProcess], home_env: dict[str, str], tmp_path: Path
) -> None:
    srv = server_factory(extra=["--auth", "s3cret"])

    def run(*args: str) -> subprocess.CompletedProcess[bytes]:
        return subprocess.run(
            [sys.executable, "-m", "repl.cli", "--port", str(srv.port), *args],
            capture_output=True, env=home_env, timeout=60,
        )  # fmt: skip

    r = run("get", "k")
    assert r.returncode == 2 and r.stderr.startswith(b"(error) AUTH_REQUIRED")
    r = run("--auth", "wrong", "get", "k")
    assert r.returncode == 2 and r.stderr.startswith(b"(error) AUTH_FAILED")
    assert run("--auth", "s3cret", "put", "k", "v").returncode == 0
    home_env["BITCASK_AUTH"] = "s3cret"
    assert run("get", "k").stdout == b"v\n"


def test_no_command_prints_the_list_and_exits_2(bitcask_cli: Runner) -> None:
    r = bitcask_cli(connect=False)
    assert r.code == 2
    assert "usage: bitcask" in r.err and "Keys and values:" in r.err
