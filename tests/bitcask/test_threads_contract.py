"""The engine's thread-safety contract (bitcask/db.py, the Bitcask docstring), tested
for real: eight threads mixing every kind of call on one store, with merges, end in
the state a model predicts; close() while they are mid-call gives them
StoreClosedError and nothing else, and never hangs."""

from __future__ import annotations

import random
import sys
import threading
import traceback
from collections.abc import Iterator
from pathlib import Path

import pytest

import bitcask
from bitcask import Bitcask, MergeInProgressError, StoreClosedError

THREADS = 8
OPS = 1500
KEYS = 60


@pytest.fixture(autouse=True)
def _switch_often() -> Iterator[None]:
    # Switch threads every 10 us instead of 5 ms, so the calls really interleave.
    before = sys.getswitchinterval()
    sys.setswitchinterval(1e-5)
    yield
    sys.setswitchinterval(before)


def _join(threads: list[threading.Thread]) -> None:
    for t in threads:
        t.join(60)
    assert not [t.name for t in threads if t.is_alive()], "a thread hung"


def _worker(db: Bitcask, i: int, model: dict[bytes, bytes], incrs: list[int]) -> None:
    """Thread ``i`` owns the keys t<i>:*, so its model is exact; all share b"counter"."""
    rnd = random.Random(i)
    prefix = b"t%d:" % i
    for _ in range(OPS):
        op = rnd.randrange(9)
        key = prefix + b"%02d" % rnd.randrange(KEYS)
        if op == 0:
            value = rnd.randbytes(rnd.randrange(200))
            db.put(key, value)
            model[key] = value
        elif op == 1:
            assert db.delete(key) == (key in model)
            model.pop(key, None)
        elif op == 2:
            ops: list[tuple[object, ...]] = []
            for _ in range(rnd.randrange(1, 8)):
                k = prefix + b"%02d" % rnd.randrange(KEYS)
                ops.append(
                    ("put", k, b"b%d" % rnd.randrange(99)) if rnd.random() < 0.7 else ("delete", k)
                )
            results = db.write_batch(ops)
            for op_, existed in zip(ops, results, strict=True):
                if op_[0] == "put":
                    model[op_[1]] = op_[2]  # type: ignore[index,assignment]
                else:
                    assert existed == (op_[1] in model)
                    model.pop(op_[1], None)  # type: ignore[arg-type]
        elif op == 3:
            db.incr(b"counter")
            incrs[i] += 1
        elif op == 4:
            assert db.get(key) == model.get(key)
        elif op == 5:
            assert list(db.keys(prefix)) == sorted(model)
        elif op == 6 and key in model:
            assert db.expire(key, 1000) and db.persist(key)
        elif op == 7:
            page = db.scan(b"t", None, 50)
            assert page == sorted(page)
            assert db.stats()["keys"] >= 0
        elif op == 8:
            assert dict(db.items(prefix)) == model


def test_eight_threads_mixing_every_call_end_in_the_models_state(tmp_path: Path) -> None:
    db = bitcask.open(
        tmp_path, sync="never", max_file_size=16 * 1024, merge_min_dead_bytes=0, merge_trigger=0.3
    )
    models: list[dict[bytes, bytes]] = [{} for _ in range(THREADS)]
    incrs = [0] * THREADS
    errors: list[str] = []
    done = threading.Event()

    def run(i: int) -> None:
        try:
            _worker(db, i, models[i], incrs)
        except Exception:
            errors.append(traceback.format_exc())

    def merge() -> None:
        try:
            while not done.is_set():
                try:
                    db.merge()
                except MergeInProgressError:
                    pass  # an automatic merge is running: documented
                done.wait(0.005)
        except Exception:
            errors.append(traceback.format_exc())

    try:
        workers = [threading.Thread(target=run, args=(i,)) for i in range(THREADS)]
        merger = threading.Thread(target=merge)
        for t in [*workers, merger]:
            t.start()
        _join(workers)
        done.set()
        _join([merger])
        assert not errors, errors[0]
        want = {k: v for m in models for k, v in m.items()} | {b"counter": b"%d" % sum(incrs)}
        assert dict(db.items()) == want
        assert db.stats()["merges"] > 0
    finally:
        db.close()
    with bitcask.open(tmp_path) as again:
        assert dict(again.items()) == want
        assert again.recovery.corrupt_records == 0


@pytest.mark.parametrize("round_", range(3))
def test_close_while_eight_threads_are_mid_call(tmp_path: Path, round_: int) -> None:
    db = bitcask.open(tmp_path, sync="always" if round_ == 0 else "never", max_file_size=8 * 1024)
    for i in range(200):
        db.put(b"k%03d" % i, b"v" * 50)
    started = threading.Barrier(THREADS + 1)
    unexpected: list[str] = []
    closed_seen = [0]

    def run(i: int) -> None:
        rnd = random.Random(i * 31 + round_)
        started.wait(10)
        calls = [
            lambda k: db.put(k, b"x" * 40),
            db.get,
            db.delete,
            lambda k: db.write_batch([("put", k, b"y"), ("delete", b"k001")]),
            lambda k: db.incr(b"n"),
            lambda k: list(db.keys()),
            lambda k: db.scan(b"k", None, 100),
            lambda k: db.merge(),
            lambda k: db.stats(),
            lambda k: list(db.items()),
            lambda k: k in db,
        ]
        for _ in range(100_000):
            try:
                rnd.choice(calls)(b"k%03d" % rnd.randrange(200))
            except StoreClosedError:
                closed_seen[0] += 1
                return
            except MergeInProgressError:
                pass
            except Exception:
                unexpected.append(traceback.format_exc())
                return
        unexpected.append("never saw the store closed")

    threads = [threading.Thread(target=run, args=(i,)) for i in range(THREADS)]
    for t in threads:
        t.start()
    started.wait(10)
    threading.Event().wait(0.02 * (round_ + 1))
    db.close()
    _join(threads)
    assert not unexpected, unexpected[0]
    assert closed_seen[0] == THREADS
    with bitcask.open(tmp_path) as again:
        assert again.recovery.corrupt_records == 0
        for key in list(again.keys()):
            again.get(key)
