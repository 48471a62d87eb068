"""The store against a dict model, through every operation, reopen, merge and crash.

Strategy: a Hypothesis RuleBasedStateMachine drives one store (tiny max_file_size,
so files rotate every few records and merges span many files) and a model
`key -> (value, expiry or None)`. Time is a fake clock the machine advances in
steps of 10 s while TTLs are 5, 15 or 25 s, so no expiry ever sits within 5 s of
"now": millisecond rounding of the on-disk expiry can never flip a verdict.

After every step the invariants compare get / contains / len / keys / items / ttl
with the model's visible keys (no expired key, no corrupt or stale value).

Crash: while the store is open, its directory is copied (what the disk holds if
the process died now: every acknowledged write was handed to the OS), and the
copy's newest data file loses a random tail, never below a checkpoint recorded
earlier (the size of that file then). Ops since the checkpoint form a list of
model states S0 (checkpoint) ... Sn (now), one per put, delete or whole batch;
truncating a suffix of the file must leave the store equal to one of them, so a
batch comes back whole or not at all. With nothing cut, it must equal Sn exactly.
"""

from __future__ import annotations

import inspect
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    RuleBasedStateMachine,
    initialize,
    invariant,
    rule,
)

import bitcask
from bitcask._datafile import data_name, list_data_files

Model = dict[bytes, tuple[bytes, float | None]]

KEYS = [b"", b"a", b"ab", b"b", b"key:000001", b"key:000002", b"key:000010", b"\x00", b"\xff" * 3]
T0 = 1_700_000_000.0
MAX_FILE = 1024

keys = st.sampled_from(KEYS)
values = st.binary(max_size=200)
ttls = st.sampled_from([None, None, None, 5.0, 15.0, 25.0])
put_ops = st.tuples(st.just("put"), keys, values, ttls)
delete_ops = st.tuples(st.just("delete"), keys)
batches = st.lists(st.one_of(put_ops, put_ops, delete_ops), min_size=1, max_size=8)


