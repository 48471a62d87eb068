"""The real `bitcask-shell` over the Redis protocol, through a pseudo-terminal.

The same prompt, completion, help and output formats as over the binary protocol,
against (a) a bitcask-server's RESP dialect (--redis), (b) a real redis-server with a
password in a redis:// URL, (c) twemproxy in front of two bitcask-servers.
"""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

from tests.repl.conftest import need_binary
from tests.repl.redisprocs import nutcracker, redis_server
from tests.repl.test_shell_e2e import Screen
from tests.serverproc import ServerProcess

REFUSED_MERGE = (
    r"\(error\) merge \(compacting data files\) is not part of the Redis protocol: "
    r"redis://127\.0\.0\.1:\d+ cannot run it"
)


def test_bitcask_resp_dialect(server: ServerProcess, home_env: dict[str, str]) -> None:
    s = Screen(server.port, home_env, "--redis")
    try:
        first = s.expect(rf"127\.0\.0\.1:{server.port} \| redis \S+ \| 0 keys \| rtt")
        assert "Type help for commands" in first
        s.run('put user:alpha "hello world"', r"OK")
        s.expect(r"\| 1 key \| rtt \d+\.\d+ m?s")  # the key count comes from INFO
        s.run("mput user:beta 2 other 3", r"OK")
        s.expect(r"\| 3 keys \| rtt")
        # Tab completes a key seen in a reply, and a command name, as over binary
        s.child.send("get user:a\t")
        s.expect(r"get user:alpha")
        s.run("", r'"hello world"')
        s.prompt()
        s.child.send("mge\t")
        s.expect(r"mget")
        s.run(" user:alpha nope", r'1\) "hello world"\s+2\) \(nil\)')
        s.run("ttl user:alpha", r"\(no ttl\)")
        s.run("put s v TTL 30", r"OK")
        s.run("ttl s", r"\(ttl\) \d+(\.\d+)? s")
        s.run("incr visits BY 5", r"\(integer\) 5")
        s.run("set user:alpha x NX", r"\(nil\)")
        s.run("keys user:", r'1\) "user:alpha"\s+2\) "user:beta"')
        s.run("help put", r"put KEY VALUE \[TTL SECONDS\]")
        s.run("merge", REFUSED_MERGE)
        s.run("get user:beta", r'"2"')  # the refusal left the connection alone
        s.prompt()
        s.child.send("quit\r")
        assert s.wait_exit() == 0
    finally:
        s.close()


def test_redis_server_with_a_password(tmp_path: Path, home_env: dict[str, str]) -> None:
    home_env["PAGER"] = "cat"  # INFO is longer than the screen: no interactive pager
    with redis_server(tmp_path, password="s3cret") as port:
        s = Screen(port, home_env, "--url", f"redis://:s3cret@127.0.0.1:{port}")
        try:
            s.expect(rf"127\.0\.0\.1:{port} \| redis 7\S* \| 0 keys")
            s.run("put counter 41", r"OK")
            s.run("incr counter", r"\(integer\) 42")
            s.run("get counter", r'"42"')
            s.run("exists nope", r"\(false\)")
            s.run("auth wrong", rf"\(error\) AUTH_FAILED 127\.0\.0\.1:{port} refused the token")
            s.run("get counter", r'"42"')  # the previous password stays in use
            s.run("stats", r"redis_version")
            s.run("sync", r"\(error\) sync \(fsync on demand\) is not part of the Redis protocol")
            s.prompt()
            s.child.sendeof()
            assert s.wait_exit() == 0
        finally:
            s.close()


