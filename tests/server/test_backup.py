"""Online backup through a real server: snapshot_begin/read/end and Client.backup."""

from __future__ import annotations

import asyncio
import random
import signal
import subprocess
import sys
import textwrap
import time
import urllib.request
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

import bitcask
from client import (
    AuthRequiredError,
    BackupError,
    Client,
    MergeInProgressError,
    SnapshotGoneError,
    connect,
)
from tests.serverproc import ServerProcess

Factory = Callable[..., ServerProcess]
SMALL_FILES = ["--max-file-size", "65536", "--merge-trigger", "0"]


async def fill(c: Client, n: int, tag: bytes, size: int = 200) -> dict[bytes, bytes]:
    model = {}
    for start in range(0, n, 100):
        pairs = {
            b"k%05d" % i: tag + b"-%d-" % i + b"x" * size for i in range(start, min(n, start + 100))
        }
        await c.mput(pairs)
        model |= pairs
    return model


def contents(path: Path) -> tuple[dict[bytes, bytes], bitcask.RecoveryReport]:
    with bitcask.open(path) as db:
        return dict(db.items()), db.recovery


def data_files(path: Path) -> set[str]:
    return {p.name for p in path.glob("*.data")}


# --------------------------------------------------------------- under load


Op = tuple[str, Any]


def apply(state: dict[bytes, bytes], op: Op) -> None:
    kind, arg = op
    if kind == "put":
        state[arg[0]] = arg[1]
    elif kind == "delete":
        state.pop(arg, None)
    else:
        for sub in arg:
            apply(state, sub)


async def writer(c: Client, w: int, stop: asyncio.Event, log: list[tuple[Op, float]]) -> None:
    """Puts, deletes and batches on keys of its own; logs each op when acknowledged."""
    rnd = random.Random(w)
    n = 0
    while not stop.is_set() and n < 3000:
        n += 1
        key = b"w%02d:%02d" % (w, rnd.randrange(40))
        roll = rnd.random()
        op: Op
        if roll < 0.6:
            value = b"%d-%d" % (w, n) + b"." * rnd.randrange(300)
            await c.put(key, value)
            op = ("put", (key, value))
        elif roll < 0.8:
            await c.delete(key)
            op = ("delete", key)
        else:
            subs: list[Op] = []
            b = c.batch()
            for j in range(4):
                k = b"w%02d:%02d" % (w, rnd.randrange(40))
                if j == 3:
                    b.delete(k)
                    subs.append(("delete", k))
                else:
                    v = b"%d-%d-b%d" % (w, n, j)
                    b.put(k, v)
                    subs.append(("put", (k, v)))
            await b.execute()
            op = ("batch", subs)
        log.append((op, time.monotonic()))


async def test_backup_under_load_holds_every_acknowledged_write(
    server_factory: Factory, tmp_path: Path
) -> None:
    srv = server_factory(sync="never", extra=SMALL_FILES)
    stop = asyncio.Event()
    logs: list[list[tuple[Op, float]]] = [[] for _ in range(20)]
    clients = [await connect(srv.host, srv.port, timeout=30) for _ in range(21)]
    try:
        tasks = [asyncio.create_task(writer(clients[w], w, stop, logs[w])) for w in range(20)]
        while sum(map(len, logs)) < 400 and not any(t.done() for t in tasks):
            await asyncio.sleep(0.01)
        sent = time.monotonic()
        report = await clients[20].backup(tmp_path / "backup")
        answered = time.monotonic()
        while sum(len(log) for log in logs) < 800 + sum(
            1 for log in logs for _, t in log if t <= answered
        ) and not any(t.done() for t in tasks):
            await asyncio.sleep(0.01)  # keep writing well past the backup
        stop.set()
        await asyncio.gather(*tasks)
    finally:
        for c in clients:
            await c.close()
    assert report.files >= 2
    got, recovery = contents(tmp_path / "backup")
    assert recovery.scanned_files == 0 and recovery.events == ()
    for w, log in enumerate(logs):
        must = sum(1 for _, t in log if t < sent)  # acknowledged before snapshot_begin was sent
        mine = {k: v for k, v in got.items() if k.startswith(b"w%02d:" % w)}
        state: dict[bytes, bytes] = {}
        prefixes = []
        for i, (op, _) in enumerate(log):
            if state == mine:
                prefixes.append(i)
            apply(state, op)
        if state == mine:
            prefixes.append(len(log))
        # The backup holds exactly a prefix of this writer's acknowledged operations
        # (batches whole) that includes everything acknowledged before the request.
        assert any(p >= must for p in prefixes), (w, must, prefixes)


