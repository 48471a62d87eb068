"""SIGKILL a writing child at random moments; every acknowledged write must survive.

Strategy: tests/bitcask/_crash_writer.py opens a store and writes (puts, deletes,
batches of both) as fast as it can, announcing each op on a pipe before the call
(`? op`) and acknowledging it after the call returned (`! op`). The parent kills it
with SIGKILL 0.05-0.5 s after it is ready, replays the acknowledged ops into a dict
model, reopens the store and compares every key of the key space:

- a key untouched by the one in-flight op (the last `?` without `!`) must hold
  exactly the model's value (acknowledged put present, acknowledged delete absent);
- the keys of the in-flight op hold either all their old values or all their new
  ones (a batch is all or none; a single put or delete is either).

This must hold under every sync policy: SIGKILL kills the process, not the kernel,
so whatever put() handed to the OS before returning survives. Rounds also kill a
child in the middle of a merge running in a worker thread (beside a reader
thread), a child whose engine merges by itself (a low merge_trigger), a child
writing megabyte batches (a kill inside one write()), a child that
keeps closing and reopening its store, and one store
several times in a row (recovery of an already recovered store). After each kill
the recovery report may show a truncated tail, never a corrupt or skipped record,
and check() finds nothing wrong once a writer has opened the store. One more round
opens the store readonly, again and again from this process, while the child
writes and merges: every view holds what was acknowledged before it opened (or
something written later), and none reports a corrupt record.
"""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import threading
import time
from bisect import bisect_left
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import pytest

import bitcask

WRITER = Path(__file__).with_name("_crash_writer.py")
KEYSPACE = 400  # as in _crash_writer.py
START_TIMEOUT = 20.0
# a soak: BITCASK_CRASH_SEED=1..N reruns every round with other ops and kill times
SOAK_SEED = 1000 * int(os.environ.get("BITCASK_CRASH_SEED", "0"))

Model = dict[bytes, bytes | None]


@dataclass
class Transcript:
    """What the child said before it died."""

    acked: list[str] = field(default_factory=list)
    in_flight: str | None = None
    merges_started: int = 0
    merges_done: int = 0
    auto_merges: int = 0


def value_of(token: str) -> bytes:
    """As in _crash_writer.py: "HEAD/N" stands for HEAD followed by N filler bytes."""
    head, n = token.rsplit("/", 1)
    return head.encode() + b"z" * int(n)


def apply(model: Model, op: str) -> set[bytes]:
    """Apply one transcript op to the model; return the keys it touched."""
    kind, _, rest = op.partition(" ")
    touched: set[bytes] = set()
    if kind == "put":
        key, token = rest.split(" ")
        model[key.encode()] = value_of(token)
        touched.add(key.encode())
    elif kind == "del":
        model[rest.encode()] = None
        touched.add(rest.encode())
    elif kind == "batch":
        for item in rest.split(" "):
            parts = item.split(":")
            bkey = parts[1].encode()
            model[bkey] = value_of(parts[2]) if parts[0] == "p" else None
            touched.add(bkey)
    else:
        raise AssertionError(f"unknown op in transcript: {op!r}")
    return touched


def parse(lines: list[str]) -> Transcript:
    t = Transcript()
    for line in lines:
        if line.startswith("? "):
            assert t.in_flight is None, f"two ops in flight: {t.in_flight!r}, {line!r}"
            t.in_flight = line[2:]
        elif line.startswith("! "):
            assert line[2:] == t.in_flight, f"ack {line!r} without its announcement"
            t.acked.append(line[2:])
            t.in_flight = None
        elif line == "merge-start":
            t.merges_started += 1
        elif line == "merge-done":
            t.merges_done += 1
        elif line.startswith("auto-merges "):
            t.auto_merges = int(line.split()[1])
        else:
            assert line == "ready", f"unexpected line from the child: {line!r}"  # or mismatch
    return t


