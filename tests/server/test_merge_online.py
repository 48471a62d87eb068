"""Merges of a live server: clients never see a wrong value, the space really comes back."""

from __future__ import annotations

import asyncio
import itertools
import os
import random
from collections.abc import Callable
from pathlib import Path

import pytest

import bitcask
from bitcask._keydir import MAX_FILE_ID
from client import ReadOnlyError, connect
from tests.serverproc import ServerProcess, running_server

WRITERS = 3
KEYS = 40  # per writer
MERGES = 12


def held_open(pid: int, data: Path) -> list[str]:
    """The files of ``data`` the process holds a descriptor on ("(deleted)" if unlinked)."""
    out = []
    for fd in os.listdir(f"/proc/{pid}/fd"):
        try:
            target = os.readlink(f"/proc/{pid}/fd/{fd}")
        except OSError:
            continue
        if target.startswith(str(data)):
            out.append(target)
    return out


@pytest.mark.skipif(not os.path.isdir("/proc/self/fd"), reason="needs /proc (Linux)")
async def test_back_to_back_merges_under_clients_answer_right_and_free_their_files(
    server_factory: Callable[..., ServerProcess],
) -> None:
    srv = server_factory(sync="never", extra=["--max-file-size", "4096", "--merge-trigger", "0"])
    assert srv.proc is not None
    seq = itertools.count(1)
    acked: dict[bytes, int] = {}  # key -> seq of its last acknowledged write (0: deleted)
    issued: dict[bytes, list[int]] = {}  # key -> seqs of every write sent (negative: delete)
    problems: list[object] = []
    done = asyncio.Event()

    async def writer(w: int) -> None:
        async with connect("127.0.0.1", srv.port) as c:
            while not done.is_set():
                key = b"w%d:%02d" % (w, random.randrange(KEYS))
                n = next(seq)
                if n % 7 == 0:
                    issued.setdefault(key, []).append(-n)
                    await c.delete(key)
                    acked[key] = 0
                else:
                    issued.setdefault(key, []).append(n)
                    await c.put(key, b"%d|" % n + b"v" * (n % 90) + b"|" + key)
                    acked[key] = n

    async def reader() -> None:
        async with connect("127.0.0.1", srv.port) as c:
            while not done.is_set():
                key = b"w%d:%02d" % (random.randrange(WRITERS), random.randrange(KEYS))
                floor = acked.get(key)
                sent_before = len(issued.get(key, []))
                value = await c.get(key)
                later = issued.get(key, [])[max(sent_before - 1, 0) :]
                if value is None:
                    # absent: never written, or deleted at or after what was acknowledged
                    if floor and not any(s < 0 for s in later):
                        problems.append(("lost", key, floor))
                elif not value.endswith(b"|" + key):
                    problems.append(("another key's value", key, value[:20]))
                elif floor is not None and int(value.split(b"|")[0]) < floor:
                    problems.append(("older value", key, value[:20], floor))

    async def merger() -> list[dict[str, object]]:
        reports = []
        async with connect("127.0.0.1", srv.port) as c:
            for _ in range(MERGES):
                reports.append(await c.merge(timeout=60))
                await asyncio.sleep(0.02)
        done.set()
        return reports

    tasks = [asyncio.create_task(writer(w)) for w in range(WRITERS)]
    tasks += [asyncio.create_task(reader()) for _ in range(2)]
    reports = await asyncio.wait_for(merger(), 120)
    await asyncio.wait_for(asyncio.gather(*tasks), 30)
    assert problems == []
    assert len(reports) == MERGES and all(r["left_out"] == [] for r in reports)
    assert sum(int(r["records_copied"]) for r in reports) > 0  # type: ignore[call-overload]

    async with connect("127.0.0.1", srv.port) as c:
        for key, n in acked.items():
            value = await c.get(key)
            assert (int(value.split(b"|")[0]) if value is not None else 0) == n, key
        await c.merge()  # nothing written since: only file headers stay dead
        stats = await c.stats()
    files = stats["files"]
    assert stats["dead_bytes"] == 16 * len(files), stats
    assert stats["live_bytes"] == sum(f["live_bytes"] for f in files)
    # Every file merged away is gone from the directory and from the process: no
    # descriptor or mapping keeps an unlinked file's blocks.
    names = {p.name for p in srv.data.iterdir()}
    assert "merge" not in names
    assert {f"{f['id']:010d}.data" for f in files} == {n for n in names if n.endswith(".data")}
    opened = held_open(srv.proc.pid, srv.data)
    assert [p for p in opened if p.endswith("(deleted)")] == []
    with open(f"/proc/{srv.proc.pid}/maps") as maps:
        assert [line for line in maps if ".data (deleted)" in line] == []
    assert len(opened) <= len(files) + 4  # one per file, the active file's three, LOCK


async def test_file_ids_running_out_answer_read_only_not_internal(tmp_path: Path) -> None:
    # A store's files take ids up to 2^22 - 1 over its life (merges reserve one per
    # input). Past the last one a write needing a new file answered INTERNAL (a bare
    # BitcaskError, logged as an internal error) and said "back up and restore the
    # store", though a backup keeps the ids. Now READ_ONLY, naming the way out.
    data = tmp_path / "data"
    with bitcask.open(data, sync="never") as db:
        db.files.next_id = MAX_FILE_ID - 3  # as if 4 million files had come and gone
        db.writer.rotate()  # file MAX_FILE_ID - 3 becomes the active file
        db.put(b"kept", b"v")
    extra = ["--max-file-size", "256", "--merge-trigger", "0"]
    with running_server(data, sync="never", extra=extra) as srv:
        refused = None
        async with connect("127.0.0.1", srv.port) as c:
            for i in range(40):  # each put of 200 bytes fills a file
                try:
                    await c.put(b"k%d" % i, b"x" * 200)
                except ReadOnlyError as exc:
                    refused = exc
                    break
            assert refused is not None and "file ids exhausted" in str(refused)
            assert await c.get(b"kept") == b"v"
            with pytest.raises(ReadOnlyError, match="file ids exhausted"):
                await c.merge()
        assert "internal error" not in srv.log()