# --------------------------------------------------------------- merges


async def test_merge_during_a_snapshot_deletes_nothing_it_needs(
    server_factory: Factory, tmp_path: Path
) -> None:
    srv = server_factory(sync="never", extra=SMALL_FILES)
    async with connect(srv.host, srv.port, timeout=60) as c:
        old = await fill(c, 2000, b"old")
        begun = await c._call("snapshot_begin", [], None)
        pinned = {f["name"] for f in begun["files"] if f["name"].endswith(".data")}
        new = await fill(c, 2000, b"new")  # every old value is dead now
        report = await c.merge()
        assert not {f"{fid:010d}.data" for fid in report["inputs"]} & pinned
        assert pinned <= data_files(srv.data)
        dest = tmp_path / "copy"
        dest.mkdir()
        for f in begun["files"]:
            with open(dest / f["name"], "wb") as out:
                for off in range(0, f["size"], 1 << 20):
                    out.write(
                        await c._call("snapshot_read", [begun["id"], f["name"], off, 1 << 20], None)
                    )
        ended = await c._call("snapshot_end", [begun["id"]], None)
        assert ended["complete"]
        report = await c.merge()  # released: now the old files go
        assert not pinned & data_files(srv.data)
        assert {k: await c.get(k) for k in new} == new
    assert contents(dest)[0] == old


async def test_a_snapshot_and_a_merge_at_the_same_time_both_finish(
    server_factory: Factory, tmp_path: Path
) -> None:
    srv = server_factory(sync="never", extra=SMALL_FILES)
    async with (
        connect(srv.host, srv.port, timeout=60) as c,
        connect(srv.host, srv.port, timeout=60) as m,
    ):
        await fill(c, 3000, b"a")
        model = await fill(c, 3000, b"b")

        async def merge() -> Any:
            try:
                return await m.merge()
            except MergeInProgressError:  # it met the snapshot's cut: retry once
                return await m.merge()

        merged, report = await asyncio.gather(merge(), c.backup(tmp_path / "b"))
        assert merged["inputs"]
        assert report.bytes > 0
        await c.merge()
    assert contents(tmp_path / "b")[0] == model


# --------------------------------------------------------------- failures

KILLED_CLIENT = textwrap.dedent(
    """
    import asyncio, sys
    from client import connect

    async def main():
        c = await connect("127.0.0.1", int(sys.argv[1]), timeout=30)
        begun = await c._call("snapshot_begin", [], None)
        f = begun["files"][0]
        await c._call("snapshot_read", [begun["id"], f["name"], 0, 4096], None)
        print(" ".join(x["name"] for x in begun["files"]), flush=True)
        await asyncio.sleep(60)

    asyncio.run(main())
    """
)


async def test_a_killed_client_releases_its_pins(server_factory: Factory, tmp_path: Path) -> None:
    srv = server_factory(sync="never", extra=SMALL_FILES)
    async with connect(srv.host, srv.port, timeout=60) as c:
        await fill(c, 2000, b"old")
        proc = subprocess.Popen(
            [sys.executable, "-c", KILLED_CLIENT, str(srv.port)],
            stdout=subprocess.PIPE,
            cwd=Path(__file__).parents[2],
        )
        try:
            line = await asyncio.wait_for(asyncio.to_thread(proc.stdout.readline), 30)  # type: ignore[union-attr]
        finally:
            proc.send_signal(signal.SIGKILL)
            proc.wait(10)
        pinned = {n for n in line.decode().split() if n.endswith(".data")}
        assert pinned
        model = await fill(c, 2000, b"new")
        for _ in range(100):  # the server notices the closed connection soon
            await c.merge()
            if not pinned & data_files(srv.data):
                break
            await asyncio.sleep(0.05)
        assert not pinned & data_files(srv.data)
        await c.backup(tmp_path / "next")
    assert contents(tmp_path / "next")[0] == model