class StoreMachine(RuleBasedStateMachine):
    """One store, one model; see the module docstring for the crash model."""

    def __init__(self) -> None:
        super().__init__()
        self.root = Path(tempfile.mkdtemp(prefix="bitcask-stateful-"))
        self.gen = 0
        self.now = T0
        self.model: Model = {}
        self.checkpoint: tuple[int, int] | None = None  # (file id, size) of the newest file
        self.states: list[Model] = []  # S0..Sn since the checkpoint
        self.db: bitcask.Bitcask | None = None

    # ------------------------------------------------------------------ helpers

    @property
    def path(self) -> Path:
        return self.root / f"store{self.gen}"

    def open(self) -> bitcask.Bitcask:
        return bitcask.open(
            self.path,
            clock=lambda: self.now,
            sync="never",
            max_file_size=MAX_FILE,
            merge_trigger=0.0,
        )

    @property
    def store(self) -> bitcask.Bitcask:
        assert self.db is not None
        return self.db

    def visible(self, model: Model | None = None) -> dict[bytes, bytes]:
        m = self.model if model is None else model
        return {k: v for k, (v, exp) in m.items() if exp is None or exp > self.now}

    def record(self) -> None:
        if self.checkpoint is not None:
            self.states.append(dict(self.model))

    def forget_checkpoint(self) -> None:
        self.checkpoint = None
        self.states = []

    def apply(self, op: tuple[Any, ...]) -> None:
        if op[0] == "put":
            _, key, value, ttl = op
            self.model[key] = (value, None if ttl is None else self.now + ttl)
        else:
            self.model.pop(op[1], None)

    # ------------------------------------------------------------------ rules

    @initialize()
    def start(self) -> None:
        self.db = self.open()

    @rule(key=keys, value=values, ttl=ttls)
    def put(self, key: bytes, value: bytes, ttl: float | None) -> None:
        self.store.put(key, value, ttl=ttl)
        self.apply(("put", key, value, ttl))
        self.record()

    @rule(key=keys)
    def delete(self, key: bytes) -> None:
        existed = key in self.visible()
        assert self.store.delete(key) is existed
        self.apply(("delete", key))
        self.record()

    @rule(ops=batches, use_context=st.booleans())
    def batch(self, ops: list[tuple[Any, ...]], use_context: bool) -> None:
        before = self.visible()
        if use_context:
            with self.store.batch() as b:
                for op in ops:
                    if op[0] == "put":
                        b.put(op[1], op[2], ttl=op[3])
                    else:
                        b.delete(op[1])
        else:
            results = self.store.write_batch(ops)
            assert len(results) == len(ops)
            seen: set[bytes] = set()
            for op, result in zip(ops, results, strict=True):
                if op[0] == "put":
                    assert result is None
                elif op[1] not in seen:  # an earlier op of this batch may have touched it
                    assert result is (op[1] in before), (op, result)
                seen.add(op[1])
        for op in ops:
            self.apply(op)
        self.record()

    @rule(seconds=st.sampled_from([10.0, 20.0, 60.0]))
    def advance_clock(self, seconds: float) -> None:
        self.now += seconds

    @rule(data=st.data())
    def merge(self, data: st.DataObject) -> None:
        params = inspect.signature(self.store.merge).parameters
        if "files" in params and data.draw(st.booleans(), label="subset"):
            sealed = list_data_files(str(self.path))[:-1]
            subset = (
                data.draw(st.lists(st.sampled_from(sealed), unique=True), label="files")
                if sealed
                else []
            )
            self.store.merge(files=subset)  # type: ignore[call-arg]
        else:
            self.store.merge()
        self.forget_checkpoint()  # merge rewrites files: old offsets mean nothing

    @rule()
    def reopen(self) -> None:
        self.store.close()
        self.db = self.open()
        self.forget_checkpoint()

    @rule()
    def take_checkpoint(self) -> None:
        newest = list_data_files(str(self.path))[-1]
        size = os.path.getsize(self.path / data_name(newest))
        self.checkpoint = (newest, size)
        self.states = [dict(self.model)]

    @rule(cut=st.integers(min_value=0, max_value=4 * MAX_FILE))
    def crash(self, cut: int) -> None:
        old = self.path
        self.gen += 1
        shutil.copytree(old, self.path)  # the disk as a SIGKILL would leave it
        self.store.close()
        shutil.rmtree(old)
        newest = list_data_files(str(self.path))[-1]
        victim = self.path / data_name(newest)
        size = os.path.getsize(victim)
        removed = 0
        if self.checkpoint is not None and self.checkpoint[0] == newest:
            removed = cut % (size - self.checkpoint[1] + 1)
        with open(victim, "r+b") as f:
            f.truncate(size - removed)
        self.db = self.open()
        candidates = self.states if removed else [self.model]
        actual = {k: v for k in KEYS if (v := self.store.get(k)) is not None}
        matches = [s for s in candidates if self.visible(s) == actual]
        assert matches, f"after cutting {removed} bytes the store holds {actual!r}, no op boundary"
        self.model = dict(matches[-1])
        self.forget_checkpoint()

    @rule(
        prefix=st.sampled_from([b"", b"a", b"key:", b"key:00000", b"z"]),
        after=st.none() | keys,
        limit=st.integers(1, 5),
    )
    def scan(self, prefix: bytes, after: bytes | None, limit: int) -> None:
        want = sorted(
            k for k in self.visible() if k.startswith(prefix) and (after is None or k > after)
        )
        assert self.store.scan(prefix, after=after, limit=limit) == want[:limit]

    # ------------------------------------------------------------------ invariants

    @invariant()
    def matches_model(self) -> None:
        if self.db is None:
            return
        db = self.db
        vis = self.visible()
        for k in KEYS:
            assert db.get(k) == vis.get(k), k
            assert (k in db) is (k in vis), k
            if k not in vis:
                with pytest.raises(KeyError):
                    db[k]
                with pytest.raises(KeyError):
                    db.ttl(k)
        assert len(db) == len(vis)
        assert sorted(db.keys()) == sorted(vis)
        assert sorted(iter(db)) == sorted(vis)
        assert dict(db.items()) == vis
        for k, v in vis.items():
            assert db[k] == v
            exp = self.model[k][1]
            left = db.ttl(k)
            if exp is None:
                assert left is None, (k, left)
            else:
                assert left is not None and abs(left - (exp - self.now)) < 1.0, (k, left)

    def teardown(self) -> None:
        if self.db is not None:
            self.db.close()
        shutil.rmtree(self.root, ignore_errors=True)


StoreMachine.TestCase.settings = settings(
    max_examples=int(os.environ.get("BITCASK_STATEFUL_EXAMPLES", "40")),
    stateful_step_count=40,
    deadline=None,
    derandomize=bool(os.environ.get("CI")),
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much],
)
TestStore = StoreMachine.TestCase
