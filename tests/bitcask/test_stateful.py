"""The store against a dict model, through every operation, reopen, merge and crash.

Strategy: a Hypothesis RuleBasedStateMachine drives one store (tiny max_file_size,
so files rotate every few records and merges span many files) and a model
`key -> (value, expiry or None)`. Time is a fake clock the machine advances in
steps of 10 s while TTLs are 5, 15 or 25 s, so no expiry ever sits within 5 s of
"now": millisecond rounding of the on-disk expiry can never flip a verdict.

Rules: put (with or without TTL), delete, batch (atomic, mixed, through
write_batch or the batch() context), a batch with one invalid op (refused, nothing
written), scan, advance the clock, merge (full, or of a random subset of sealed
files through the engine's subset hook), close and reopen, a readonly open beside
the writer, and crash (below). Keys and values reach the configured size limits.

After every step the invariants compare get / contains / len / keys / items / ttl
(with and without a prefix) with the model's visible keys: no expired key, no
deleted key resurrected, no corrupt or stale value.

Run longer with BITCASK_STATEFUL_EXAMPLES=1500 (and --timeout 900); CI=1 derandomizes.

Crash: while the store is open, its directory is copied (what the disk holds if
the process died now: every acknowledged write was handed to the OS), and the
copy's newest data file loses a random tail. After every put, delete or whole batch
the machine records (newest file id, its size, model state): the "end" of that op.
Since records are only appended, cutting the newest file to L bytes must leave the
store exactly in the state of the last op whose end is in an older file or at most
L bytes into this one: a suffix of ops vanishes, a batch whole or not at all.
History restarts whenever files are rewritten (open, merge), and a cut never goes
below the position where it restarted (ops before that are not tracked).
"""

from __future__ import annotations

import inspect
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, event, settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    RuleBasedStateMachine,
    initialize,
    invariant,
    rule,
)

import bitcask
from bitcask._datafile import ScanIssues, data_name, list_data_files, scan
from bitcask._recovery import QUARANTINE_DIR

Model = dict[bytes, tuple[bytes, float | None]]

MAX_KEY = 16
MAX_VALUE = 256
KEYS = [b"", b"a", b"ab", b"b", b"key:000001", b"key:000002", b"key:000010", b"\x00", b"\xff" * 3]
KEYS.append(b"K" * MAX_KEY)  # the longest key allowed
T0 = 1_700_000_000.0
MAX_FILE = 1024

keys = st.sampled_from(KEYS)
values = st.binary(max_size=200) | st.just(b"V" * MAX_VALUE)  # up to the largest allowed
ttls = st.sampled_from([None, None, None, 5.0, 15.0, 25.0])
put_ops = st.tuples(st.just("put"), keys, values, ttls)
delete_ops = st.tuples(st.just("delete"), keys)
batches = st.lists(st.one_of(put_ops, put_ops, delete_ops), min_size=1, max_size=8)


def written_size(path: Path) -> int:
    """The bytes of a data file that hold records: a preallocated active file
    (bitcask/_active.py) ends in unwritten zeros that the engine's scan sets apart."""
    data = path.read_bytes()
    issues = ScanIssues()
    for _ in scan(data, 16, len(data), issues):
        pass
    return len(data) if issues.unwritten is None else issues.unwritten


def snapshot(src: Path, dst: Path) -> None:
    """Copy a live store's files; a background hint writer may rename one meanwhile."""
    dst.mkdir()
    for name in os.listdir(src):
        if name == QUARANTINE_DIR:
            continue  # bytes a writer open cut from a torn tail: never loaded
        try:
            shutil.copy2(src / name, dst / name)
        except FileNotFoundError:
            continue  # a temporary file renamed or removed under us: a crash could too


