"""The group-commit writer with engine Ops and watched requests, over a real store:
one group holding several requests for one key decides each at apply time."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest

import bitcask
from server._writer import MODES, Writer
from server._writer_thread import WATCH_ABORTED


@pytest.mark.parametrize("mode", MODES)
async def test_ops_and_watches_in_one_group(tmp_path: Path, mode: str) -> None:
    db = bitcask.open(tmp_path / "db")
    try:
        writer = Writer(db, mode=mode)
        db.put(b"n", b"0")
        got: list[tuple[Any, BaseException | None]] = []

        def cb(results: Any, exc: BaseException | None) -> None:
            got.append((results, exc))

        # Submitted in one loop turn: one group; each incr sees the one before it.
        writer.submit([bitcask.Incr(b"n")], cb)
        writer.submit([bitcask.Incr(b"n", 10)], cb)
        await asyncio.wait_for(writer.wait_idle(), 10)
        assert got == [([1], None), ([11], None)]
        # Of two commits watching n in one group, only the first applies; a watch
        # taken before a write of an earlier request in the same group sees it.
        w1, w2, w3 = db.watch(b"n"), db.watch(b"n"), db.watch(b"other")
        got.clear()
        writer.submit([("put", b"n", b"100")], cb, watch=w1)
        writer.submit([("put", b"n", b"200")], cb, watch=lambda: w2)
        writer.submit([("put", b"other", b"x")], cb)
        writer.submit([], cb, watch=w3)  # empty: still checked
        await asyncio.wait_for(writer.wait_idle(), 10)
        writer.shutdown_pool()
        assert got[0] == ([None], None)
        assert got[1][0] is WATCH_ABORTED and got[1][1] is None
        assert got[2] == ([None], None)
        assert got[3][0] is WATCH_ABORTED
        assert db.get(b"n") == b"100"
    finally:
        db.close()