def run_child(
    data: Path,
    sync: str,
    seed: int,
    gen: int,
    merge: bool,
    delay: float,
    log: Path,
    reopen: int = 0,
    during: Callable[[list[str], float], None] | None = None,
    extra: tuple[str, ...] = (),
) -> Transcript:
    """Start the writer, kill it `delay` seconds after it is ready (after the first
    merge started, with `merge`), and return what it acknowledged. `during(lines,
    delay)`, if given, runs instead of the sleep, watching the transcript grow."""
    cmd = [sys.executable, str(WRITER), str(data), "--sync", sync, "--seed", str(seed)]
    cmd += ["--gen", str(gen), "--reopen-every", str(reopen), *extra]
    cmd += ["--merge"] if merge else []
    lines: list[str] = []
    started = threading.Event()
    # kill `delay` after: the store is open / the first merge began / the engine merged
    trigger = "merge-start" if merge else "auto-merges" if "--auto-merge" in extra else "ready"
    with log.open("wb") as err:
        proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=err)
        assert proc.stdout is not None
        out = proc.stdout

        def read() -> None:
            for raw in out:
                if not raw.endswith(b"\n"):
                    break  # torn by the kill: the op was announced, never called
                line = raw[:-1].decode()
                lines.append(line)
                if line.startswith(trigger):
                    started.set()

        reader = threading.Thread(target=read, daemon=True)
        reader.start()
        try:
            if not started.wait(START_TIMEOUT):
                pytest.fail(f"child never said {trigger!r}; stderr: {log.read_text()[-2000:]}")
            if during is None:
                time.sleep(delay)
            else:
                during(lines, delay)
            # on a loaded machine the first op may not be done yet: a round needs one ack
            waited = time.monotonic() + START_TIMEOUT
            while not any(ln.startswith("! ") for ln in lines) and time.monotonic() < waited:
                if proc.poll() is not None:
                    break
                time.sleep(0.005)
            if proc.poll() is not None:
                reader.join(10)
                pytest.fail(
                    f"child died on its own ({proc.returncode}): {lines[-3:]}\n"
                    + log.read_text()[-2000:]
                )
            proc.send_signal(signal.SIGKILL)
        finally:
            proc.kill()
            proc.wait(10)
            reader.join(10)
            out.close()
    assert proc.returncode == -signal.SIGKILL
    return parse(lines)


def verify(data: Path, model: Model, in_flight: str | None) -> Model:
    """Reopen the store, compare it with the model, and return the state it holds."""
    post: Model = dict(model)
    touched = apply(post, in_flight) if in_flight else set()
    keys = [b"k%04d" % i for i in range(KEYSPACE)]
    with bitcask.open(data, sync="never") as db:
        recovery = db.stats()["recovery"]
        # a kill can tear the tail of the last file, never damage a record before it
        assert recovery["corrupt_records"] == 0 and recovery["skipped_bytes"] == 0, recovery
        actual = {k: db.get(k) for k in keys}
        listed = set(db.keys())
        size = len(db)
    for k in keys:
        if k not in touched:
            assert actual[k] == model.get(k), (
                f"{k!r}: acknowledged {model.get(k)!r}, got {actual[k]!r}"
            )
    if touched:
        old = {k: model.get(k) for k in touched}
        new = {k: post.get(k) for k in touched}
        got = {k: actual[k] for k in touched}
        assert got in (old, new), f"in-flight {in_flight!r} came back partly: {got!r}"
    present = {k for k, v in actual.items() if v is not None}
    assert listed == present
    assert size == len(present)
    return actual


def crash_rounds(
    tmp_path: Path,
    sync: str,
    seed: int,
    kills: int = 1,
    merge: bool = False,
    reopen: int = 0,
    auto_merge: bool = False,
    big_batches: bool = False,
) -> int:
    """Run `kills` children one after the other on one store; returns acked ops."""
    data = tmp_path / "store"
    seed += SOAK_SEED
    rng = random.Random(seed)
    model: Model = {}
    total = 0
    extra = (("--auto-merge",) if auto_merge else ()) + (("--big-batches",) if big_batches else ())
    for gen in range(kills):
        delay = rng.uniform(0.05, 0.5)
        log = tmp_path / f"err{gen}"
        t = run_child(data, sync, seed * 100 + gen, gen, merge, delay, log, reopen, extra=extra)
        assert t.acked, "the child was killed before any acknowledged write"
        if merge:
            assert t.merges_started >= 1
        if auto_merge:
            assert t.auto_merges >= 1, "the engine never merged by itself"
        for op in t.acked:
            apply(model, op)
        total += len(t.acked)
        held = verify(data, model, t.in_flight)
        model = {k: v for k, v in held.items() if v is not None}
    report = bitcask.check(data)
    assert report.ok, str(report)
    return total


ROUNDS = (
    [pytest.param("always", s, id=f"always-{s}") for s in range(10)]
    + [pytest.param("interval", s, id=f"interval-{s}") for s in range(5)]
    + [pytest.param("never", s, id=f"never-{s}") for s in range(5)]
)


@pytest.mark.parametrize(("sync", "seed"), ROUNDS)
def test_acknowledged_writes_survive_sigkill(tmp_path: Path, sync: str, seed: int) -> None:
    assert crash_rounds(tmp_path, sync, seed) > 0