class StoreMachine(RuleBasedStateMachine):
    """One store, one model; see the module docstring for the crash model."""

    # the option set under test (semidbm habit: the same suite under each option set)
    OPTIONS: dict[str, Any] = {"sync": "never", "max_file_size": MAX_FILE}

    def __init__(self) -> None:
        super().__init__()
        self.root = Path(tempfile.mkdtemp(prefix="bitcask-stateful-"))
        self.gen = 0
        self.now = T0
        self.model: Model = {}
        # (newest file id, its size, model) at the end of each op since the last restart
        self.history: list[tuple[int, int, Model]] = []
        self.db: bitcask.Bitcask | None = None

    # ------------------------------------------------------------------ helpers

    @property
    def path(self) -> Path:
        return self.root / f"store{self.gen}"

    def open(self) -> bitcask.Bitcask:
        return bitcask.open(
            self.path,
            clock=lambda: self.now,
            max_key_size=MAX_KEY,
            max_value_size=MAX_VALUE,
            merge_trigger=0.0,
            **self.OPTIONS,
        )

    @property
    def store(self) -> bitcask.Bitcask:
        assert self.db is not None
        return self.db

    def visible(self, model: Model | None = None) -> dict[bytes, bytes]:
        m = self.model if model is None else model
        return {k: v for k, (v, exp) in m.items() if exp is None or exp > self.now}

    def newest_file(self) -> tuple[int, int]:
        fid = list_data_files(str(self.path))[-1]
        return fid, written_size(self.path / data_name(fid))

    def record(self) -> None:
        self.history.append((*self.newest_file(), dict(self.model)))

    def restart_history(self) -> None:
        self.history = []
        self.record()

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
        self.restart_history()

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

    @rule(ops=batches, bad=st.sampled_from(["key", "value", "type"]), at=st.integers(0, 8))
    def invalid_batch(self, ops: list[tuple[Any, ...]], bad: str, at: int) -> None:
        """One bad op anywhere in a batch: the batch is refused and nothing is written."""
        wrong: tuple[Any, ...] = {
            "key": ("put", b"k" * (MAX_KEY + 1), b"v", None),
            "value": ("put", b"a", b"v" * (MAX_VALUE + 1), None),
            "type": ("delete", 42),
        }[bad]
        ops = [*ops[:at], wrong, *ops[at:]]
        expected: dict[str, type[Exception] | tuple[type[Exception], ...]] = {
            "key": bitcask.KeyTooLargeError,
            "value": bitcask.ValueTooLargeError,
            "type": (TypeError, ValueError),
        }
        size = self.newest_file()
        with pytest.raises(expected[bad]):
            self.store.write_batch(ops)
        assert self.newest_file() == size, "a refused batch wrote bytes"

    @rule()
    def readonly_view(self) -> None:
        """A readonly open beside the writer sees every acknowledged write."""
        with bitcask.open(self.path, readonly=True, clock=lambda: self.now) as ro:
            assert {k: v for k in KEYS if (v := ro.get(k)) is not None} == self.visible()
            assert len(ro) == len(self.visible())

    @rule(seconds=st.sampled_from([10.0, 20.0, 60.0]))
    def advance_clock(self, seconds: float) -> None:
        self.now += seconds

    @rule(data=st.data())
    def merge(self, data: st.DataObject) -> None:
        db = self.store
        # A subset merge is where a tombstone that forgot its target file resurrects a
        # key: use the public `files=` parameter if merge() has one, else the engine's
        # internal hook for exactly this test.
        subset_merge = getattr(db, "_merge_files", None)
        if "files" in inspect.signature(db.merge).parameters:
            subset_merge = lambda files: db.merge(files=files)  # type: ignore[call-arg]  # noqa: E731
        if subset_merge is not None and data.draw(st.booleans(), label="subset"):
            sealed = list_data_files(str(self.path))[:-1]
            files = (
                data.draw(st.lists(st.sampled_from(sealed), unique=True), label="files")
                if sealed
                else []
            )
            event("merge: subset")
            subset_merge(sorted(files))
        else:
            db.merge()
        self.restart_history()  # merge rewrites files: old offsets mean nothing

    @rule()
    def reopen(self) -> None:
        self.store.close()
        self.db = self.open()
        self.restart_history()

    @rule(cut=st.integers(min_value=0, max_value=4 * MAX_FILE))
    def crash(self, cut: int) -> None:
        old = self.path
        self.gen += 1
        snapshot(old, self.path)  # the disk as a SIGKILL would leave it
        self.store.close()
        shutil.rmtree(old)
        fid, size = self.newest_file()
        base_fid, base_size, _ = self.history[0]
        floor = base_size if base_fid == fid else 0
        keep = size - cut % (size - floor + 1)
        with open(self.path / data_name(fid), "r+b") as f:
            f.truncate(keep)
        event("crash: tail cut" if keep < size else "crash: nothing cut")
        expected = next(m for f, n, m in reversed(self.history) if f < fid or n <= keep)
        self.db = self.open()
        actual = {k: v for k in KEYS if (v := self.store.get(k)) is not None}
        assert actual == self.visible(expected), f"cut {size - keep} of {size} bytes"
        self.model = dict(expected)
        self.restart_history()

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
        for prefix in (b"a", b"key:"):
            assert sorted(db.keys(prefix)) == sorted(k for k in vis if k.startswith(prefix))
            assert dict(db.items(prefix)) == {k: v for k, v in vis.items() if k.startswith(prefix)}
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


class NoHintsAlwaysMachine(StoreMachine):
    """The same machine with fsync per write, no hint files and even smaller files."""

    OPTIONS: dict[str, Any] = {"sync": "always", "max_file_size": 512, "hint_files": False}


def _settings(examples: int) -> settings:
    return settings(
        max_examples=int(os.environ.get("BITCASK_STATEFUL_EXAMPLES", str(examples))),
        stateful_step_count=60,
        deadline=None,
        derandomize=bool(os.environ.get("CI")),
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much],
    )


StoreMachine.TestCase.settings = _settings(100)
NoHintsAlwaysMachine.TestCase.settings = _settings(40)
TestStore = StoreMachine.TestCase
TestStoreNoHintsAlways = NoHintsAlwaysMachine.TestCase
