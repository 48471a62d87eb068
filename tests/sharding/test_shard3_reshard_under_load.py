"""`bitcask reshard` while clients keep writing through a real nutcracker, then the
docs' procedure finished: writes stopped, the same command run again, nutcracker
switched to the new config. No acknowledged write may be lost without a word:
every key answers, through the new proxy, its last acknowledged value, or the run
listed it ("changed during the move, left in place") for a person to settle. And a
shard down, wedged or refusing the token at the start: nothing moves, and the one
line says what to do.

Loopback ports; four real bitcask-servers (three, then a fourth), the CLI as a
child process; every process is killed when its test ends.
"""

from __future__ import annotations

import asyncio
import re
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from client import Ring, connect
from tests.serverproc import ServerProcess, free_port
from tests.sharding.conftest import Proc, Resp, nutcracker_yaml

OLD = ("shard-a", "shard-b", "shard-c")
NEW = (*OLD, "shard-d")
CLI = [sys.executable, "-c", "import sys; from repl.cli import main; sys.exit(main())"]
N_FILL = 6_000
N_WRITTEN = 300  # keys per writer
LISTED = re.compile(r"^  changed during the move, left in place: (b'.*'|b\".*\"): ", re.M)


def _writer(port: int, tag: bytes, acked: dict[bytes, bytes], stop: threading.Event) -> None:
    """Rewrite this writer's keys round after round through the proxy until `stop`."""
    conn = Resp(port)
    try:
        for rnd in range(10_000):
            for i in range(N_WRITTEN):
                if stop.is_set():
                    return
                key, value = b"%d:%s" % (i, tag), b"%s:%d" % (tag, rnd)
                assert conn.call("SET", key, value) == b"OK"
                acked[key] = value
                time.sleep(0.002)  # paced: flat out it took a core from the suite
    finally:
        conn.close()


def _reshard(old: Path, new: Path) -> subprocess.CompletedProcess[str]:
    argv = [*CLI, "reshard", "--from", str(old), "--to", str(new), "--page", "50"]
    return subprocess.run(argv, capture_output=True, text=True, timeout=300)


async def _holders(servers: dict[str, ServerProcess]) -> dict[bytes, list[str]]:
    where: dict[bytes, list[str]] = {}
    for name, srv in servers.items():
        async with connect("127.0.0.1", srv.port, timeout=10.0) as c:
            async for key in c.scan(count=5000):
                where.setdefault(key, []).append(name)
    return where


def test_reshard_while_writing_through_the_proxy_loses_no_write_silently(
    server_factory: Callable[..., ServerProcess],
    nutcracker: Callable[..., Proc],
    tmp_path: Path,
) -> None:
    servers = {name: server_factory() for name in NEW}
    listen = free_port()
    old, new = tmp_path / "old.yml", tmp_path / "new.yml"
    old.write_text(nutcracker_yaml("bitcask", listen, [(servers[n].port, 1, n) for n in OLD]))
    new.write_text(nutcracker_yaml("bitcask", listen, [(servers[n].port, 1, n) for n in NEW]))
    proxy = nutcracker(old.read_text(), listen)
    fill = {b"%d:fill" % i: b"f%d" % i for i in range(N_FILL)}
    conn = Resp(listen)
    try:
        items = list(fill.items())
        for start in range(0, N_FILL, 500):
            part = items[start : start + 500]
            assert conn.pipeline([("SET", k, v) for k, v in part]) == [b"OK"] * len(part)
    finally:
        conn.close()
    # two writers through the proxy (old config) for the whole first run
    acked: list[dict[bytes, bytes]] = [{}, {}]
    stop = threading.Event()
    writers = [
        threading.Thread(target=_writer, args=(listen, b"w%d" % i, acked[i], stop))
        for i in range(2)
    ]
    for w in writers:
        w.start()
    try:
        for _ in range(6_000):  # bounded (0.01 s steps): one full round before the run
            if all(len(a) == N_WRITTEN for a in acked) or not all(w.is_alive() for w in writers):
                break
            time.sleep(0.01)
        first = _reshard(old, new)
    finally:
        stop.set()
        for w in writers:
            w.join(60)
    assert not any(w.is_alive() for w in writers)
    assert first.returncode in (0, 1), first.stderr
    # the docs' procedure: writes stopped, then the same command again
    second = _reshard(old, new)
    assert second.returncode in (0, 1), second.stderr
    listed = {eval(m[1]) for run in (first, second) for m in LISTED.finditer(run.stdout)}
    # switch nutcracker to the new config, on the same port
    proxy.kill()
    (tmp_path / f"nutcracker-{listen}.yml").write_text(new.read_text())
    proxy.start()
    last = {**fill, **acked[0], **acked[1]}
    assert len(last) == N_FILL + 2 * N_WRITTEN
    keys = list(last)
    conn = Resp(listen)
    try:
        got: list[object] = []
        for start in range(0, len(keys), 500):
            got += conn.pipeline([("GET", k) for k in keys[start : start + 500]])
    finally:
        conn.close()
    lost = {k: (g, last[k]) for k, g in zip(keys, got, strict=True) if g != last[k]}
    assert set(lost) <= listed, {k: lost[k] for k in list(set(lost) - listed)[:5]}
    # and every key that nobody listed is on its new owner only
    ring = Ring([(n, 1) for n in NEW])
    where = asyncio.run(_holders(servers))
    misplaced = {
        k: where.get(k) for k in keys if k not in listed and where.get(k) != [ring.name_for(k)]
    }
    assert not misplaced, list(misplaced.items())[:5]
    # a listed key's newest value is on its old owner (nothing used the new ring yet)
    old_ring = Ring([(n, 1) for n in OLD])

    async def on_old_owner() -> dict[bytes, bytes | None]:
        out: dict[bytes, bytes | None] = {}
        for key in lost:
            srv = servers[old_ring.name_for(key)]
            async with connect("127.0.0.1", srv.port, timeout=10.0) as c:
                out[key] = await c.get(key)
        return out

    assert asyncio.run(on_old_owner()) == {k: last[k] for k in lost}


