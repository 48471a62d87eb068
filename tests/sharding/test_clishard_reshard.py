"""`bitcask reshard`: the keys a run lists are settled by the command it prints.

3 -> 4 real bitcask-servers, 1,200 keys (200 with TTLs). Between a copy and its
delete one key of each old shard is written (a new value, a delete, a TTL change),
as writers that were not stopped would. The run lists them; before, a rerun listed
the ones on two shards again and nothing could settle them (nor the copy of the
deleted key, which no rerun sees). Now the run prints what to run: a rerun with
--settle (writers stopped: the old shard's value is the last written), and a delete
of the stale copy; running exactly those lines leaves every key on its new owner
only, with the last value written to it.
"""

from __future__ import annotations

import asyncio
import io
import shlex
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from client import Ring, connect, connect_sharded
from repl._reshard import _settle_hint, reshard
from tests.repl.redisprocs import redis_server
from tests.serverproc import ServerProcess, free_port
from tests.sharding.conftest import nutcracker_yaml
from tests.sharding.test_reshard import _contents

OLD = ("shard-a", "shard-b", "shard-c")
NEW = (*OLD, "shard-d")
N_KEYS = 1200
N_TTL = 200
BITCASK = [sys.executable, "-c", "import sys; from repl.cli import main; sys.exit(main())"]


def _keys() -> dict[bytes, bytes]:
    return {b"%d:key" % i: b"value-%d" % i for i in range(N_KEYS)}


def _ttl_key(key: bytes) -> bool:
    return int(key.split(b":")[0]) < N_TTL


async def _fill(servers: dict[str, ServerProcess]) -> None:
    async with connect_sharded({n: f"127.0.0.1:{servers[n].port}" for n in OLD}) as sc:
        for key, value in _keys().items():
            await sc.put(key, value, ttl=3600 if _ttl_key(key) else None)


@pytest.fixture
def layout(
    server_factory: Callable[..., ServerProcess], tmp_path: Path
) -> tuple[dict[str, ServerProcess], Path, Path]:
    servers = {name: server_factory() for name in NEW}
    old, new = tmp_path / "old.yml", tmp_path / "new.yml"
    old.write_text(nutcracker_yaml("bitcask", free_port(), [(servers[n].port, 1, n) for n in OLD]))
    new.write_text(nutcracker_yaml("bitcask", free_port(), [(servers[n].port, 1, n) for n in NEW]))
    asyncio.run(_fill(servers))
    return servers, old, new


def _run_printed(line: str) -> subprocess.CompletedProcess[str]:
    """Run a command line the report printed, with this checkout's `bitcask`."""
    words = shlex.split(line)
    assert words[0] == "bitcask", line
    return subprocess.run([*BITCASK, *words[1:]], capture_output=True, text=True, timeout=100)


