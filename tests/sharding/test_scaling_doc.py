"""docs/scaling.md is true: its configs start a real nutcracker, its program runs as shown.

The configs name 10.0.1.x addresses; each test rewrites them (and the listen
port) to local backends on free loopback ports, keeping names and weights, which
are what placement depends on. Backends are redis-server until bitcask-server
speaks the Redis dialect (the doc says so).
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
import textwrap
from collections.abc import Callable
from pathlib import Path

from client._ketama import Ring, points_per_server, read_nutcracker_config
from tests.serverproc import ServerProcess, free_port
from tests.sharding.conftest import Proc, Resp, RespError, require

ROOT = Path(__file__).resolve().parents[2]
DOC = ROOT / "docs" / "scaling.md"
_SERVER_LINE = re.compile(r"^(?P<lead>\s*- )(?P<addr>\S+:\d+):(?P<weight>\d+) (?P<name>\S+)$")


def _section(heading: str) -> str:
    text = DOC.read_text(encoding="utf-8")
    return text.split(f"\n## {heading}\n", 1)[1].split("\n## ", 1)[0]


def _block(heading: str, lang: str, index: int = 0) -> str:
    blocks = re.findall(rf"```{lang}\n(.*?)```", _section(heading), re.S)
    return str(blocks[index])


def _rewrite(config: str, listen: int, ports: dict[str, int]) -> str:
    out = []
    for line in config.splitlines():
        m = _SERVER_LINE.match(line)
        if m:
            line = f"{m['lead']}127.0.0.1:{ports[m['name']]}:{m['weight']} {m['name']}"
        elif line.strip().startswith("listen:"):
            line = re.sub(r"listen: \S+", f"listen: 127.0.0.1:{listen}", line)
        out.append(line)
    return "\n".join(out) + "\n"


def _names(config: str) -> list[str]:
    (pool,) = read_nutcracker_config(config).values()
    return [s.name for s in pool.servers]


def test_the_proxy_config_places_keys_as_the_client_does(
    redis_backend: Callable[[str], Proc], nutcracker: Callable[[str, int], Proc]
) -> None:
    config = _block("The proxy config", "yaml")
    (pool,) = read_nutcracker_config(config).values()
    assert pool.options["redis"] == "true"
    ring = pool.ring()  # refuses anything but fnv1a_64 + ketama, no ejection
    backends = {name: redis_backend(name) for name in _names(config)}
    listen = free_port()
    proxy = nutcracker(_rewrite(config, listen, {n: b.port for n, b in backends.items()}), listen)
    keys = [b"%d:doc" % i for i in range(600)]
    conn = Resp(proxy.port)
    try:
        assert conn.pipeline([("SET", k, k) for k in keys]) == [b"OK"] * len(keys)
        assert conn.pipeline([("GET", k) for k in keys]) == keys
    finally:
        conn.close()
    for name, backend in backends.items():
        direct = Resp(backend.port)
        try:
            assert direct.keys() == {k for k in keys if ring.name_for(k) == name}
        finally:
            direct.close()


def test_redis_auth_through_the_proxy(
    start_proc: Callable[[list[str], int, str], Proc], nutcracker: Callable[[str, int], Proc]
) -> None:
    config = _block("Security between hosts", "yaml")
    (pool,) = read_nutcracker_config(config).values()
    token = pool.options["redis_auth"]
    binary = require("redis-server", "redis-server")
    ports: dict[str, int] = {}
    for name in _names(config):
        port = free_port()
        argv = [binary, "--port", str(port), "--bind", "127.0.0.1", "--save", "",
                "--appendonly", "no", "--requirepass", token]  # fmt: skip
        start_proc(argv, port, f"redis-auth-{name}")
        ports[name] = port
    listen = free_port()
    nutcracker(_rewrite(config, listen, ports), listen)
    conn = Resp(listen)
    try:
        refused = conn.call("GET", "k")
        assert isinstance(refused, RespError) and "NOAUTH" in refused.message
        wrong = conn.call("AUTH", "wrong")
        assert isinstance(wrong, RespError)
        assert conn.call("AUTH", token) == b"OK"
        keys = [b"%d:auth" % i for i in range(60)]
        assert conn.pipeline([("SET", k, k) for k in keys]) == [b"OK"] * len(keys)
        assert conn.pipeline([("GET", k) for k in keys]) == keys
    finally:
        conn.close()


def test_the_kubernetes_nutcracker_config_is_valid() -> None:
    binary = require("nutcracker", "nutcracker")
    manifest = _block("Kubernetes", "yaml", 1)
    embedded = manifest.split("nutcracker.yml: |\n", 1)[1].split("---", 1)[0]
    config = textwrap.dedent(embedded)
    assert read_nutcracker_config(config)["bitcask"].ring().names == (
        "bitcask-0",
        "bitcask-1",
        "bitcask-2",
    )
    conf = Path(os.environ.get("TMPDIR", "/tmp")) / f"nutcracker-k8s-{os.getpid()}.yml"
    conf.write_text(config, encoding="utf-8")
    try:
        check = subprocess.run(
            [binary, "--test-conf", "--conf-file", str(conf)],
            capture_output=True,
            text=True,
            timeout=30,
        )
    finally:
        conf.unlink()
    assert check.returncode == 0, check.stdout + check.stderr


def test_the_sharded_client_program_prints_what_the_doc_says(
    server_factory: Callable[..., ServerProcess], tmp_path: Path
) -> None:
    section = _section("The sharded client")
    program = _block("The sharded client", "python")
    expected = re.search(r"It prints:\n\n```\n(.*?)```", section, re.S)
    assert expected is not None
    for i, name in enumerate(("shard-a", "shard-b", "shard-c"), 1):
        srv = server_factory()
        address = f"10.0.1.{i}:7379"
        assert f'"{name}": "{address}"' in program
        program = program.replace(address, f"127.0.0.1:{srv.port}")
    script = tmp_path / "sharded_app.py"
    script.write_text(program, encoding="utf-8")
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    proc = subprocess.run(
        [sys.executable, str(script)], capture_output=True, text=True, timeout=60, env=env
    )
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.splitlines() == expected.group(1).splitlines()


def test_the_documented_reshard_counts_are_the_rings() -> None:
    """The dry-run output in "Adding a shard" is what the rings give for its 20,000 keys
    (test_reshard.py's key names; that file fills fewer)."""
    from tests.sharding.test_reshard import _expected_moves

    block = _block("Adding a shard", "text")
    assert "scanned 20000 keys" in block
    moves = _expected_moves(20_000)
    assert f"would move {sum(moves.values())}\n" in block
    for (source, target), n in moves.items():
        assert f"  {source} -> {target}: {n}\n" in block


def _moves(old: list[tuple[str, int]], new: list[tuple[str, int]]) -> tuple[int, int]:
    """(keys that move, keys that move between shards of the old ring), of user:0..99999."""
    before, after = Ring(old), Ring(new)
    added = set(after.names) - set(before.names)
    moved = between = 0
    for i in range(100_000):
        key = b"user:%d" % i
        a, b = before.name_for(key), after.name_for(key)
        if a != b:
            moved += 1
            between += b not in added
    return moved, between


def test_the_keys_moved_by_adding_a_shard_are_as_the_doc_says() -> None:
    # the doc used to say keys never move between the old shards; with weights, or
    # across 25 shards, they do (and bitcask reshard moves them too)
    section = _section("Adding a shard")
    three = [("shard-a", 1), ("shard-b", 1), ("shard-c", 1)]
    assert _moves(three, [*three, ("shard-d", 1)]) == (25_708, 0)
    assert "moves 25.7% of them, every one of them to `shard-d`" in section
    assert _moves(three, [*three, ("shard-d", 2)]) == (44_647, 5_957)
    assert "44.6% of those 100,000 keys move, 6.0% of them between old shards" in section
    shards = [(f"shard-{i:02d}", 1) for i in range(25)]
    assert _moves(shards[:24], shards) == (6_543, 2_588)
    assert "6.5% move, 2.6%\n  between old shards" in section
    counts = [n for n in range(1, 101) if points_per_server(1, n, n) != 160]
    assert counts == [25, 47, 50, 55, 61, 71, 94, 100]
    assert "(25, 47, 50, 55, 61, 71, 94, 100, ...\nshards)" in section


def test_long_keys_through_the_proxy_are_as_the_doc_says(
    server_factory: Callable[..., ServerProcess], nutcracker: Callable[..., Proc]
) -> None:
    # nutcracker needs a key in one mbuf: 16,335 bytes at most with its default size,
    # while a bitcask-server takes 64 KiB keys; --mbuf-size 65600 carries those
    section = _section("Commands through the proxy")
    assert "a key longer than 16,335 bytes gets no reply" in section
    assert "`--mbuf-size 65600`" in section
    shard = server_factory()
    for args, longest in (((), 16_335), (("--mbuf-size", "65600"), 64 * 1024)):
        listen = free_port()
        config = f"p:\n  listen: 127.0.0.1:{listen}\n  redis: true\n  servers:\n"
        config += f"   - 127.0.0.1:{shard.port}:1 a\n"
        proxy = nutcracker(config, listen, args=args)
        for size, served in ((longest, True), (longest + 1, False)):
            conn = Resp(proxy.port)
            try:
                reply: object = conn.call("SET", b"k" * size, b"v")
            except ConnectionError:
                reply = None
            finally:
                conn.close()
            if served:
                assert reply == b"OK", (args, size)
            else:  # nutcracker resets the connection; the server refuses with an error
                assert reply is None or isinstance(reply, RespError), (args, size, reply)