async def test_an_idle_snapshot_expires(server_factory: Factory) -> None:
    srv = server_factory(sync="never", extra=SMALL_FILES)
    async with connect(srv.host, srv.port, timeout=60) as c:
        await fill(c, 1000, b"old")
        begun = await c._call("snapshot_begin", [{"timeout": 0.2}], None)
        pinned = {f["name"] for f in begun["files"] if f["name"].endswith(".data")}
        await fill(c, 1000, b"new")
        for _ in range(100):
            await asyncio.sleep(0.05)
            await c.merge()
            if not pinned & data_files(srv.data):
                break
        assert not pinned & data_files(srv.data)
        with pytest.raises(SnapshotGoneError):
            await c._call("snapshot_read", [begun["id"], sorted(pinned)[0], 0, 10], None)


async def test_snapshots_belong_to_their_connection(server: ServerProcess) -> None:
    async with connect(server.host, server.port) as a, connect(server.host, server.port) as b:
        await a.put(b"k", b"v")
        begun = await a._call("snapshot_begin", [], None)
        name = begun["files"][0]["name"]
        with pytest.raises(SnapshotGoneError):
            await b._call("snapshot_read", [begun["id"], name, 0, 10], None)
        with pytest.raises(SnapshotGoneError):
            await b._call("snapshot_end", [begun["id"]], None)
        assert len(await a._call("snapshot_read", [begun["id"], name, 0, 4], None)) == 4
        assert (await a._call("snapshot_end", [begun["id"]], None))["complete"] is False


async def test_auth_applies(server_factory: Factory) -> None:
    srv = server_factory(extra=["--auth", "s3cret"])
    async with connect(srv.host, srv.port, auth="s3cret") as c:
        await c.put(b"k", b"v")
        assert (await c._call("snapshot_begin", [], None))["files"]
    with pytest.raises(AuthRequiredError):
        async with connect(srv.host, srv.port) as c:
            await c._call("snapshot_begin", [], None)


async def test_destination_rules_and_metrics(server: ServerProcess, tmp_path: Path) -> None:
    async with connect(server.host, server.port) as c:
        model = await fill(c, 300, b"v")
        busy = tmp_path / "busy"
        busy.mkdir()
        (busy / "keep.txt").write_text("mine")
        with pytest.raises(BackupError, match="not empty"):
            await c.backup(busy)
        assert (busy / "keep.txt").read_text() == "mine"
        seen: list[tuple[int, int]] = []
        report = await c.backup(busy, force=True, progress=lambda d, t: seen.append((d, t)))
        assert not (busy / "keep.txt").exists()
        assert seen[-1] == (report.bytes, report.bytes)
        assert (busy / "backup.json").exists()
        empty = tmp_path / "empty"
        empty.mkdir()
        await c.backup(empty)
        stats = (await c.stats())["server"]["snapshots"]
        assert stats["taken"] == 2 and stats["completed"] == 2
        assert stats["bytes_sent"] == 2 * report.bytes
        assert stats["last_success"] > 0
    assert contents(busy)[0] == model == contents(empty)[0]
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]
    url = f"http://{server.host}:{server.http_port}/metrics"
    text = await asyncio.to_thread(lambda: urllib.request.urlopen(url, timeout=10).read().decode())
    assert "bitcask_snapshots_total 2" in text
    assert f"bitcask_snapshot_sent_bytes_total {2 * report.bytes}" in text


async def test_server_lost_mid_backup_leaves_nothing(
    server_factory: Factory, tmp_path: Path
) -> None:
    srv = server_factory(sync="never", extra=SMALL_FILES)
    async with connect(srv.host, srv.port, timeout=60, reconnect_attempts=1) as c:
        await fill(c, 4000, b"v", size=1000)  # ~4 MB
        started = asyncio.Event()

        def progress(done: int, total: int) -> None:
            if done:
                started.set()

        dest = tmp_path / "lost"
        task = asyncio.create_task(c.backup(dest, progress=progress, rate=1_000_000))
        await asyncio.wait_for(started.wait(), 30)
        srv.kill()
        with pytest.raises(BackupError) as info:
            await asyncio.wait_for(task, 60)
    assert "failed" in str(info.value)
    assert list(tmp_path.glob("*lost*")) == []
    assert list(tmp_path.glob(".lost*")) == []


async def test_rate_must_be_positive(server: ServerProcess, tmp_path: Path) -> None:
    async with connect(server.host, server.port) as c:
        with pytest.raises(BackupError, match="rate"):
            await c.backup(tmp_path / "r", rate=0)
    assert not (tmp_path / "r").exists()
