"""The data directory removed or replaced under an open writer: writes stop.

Before, an embedded writer (or a server) went on acknowledging puts into unlinked
files after ``rm -rf DIR``: 100 of 100 puts over 1 s answered OK, and every one
vanished at close. Now the writer sees it at each sync (the active file's link
count), when a rotation cannot create its file, and from its background worker
once per ``WATCH_PERIOD`` when idle (nothing per put; a directory moved aside
keeps its files linked, so only the watch sees that one): writes are refused with
ReadOnlyError naming the directory, ``disk_health()`` says ``removed``, an ERROR
line is logged once, reads of what the store holds go on, and close works.

Each test removes the directory a different way (rm -rf, its files deleted, moved
aside and made again), under each sync policy, and asserts every key's answer,
every later write's refusal, the health state and the log line. Loops are bounded
by a count; nothing asserts a time.
"""

from __future__ import annotations

import logging
import shutil
import time
from pathlib import Path

import pytest

import bitcask
from bitcask import _write_faults

KEYS = {b"k%02d" % i: b"value %d" % i for i in range(40)}
# puts 10 ms apart until one is refused: the watch runs every WATCH_PERIOD (1 s)
ATTEMPTS = 500


def _rm_rf(data: Path) -> None:
    shutil.rmtree(data)


def _emptied(data: Path) -> None:
    for entry in data.iterdir():
        entry.unlink()


def _replaced(data: Path) -> None:
    data.rename(data.with_name("aside"))
    data.mkdir()


CHANGES = {"rm-rf": _rm_rf, "emptied": _emptied, "replaced": _replaced}


def put_until_refused(db: bitcask.Bitcask) -> tuple[dict[bytes, bytes], BaseException]:
    """Put new keys until one is refused: (the acknowledged ones, the refusal)."""
    acked: dict[bytes, bytes] = {}
    for i in range(ATTEMPTS):
        k, v = b"after%03d" % i, b"late %d" % i
        try:
            db.put(k, v)
        except bitcask.BitcaskError as exc:
            return acked, exc
        acked[k] = v
        time.sleep(0.01)
    raise AssertionError(f"{ATTEMPTS} puts acknowledged into a removed directory")


@pytest.mark.parametrize("sync", ["always", "interval", "never"])
@pytest.mark.parametrize("change", list(CHANGES))
def test_writes_stop_once_the_directory_is_gone(
    tmp_path: Path, sync: str, change: str, caplog: pytest.LogCaptureFixture
) -> None:
    data = tmp_path / "data"
    db = bitcask.open(data, sync=sync)
    try:
        for k, v in KEYS.items():
            db.put(k, v)
        assert db.disk_health()["state"] == "ok"
        with caplog.at_level(logging.WARNING, logger="bitcask"):
            CHANGES[change](data)
            acked, refused = put_until_refused(db)
            if sync == "always" and change != "replaced":
                assert not acked, "every put fsyncs, and the fsync sees the file is gone"
            assert isinstance(refused, bitcask.ReadOnlyError), repr(refused)
            assert f"the data directory {data} was removed or replaced" in str(refused)
            health = db.disk_health()
            assert health["state"] == "removed" and str(data) in health["reason"]
            # every other write is refused the same way, nothing reaches a file
            for write in (
                lambda: db.put(b"k00", b"new"),
                lambda: db.delete(b"k01"),
                lambda: db.write_batch([("put", b"b", b"1", None)]),
            ):
                with pytest.raises(bitcask.ReadOnlyError, match="removed or replaced"):
                    write()
            # reads go on: what the store held, and what it acknowledged before it saw
            assert {k: db.get(k) for k in KEYS} == KEYS
            assert {k: db.get(k) for k in acked} == acked
            assert db.get(b"b") is None
            assert db.stats()["readonly_reason"].startswith("the data directory")
        errors = [r for r in caplog.records if r.levelno == logging.ERROR]
        assert len(errors) == 1 and "removed or replaced" in errors[0].getMessage()
    finally:
        db.close()
    if change == "replaced":
        # moved aside, the files were not lost: they hold every acknowledged write
        with bitcask.open(tmp_path / "aside", readonly=True) as old:
            assert {k: old.get(k) for k in [*KEYS, *acked]} == {**KEYS, **acked}


def test_a_rotation_sees_it_without_the_watch(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """sync never, the watch never due: the first rotation cannot create its file and
    finds out why, instead of a "write failed" and a disk probe retrying forever."""
    monkeypatch.setattr(_write_faults, "WATCH_PERIOD", 3600.0)
    data = tmp_path / "data"
    with bitcask.open(data, sync="never", max_file_size=4096) as db:
        db.put(b"first", b"x" * 100)
        shutil.rmtree(data)
        refused = None
        for i in range(100):  # 100 x 130 bytes: past 4096, a rotation
            try:
                db.put(b"k%d" % i, b"y" * 100)
            except bitcask.BitcaskError as exc:
                refused = exc
                break
        assert isinstance(refused, bitcask.ReadOnlyError), repr(refused)
        assert "removed or replaced" in str(refused)
        assert db.disk_health()["state"] == "removed"
        assert db.get(b"first") == b"x" * 100


def test_sync_refuses_when_the_directory_is_gone(tmp_path: Path) -> None:
    """An explicit sync (under never) is the promise that writes are durable: it
    raises rather than fsyncing files no reopen will find."""
    data = tmp_path / "data"
    db = bitcask.open(data, sync="never")
    try:
        db.put(b"k", b"v")
        db.sync()
        _rm_rf(data)
        with pytest.raises(bitcask.ReadOnlyError, match="removed or replaced"):
            db.sync()
        assert db.get(b"k") == b"v"
    finally:
        db.close()


def test_a_healthy_store_stays_writable_past_the_watch(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The watch finds nothing on a store left alone (idle past several periods)."""
    monkeypatch.setattr(_write_faults, "WATCH_PERIOD", 0.01)
    with bitcask.open(tmp_path / "data", sync="never") as db:
        for i in range(20):
            db.put(b"k%d" % i, b"v")
            time.sleep(0.01)
        assert db.disk_health()["state"] == "ok"
    with bitcask.open(tmp_path / "data", readonly=True) as db:
        assert len(db) == 20