def test_listed_keys_are_settled_by_the_printed_commands(
    layout: tuple[dict[str, ServerProcess], Path, Path],
) -> None:
    servers, old, new = layout
    victims: dict[str, bytes] = {}

    async def write_in_the_window(source: str, target: str, keys: list[bytes]) -> None:
        if source in victims or not keys:
            return
        key = victims[source] = next(k for k in keys if not _ttl_key(k))
        async with connect("127.0.0.1", servers[source].port) as c:
            if source == "shard-a":
                await c.put(key, b"written mid-move")
            elif source == "shard-b":
                assert await c.delete(key)
            else:
                assert await c.expire(key, 3600)

    report = asyncio.run(reshard(str(old), str(new), page=100, after_copy=write_in_the_window,
                                 progress=io.StringIO()))  # fmt: skip
    a, b, c = (victims[n] for n in OLD)
    assert len(report.changed) == 3 and report.settled == 0
    command = f"bitcask reshard --from {old} --to {new}"
    hint = io.StringIO()
    _settle_hint(report, command, hint)
    d = servers["shard-d"].port
    assert hint.getvalue().splitlines() == [
        "to settle the 2 key(s) listed on two shards (the old shard's value was written "
        "last, as long as every writer used the old config): stop the writers, then run",
        f"  {command} --settle",
        "1 key(s) were deleted from their old shard after their copy, which a rerun "
        "cannot see; with the writers stopped, delete the copies:",
        f"  bitcask --host 127.0.0.1 --port {d} delete {b.decode()}",
    ]

    # a plain rerun still only lists the two on both shards, and says what to run
    proc = _run_printed(command)
    assert proc.returncode == 1, proc.stdout + proc.stderr
    assert proc.stdout.splitlines()[0].endswith(" keys, moved 0")
    assert f"  {command} --settle" in proc.stdout.splitlines()

    # the printed lines, as printed: the rerun with --settle, then the delete
    settle = _run_printed(f"{command} --settle")
    assert settle.returncode == 0, settle.stdout + settle.stderr
    assert "  2 on two shards settled: the old shard's value kept" in settle.stdout.splitlines()
    assert "--settle" not in settle.stdout  # nothing left to settle
    deleted = _run_printed(f"bitcask --host 127.0.0.1 --port {d} delete {b.decode()}")
    assert (deleted.returncode, deleted.stderr) == (0, ""), deleted.stderr

    # every key on its new owner only, with the last value (and TTL) written to it
    ring = Ring([(n, 1) for n in NEW])
    expected = {k: (v, _ttl_key(k)) for k, v in _keys().items()}
    expected[a] = (b"written mid-move", False)
    del expected[b]
    expected[c] = (_keys()[c], True)
    seen: dict[bytes, Any] = {}
    for name, held in asyncio.run(_contents(servers)).items():
        for key, item in held.items():
            assert key not in seen, f"{key!r} on two shards"
            assert ring.name_for(key) == name, key
            seen[key] = item
    assert seen == expected
    # and a last rerun has nothing to do
    again = _run_printed(command)
    assert again.returncode == 0, again.stdout
    assert again.stdout.splitlines()[0].endswith(" keys, moved 0")


def test_settle_during_a_first_run_takes_the_old_value_at_once(
    layout: tuple[dict[str, ServerProcess], Path, Path],
) -> None:
    """--settle on the run that sees the writes: the deleted key's copy goes too."""
    servers, old, new = layout
    victims: dict[str, bytes] = {}

    async def delete_in_the_window(source: str, target: str, keys: list[bytes]) -> None:
        if source in victims or not keys:
            return
        key = victims[source] = next(k for k in keys if not _ttl_key(k))
        async with connect("127.0.0.1", servers[source].port) as c:
            assert await c.delete(key)

    report = asyncio.run(reshard(str(old), str(new), page=100, after_copy=delete_in_the_window,
                                 progress=io.StringIO(), settle=True))  # fmt: skip
    assert (report.changed, report.stale_copies, report.settled) == ([], [], 3)
    held = asyncio.run(_contents(servers))
    everywhere = {k for shard in held.values() for k in shard}
    assert everywhere == set(_keys()) - set(victims.values())
    assert sum(len(s) for s in held.values()) == N_KEYS - 3  # each key once


def test_a_redis_server_in_the_new_config_is_named_at_once_and_nothing_moves(
    layout: tuple[dict[str, ServerProcess], Path, Path], tmp_path: Path
) -> None:
    """A shard address that is a redis-server (a wrong port in the new file): the run
    used to wait out its timeout and say "start it"; it says what it is instead."""
    servers, old, _ = layout
    before = asyncio.run(_contents(servers))
    with redis_server(tmp_path) as port:
        shards = [(servers[n].port, 1, n) for n in OLD] + [(port, 1, "shard-d")]
        wrong = tmp_path / "wrong.yml"
        wrong.write_text(nutcracker_yaml("bitcask", free_port(), shards))
        proc = _run_printed(f"bitcask reshard --from {old} --to {wrong} --timeout 120")
    assert (proc.returncode, proc.stdout) == (2, ""), proc.stderr
    assert proc.stderr == (
        f"bitcask reshard: shard shard-d (127.0.0.1:{port}) is a Redis server, not a "
        "bitcask-server: nothing was moved; reshard moves keys between bitcask-servers "
        "(their binary port): correct its address in the config\n"
    )
    assert asyncio.run(_contents(servers)) == before