def test_nutcracker_in_front_of_bitcask_servers(
    server_factory: Callable[..., ServerProcess], tmp_path: Path, home_env: dict[str, str]
) -> None:
    backends = [server_factory().port, server_factory().port]
    with nutcracker(tmp_path, backends) as port:
        s = Screen(port, home_env, "--redis")
        try:
            # twemproxy closes the connection on INFO: no key count, still connected
            s.expect(rf"127\.0\.0\.1:{port} \| redis \| \? keys \| rtt")
            for i in range(6):
                s.run(f"put key:{i} v{i}", r"OK")
            s.run("mget key:0 key:5 nope", r'1\) "v0"\s+2\) "v5"\s+3\) \(nil\)')
            # the endpoint closes on SCAN, and again when keys is retried on a fresh
            # connection (as after a restart); from then on it is refused unsent
            s.run(
                "keys",
                rf"\(error\) 127\.0\.0\.1:{port} closed the connection instead of answering SCAN",
            )
            s.run("get key:3", r'"v3"')  # reconnected on its own
            s.run("keys", rf"\(error\) 127\.0\.0\.1:{port} does not support SCAN")
            s.run("merge", REFUSED_MERGE)
            s.run("delete key:3", r"\(true\)")
            s.prompt()
            s.child.send("quit\r")
            assert s.wait_exit() == 0
        finally:
            s.close()
        # each shard holds some of the keys: the proxy really spread them
        counts = []
        for backend in backends:
            r = subprocess.run(
                [sys.executable, "-m", "repl.cli", "--redis", "--port", str(backend), "keys"],
                capture_output=True,
                env=home_env,
                timeout=60,
            )
            counts.append(len(r.stdout.splitlines()))
        assert sum(counts) == 5


def test_piped_shell_over_redis(server: ServerProcess, home_env: dict[str, str]) -> None:
    r = subprocess.run(
        [sys.executable, "-m", "repl", "--url", f"redis://127.0.0.1:{server.port}"],
        input=b"put a 1\nget a\nget missing\nmerge\nexists a\n",
        capture_output=True,
        env=home_env,
        timeout=60,
    )
    assert r.stdout == b"OK\n1\n\n1\n"
    assert r.stderr.decode().startswith("(error) merge (compacting data files) is not part")
    assert r.returncode == 2


def test_stat_shows_ops_per_second_of_a_redis_server(
    tmp_path: Path, home_env: dict[str, str]
) -> None:
    """`stat` over redis:// read no request counter from INFO: ops/s stayed "-"."""
    with redis_server(tmp_path) as port:
        r = subprocess.run(
            [sys.executable, "-m", "repl.cli", "--redis", "--port", str(port),
             "stat", "--count", "3", "--interval", "0.05"],
            capture_output=True, env=home_env, timeout=60, check=False,
        )  # fmt: skip
    assert r.returncode == 0, r.stderr
    rows = r.stdout.decode().splitlines()
    assert rows[0].split() == ["keys", "keydir", "live", "dead", "disk", "ops/s", "conns"]
    assert rows[1].split()[5] == "-"  # no rate before a second sample
    assert all(row.split()[5].replace(",", "").isdigit() for row in rows[2:]), rows


def test_export_from_redis_names_the_keys_it_cannot_carry(
    tmp_path: Path, home_env: dict[str, str]
) -> None:
    """MGET answers nil for a hash or a list: export wrote the strings, said "exported
    1 key" and exited 0, silently leaving out the rest of the keyspace."""
    cli = need_binary("redis-cli", "redis-tools")
    with redis_server(tmp_path) as port:
        for cmd in (["HSET", "h", "f", "v"], ["RPUSH", "l", "a"], ["SET", "s", "1"]):
            subprocess.run([cli, "-p", str(port), *cmd], check=True, capture_output=True)
        dump = tmp_path / "dump.jsonl"
        r = subprocess.run(
            [sys.executable, "-m", "repl.cli", "--redis", "--port", str(port), "export", str(dump)],
            capture_output=True, env=home_env, timeout=60, check=False,
        )  # fmt: skip
    assert r.returncode == 2
    err = r.stderr.decode().splitlines()
    assert err[0].startswith(f"exported 1 key to {dump}")
    assert err[1].startswith("(error) 2 keys not exported: not strings (h, l); ")
    assert dump.read_text() == '{"key": "s", "value": "1"}\n'  # what it could carry is there
