"""The engine's public API, run under every sync policy."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

import bitcask
from bitcask import Bitcask, KeyTooLargeError, StoreClosedError, ValueTooLargeError

POLICIES = [
    pytest.param("always", id="always"),
    pytest.param("interval", id="interval"),
    pytest.param("never", id="never"),
]


class FakeClock:
    def __init__(self, now: float = 1_700_000_000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


@pytest.fixture(params=POLICIES)
def sync(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def db(tmp_path: Path, sync: str, clock: FakeClock) -> Iterator[Bitcask]:
    with bitcask.open(tmp_path / "db", sync=sync, sync_interval_ms=10, clock=clock) as store:
        yield store


def test_put_get_delete_roundtrip(db: Bitcask) -> None:
    assert db.get(b"missing") is None
    db.put(b"k", b"v1")
    assert db.get(b"k") == b"v1"
    db.put(b"k", b"v2")
    assert db[b"k"] == b"v2"
    assert db.delete(b"k") is True
    assert db.delete(b"k") is False
    assert db.get(b"k") is None
    with pytest.raises(KeyError):
        db[b"k"]


def test_str_keys_and_values_are_utf8_and_come_back_as_bytes(db: Bitcask) -> None:
    db.put("clé", "välue")
    assert db.get("clé") == "välue".encode()
    assert db.get("clé".encode()) == "välue".encode()
    assert "clé" in db
    db.put(bytearray(b"ba"), memoryview(b"mv"))  # type: ignore[arg-type]
    assert db.get(b"ba") == b"mv"
    with pytest.raises(TypeError):
        db.put(1, b"x")  # type: ignore[arg-type]


def test_empty_value_is_a_value(db: Bitcask) -> None:
    db.put(b"e", b"")
    assert db.get(b"e") == b""
    assert b"e" in db


def test_len_contains_iter_keys_items(db: Bitcask) -> None:
    for i in range(30):
        db.put(f"user:{i:02d}", f"v{i}")
    db.put(b"other", b"x")
    db.delete(b"user:05")
    assert len(db) == 30
    assert b"user:05" not in db and b"user:06" in db
    keys = list(db)
    assert keys == sorted(keys) and len(keys) == 30
    assert list(db.keys(b"user:0")) == [f"user:0{i}".encode() for i in range(10) if i != 5]
    assert dict(db.items(b"other")) == {b"other": b"x"}


def test_size_limits_raise_typed_errors(tmp_path: Path) -> None:
    with bitcask.open(tmp_path, sync="never", max_key_size=8, max_value_size=16) as db:
        db.put(b"k" * 8, b"v" * 16)
        with pytest.raises(KeyTooLargeError):
            db.put(b"k" * 9, b"v")
        with pytest.raises(ValueTooLargeError):
            db.put(b"k", b"v" * 17)
        with pytest.raises(KeyTooLargeError):
            db.write_batch([("delete", b"k" * 9)])
        assert isinstance(KeyTooLargeError("x"), ValueError)
        assert db.get(b"k" * 8) == b"v" * 16
        assert len(db) == 1


def test_ttl_with_fake_clock(db: Bitcask, clock: FakeClock) -> None:
    db.put(b"t", b"v", ttl=10)
    db.put(b"p", b"v")
    assert db.ttl(b"t") == pytest.approx(10.0)
    assert db.ttl(b"p") is None
    with pytest.raises(KeyError):
        db.ttl(b"missing")
    clock.now += 9.5
    assert db.get(b"t") == b"v"
    assert db.ttl(b"t") == pytest.approx(0.5)
    clock.now += 1
    assert db.get(b"t") is None
    assert b"t" not in db
    assert list(db) == [b"p"]
    assert len(db) == 1
    assert db.scan() == [b"p"]
    with pytest.raises(KeyError):
        db.ttl(b"t")
    assert db.delete(b"t") is False
    db.put(b"t", b"again")  # a later put without TTL clears the expiry
    clock.now += 100
    assert db.get(b"t") == b"again"
    with pytest.raises(ValueError):
        db.put(b"x", b"v", ttl=0)


def test_ttl_survives_reopen(tmp_path: Path, sync: str, clock: FakeClock) -> None:
    with bitcask.open(tmp_path, sync=sync, clock=clock) as db:
        db.put(b"t", b"v", ttl=5)
        db.put(b"u", b"v", ttl=50)
    clock.now += 10
    for hint_files in (True, False):
        with bitcask.open(tmp_path, sync=sync, clock=clock, hint_files=hint_files) as db:
            assert db.get(b"t") is None
            assert db.ttl(b"u") == pytest.approx(40)


def test_scan_pages_in_order_and_sees_new_keys(db: Bitcask) -> None:
    for i in range(0, 100, 2):
        db.put(b"k%03d" % i, b"")
    db.put(b"a", b"")
    db.put(b"z", b"")
    page = db.scan(b"k", limit=10)
    assert page == [b"k%03d" % i for i in range(0, 20, 2)]
    db.put(b"k001", b"")  # before the cursor: not seen by the next page
    db.put(b"k021", b"")  # after the cursor: seen
    db.delete(b"k022")
    page2 = db.scan(b"k", after=page[-1], limit=3)
    assert page2 == [b"k020", b"k021", b"k024"]
    pages: list[bytes] = []
    after = None
    while True:
        chunk = db.scan(b"k", after=after, limit=7)
        pages += chunk
        if len(chunk) < 7:
            break
        after = chunk[-1]
    assert pages == sorted(pages) and len(pages) == len(set(pages)) == 51
    assert db.scan(after=b"k098") == [b"z"]
    assert db.scan(b"nothing") == []
    assert db.scan(limit=0) == []
    db.delete(b"k001")
    db.put(b"k001", b"back")  # deleted then re-added: listed once
    assert db.scan(b"k00", limit=5).count(b"k001") == 1


def test_stats_fields(db: Bitcask, sync: str) -> None:
    for i in range(100):
        db.put(b"key:%012d" % i, b"x" * 100)
    for i in range(50):
        db.put(b"key:%012d" % i, b"y" * 100)
    s = db.stats()
    for field in (
        "keys",
        "keydir_bytes",
        "live_bytes",
        "dead_bytes",
        "disk_bytes",
        "files",
        "sync",
        "readonly_reason",
        "merging",
        "merges",
        "recovery",
    ):
        assert field in s
    assert s["keys"] == 100
    assert s["sync"] == sync
    assert s["readonly_reason"] is None and s["merging"] is False and s["merges"] == 0
    record = 29 + 16 + 100
    assert s["live_bytes"] == 100 * record
    assert s["dead_bytes"] == 50 * record + 16
    assert s["disk_bytes"] == s["live_bytes"] + s["dead_bytes"]
    assert sum(f["size"] for f in s["files"]) == s["disk_bytes"]
    assert set(s["recovery"]) >= {
        "truncated_bytes",
        "corrupt_records",
        "scanned_files",
        "hinted_files",
    }


def test_keydir_bytes_per_key_is_reported_and_compact(tmp_path: Path) -> None:
    with bitcask.open(tmp_path, sync="never") as db:
        db.write_batch([("put", b"key:%012d" % i, b"v", None) for i in range(20_000)])
        s = db.stats()
        per_key = s["keydir_bytes"] / s["keys"]
        assert s["keydir_bytes_per_key"] == pytest.approx(per_key, abs=0.1)
        # dict slot + 16-byte key object + one 36-byte int: far below a dict of tuples
        assert 90 < per_key < 150


CLOSED_CALLS = [
    pytest.param(lambda db: db.put(b"k", b"v"), id="put"),
    pytest.param(lambda db: db.get(b"k"), id="get"),
    pytest.param(lambda db: db[b"k"], id="getitem"),
    pytest.param(lambda db: b"k" in db, id="in"),
    pytest.param(len, id="len"),
    pytest.param(list, id="iter"),
    pytest.param(lambda db: list(db.keys()), id="keys"),
    pytest.param(lambda db: list(db.items()), id="items"),
    pytest.param(lambda db: db.scan(), id="scan"),
    pytest.param(lambda db: db.ttl(b"t"), id="ttl"),
    pytest.param(lambda db: db.expire_at_ms(b"t"), id="expire_at_ms"),
    pytest.param(lambda db: db.stored_keys(), id="stored_keys"),
    pytest.param(lambda db: db.stats(), id="stats"),
    pytest.param(lambda db: db.watch(b"k"), id="watch"),
    pytest.param(lambda db: db.delete(b"k"), id="delete"),
    pytest.param(lambda db: db.write_batch([("put", b"a", b"b")]), id="write_batch"),
    pytest.param(lambda db: db.incr(b"n"), id="incr"),
    pytest.param(lambda db: db.merge(), id="merge"),
    pytest.param(lambda db: db.expire_sample(), id="expire_sample"),
]


@pytest.mark.parametrize("readonly", [False, True], ids=["writer", "readonly"])
@pytest.mark.parametrize("call", CLOSED_CALLS)
def test_closed_store_refuses_everything(
    tmp_path: Path, readonly: bool, call: Callable[[Bitcask], object]
) -> None:
    # Before: in, len, iteration, keys(), scan, ttl, stats and watch answered from the
    # keydir left in memory (b"k" in db was True while db.get(b"k") raised), and
    # items() raised only at its first value.
    with bitcask.open(tmp_path, sync="never") as w:
        w.put(b"k", b"v")
        w.put(b"t", b"v", ttl=100)
    db = bitcask.open(tmp_path, sync="never", readonly=readonly)
    db.close()
    db.close()  # idempotent
    with pytest.raises(StoreClosedError):
        call(db)


def test_data_survives_reopen(tmp_path: Path, sync: str) -> None:
    with bitcask.open(tmp_path, sync=sync) as db:
        for i in range(200):
            db.put(b"k%d" % i, b"v%d" % i)
        for i in range(0, 200, 3):
            db.delete(b"k%d" % i)
    with bitcask.open(tmp_path, sync=sync) as db:
        assert len(db) == 200 - 67
        assert db.get(b"k1") == b"v1" and db.get(b"k3") is None
    ro = bitcask.open(tmp_path, readonly=True)
    try:
        assert ro.get(b"k2") == b"v2" and len(ro) == 133
    finally:
        ro.close()


def test_scan_from_a_reader_thread_while_the_writer_inserts(tmp_path: Path) -> None:
    import threading

    with bitcask.open(tmp_path, sync="never") as db:
        db.put(b"seed", b"")
        stop = threading.Event()
        errors: list[BaseException] = []

        def scanner() -> None:
            try:
                while not stop.is_set():
                    page = db.scan(limit=50)
                    assert page == sorted(page) and len(page) == len(set(page))
            except BaseException as exc:
                errors.append(exc)

        t = threading.Thread(target=scanner)
        t.start()
        for i in range(3000):
            db.put(b"n%05d" % i, b"")
            if i % 500 == 0:
                db.write_batch([("put", b"b%05d" % i, b"", None), ("delete", b"n%05d" % i)])
        stop.set()
        t.join(timeout=60)
        assert not errors, errors
        keys = list(db.keys())
        assert len(keys) == len(db) == 1 + 3000 - 6 + 6
        assert keys == sorted(set(keys))