def _two_shards(
    server_factory: Callable[..., ServerProcess], tmp_path: Path, extra: list[str]
) -> tuple[dict[str, ServerProcess], list[str]]:
    """Shards a and b; the argv of `bitcask reshard` from a alone to a and b."""
    servers = {n: server_factory(sync="never", extra=extra) for n in ("a", "b")}
    old, new = tmp_path / "old.yml", tmp_path / "new.yml"
    old.write_text(nutcracker_yaml("p", free_port(), [(servers["a"].port, 1, "a")]))
    both = [(servers["a"].port, 1, "a"), (servers["b"].port, 1, "b")]
    new.write_text(nutcracker_yaml("p", free_port(), both))
    return servers, [*CLI, "reshard", "--from", str(old), "--to", str(new)]


@pytest.mark.parametrize("fault", ["down", "wedged"])
def test_a_reshard_to_a_shard_that_is_down_moves_nothing_and_says_what_to_do(
    server_factory: Callable[..., ServerProcess], tmp_path: Path, fault: str
) -> None:
    servers, argv = _two_shards(server_factory, tmp_path, [])
    argv += ["--timeout", "1"]
    keys = {b"%d:down" % i: b"v%d" % i for i in range(500)}

    async def fill() -> None:
        async with connect("127.0.0.1", servers["a"].port) as c:
            await c.mput(keys)

    asyncio.run(fill())
    b = servers["b"]
    if fault == "down":
        b.kill()
    else:
        assert b.proc is not None
        b.proc.send_signal(signal.SIGSTOP)
    try:
        run = subprocess.run(argv, capture_output=True, text=True, timeout=120)
    finally:
        if b.proc is not None:
            b.proc.send_signal(signal.SIGCONT)
    assert run.returncode == 2, run.stdout + run.stderr
    assert run.stdout == ""
    # one line: what happened, that nothing moved, what to do (it used to stop at the first)
    assert run.stderr.startswith(f"bitcask reshard: shard b (127.0.0.1:{b.port}): cannot connect")
    assert run.stderr.endswith(
        "; nothing was moved: start it (or correct its address in the config), "
        "then run the same command again\n"
    ), run.stderr
    assert run.stderr.count("\n") == 1
    if fault == "down":
        b.start()
    assert asyncio.run(_holders(servers)) == {k: ["a"] for k in keys}
    rerun = subprocess.run(argv, capture_output=True, text=True, timeout=120)
    assert rerun.returncode == 0, rerun.stderr
    ring = Ring([("a", 1), ("b", 1)])
    assert asyncio.run(_holders(servers)) == {k: [ring.name_for(k)] for k in keys}


def test_a_missing_or_wrong_token_is_named_in_the_commands_own_words(
    server_factory: Callable[..., ServerProcess], tmp_path: Path
) -> None:
    servers, argv = _two_shards(server_factory, tmp_path, ["--auth", "s3cret"])
    new = tmp_path / "new.yml"
    a = f"bitcask reshard: shard a (127.0.0.1:{servers['a'].port})"
    hint = (
        "nothing was moved; give the shards' token with --auth TOKEN "
        "(or redis_auth in the new config)\n"
    )
    # it used to say "pass auth= to connect()", the Python API's words
    for extra, why in (([], "needs a token"), (["--auth", "wrong"], "refused the token")):
        run = subprocess.run([*argv, *extra], capture_output=True, text=True, timeout=60)
        assert (run.returncode, run.stderr) == (2, f"{a} {why}: {hint}")
        assert "wrong" not in run.stderr
    new.write_text(new.read_text().replace("  servers:", "  redis_auth: s3cret\n  servers:"))
    run = subprocess.run(argv, capture_output=True, text=True, timeout=60)
    assert run.returncode == 0, run.stderr