@pytest.mark.parametrize("sync", ["always", "never"])
@pytest.mark.parametrize("seed", [101, 102])
def test_sigkill_during_merge(tmp_path: Path, sync: str, seed: int) -> None:
    assert crash_rounds(tmp_path, sync, seed, merge=True) > 0


@pytest.mark.parametrize("sync", ["always", "never"])
def test_repeated_sigkill_on_one_store(tmp_path: Path, sync: str) -> None:
    assert crash_rounds(tmp_path, sync, 200, kills=3) > 0


@pytest.mark.parametrize("sync", ["always", "never"])
def test_sigkill_while_the_child_reopens_its_store(tmp_path: Path, sync: str) -> None:
    """The child closes and reopens every 25 ops: kills land in close and in open too."""
    assert crash_rounds(tmp_path, sync, 300, kills=2, reopen=25) > 0


Views = list[tuple[int, dict[bytes, bytes | None]]]


def readonly_views(data: Path, lines: list[str], seconds: float, views: Views) -> None:
    """Open the store readonly again and again while the child writes and merges:
    each view must open and report no corrupt record; what it saw is kept in
    `views` as (transcript length when the open began, key -> value)."""
    deadline = time.monotonic() + seconds
    cap = deadline + START_TIMEOUT  # a loaded machine: keep going until there is enough to check
    while time.monotonic() < deadline or (
        (len(views) < 3 or lines.count("merge-start") < 2) and time.monotonic() < cap
    ):
        start = len(lines)
        with bitcask.open(data, readonly=True) as ro:
            assert ro.stats()["recovery"]["corrupt_records"] == 0
            views.append((start, {k: ro.get(k) for k in (b"k%04d" % i for i in range(KEYSPACE))}))


def check_views(lines: list[str], views: Views) -> None:
    """Each view holds, per key, the value acknowledged before its open began or one
    announced after that (the transcript comes through a pipe, so it lags).

    One pass over the transcript: the model advances to each view's start in turn;
    announcements per key are indexed so "written after start" is a bisect.
    """
    announced: dict[bytes, tuple[list[int], list[bytes | None]]] = {}
    for i, ln in enumerate(lines):
        if ln.startswith("? "):
            after: Model = {}
            for k in apply(after, ln[2:]):
                idx, vals = announced.setdefault(k, ([], []))
                idx.append(i)
                vals.append(after[k])
    model: Model = {}
    pos = 0
    in_flight_at = -1  # index of the announcement not yet acknowledged
    for start, seen in sorted(views, key=lambda v: v[0]):
        for ln in lines[pos:start]:
            if ln.startswith("? "):
                in_flight_at = pos
            elif ln.startswith("! "):
                apply(model, ln[2:])
                in_flight_at = -1
            pos += 1
        since = start if in_flight_at < 0 else in_flight_at
        for k, v in seen.items():
            idx, vals = announced.get(k, ([], []))
            allowed = {model.get(k), *vals[bisect_left(idx, since) :]}
            assert v in allowed, f"readonly view of {k!r}: {v!r}, acknowledged {model.get(k)!r}"


@pytest.mark.parametrize("sync", ["always", "never"])
def test_readonly_opens_beside_a_merging_writer(tmp_path: Path, sync: str) -> None:
    """Readonly opens take no lock and see every acknowledged write, while the writer
    merges in a thread (files swapped and deleted under the reader); then a kill."""
    data = tmp_path / "store"
    views: Views = []
    transcript: list[list[str]] = []

    def watch(lines: list[str], seconds: float) -> None:
        transcript.append(lines)
        readonly_views(data, lines, seconds, views)

    t = run_child(data, sync, 400, 0, True, 1.0, tmp_path / "err", during=watch)
    assert len(views) >= 3 and t.merges_started >= 2, (len(views), t.merges_started)
    check_views(transcript[0], views)
    model: Model = {}
    for op in t.acked:
        apply(model, op)
    verify(data, model, t.in_flight)


@pytest.mark.parametrize("sync", ["always", "never"])
def test_sigkill_with_the_engines_own_background_merges(tmp_path: Path, sync: str) -> None:
    """merge_trigger set low: the engine merges in its background worker as it writes."""
    assert crash_rounds(tmp_path, sync, 500, auto_merge=True) > 0


@pytest.mark.parametrize("sync", ["always", "never"])
def test_sigkill_inside_megabyte_batches(tmp_path: Path, sync: str) -> None:
    """Half the ops are ~1 MB batches, each one write(): kills land inside them often,
    and a batch must still come back whole or not at all."""
    assert crash_rounds(tmp_path, sync, 600, kills=3, big_batches=True) > 0
