"""The single-op fast paths answer and write exactly what the batch path does.

Strategy: put, delete and the one-key read-modify-write ops (get_delete, incr, set,
append, expire, persist) have a specialised one-op path in the writer
(bitcask/_writer.py, bitcask/_single.py), made of the batch path's functions. A
Hypothesis property applies one random op sequence to two stores: one through those
calls, the other through the batch path (write_batch(..., _single=True) for puts and
deletes, commit() of the Op for the others). One key is over max_key_size. Files are tiny (they rotate every
few records) and the clock is fake, advanced in 10 s steps over 5 s and 25 s TTLs,
so expired keys meet deletes, get_deletes and incrs. Both must give the same answer
(or the same error) for every op, bump a watch on the op's key the same way, and
end with the same keydir, the same records in the same files (offset, size, flags,
key), and the same answers for every key after a reopen with the hint files and
after one without them.
"""

from __future__ import annotations

import shutil
import tempfile
from pathlib import Path
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import bitcask
from bitcask import Append, Expire, GetDel, Incr, Peek, Persist, Set
from bitcask._datafile import FILE_HEADER_SIZE, ScanIssues, map_file, scan
from bitcask._hint import decode_hint

# Few keys, so ops meet each other's writes; the last is over max_key_size.
KEYS = [b"a", b"\xff" * 3, b"K" * 16, b"L" * 17]
OPTIONS: dict[str, Any] = {"sync": "never", "max_file_size": 256, "max_key_size": 16}
VALUES = [b"1", b"-7", b"x", b"v" * 60]

Op = tuple[Any, ...]
OPS = st.one_of(
    st.tuples(
        st.just("put"),
        st.sampled_from(KEYS),
        st.sampled_from(VALUES),
        st.sampled_from([None, 5.0, 5.0, 25.0]),
    ),
    st.tuples(st.just("delete"), st.sampled_from(KEYS)),
    st.tuples(st.just("get_delete"), st.sampled_from(KEYS)),
    st.tuples(st.just("incr"), st.sampled_from(KEYS), st.sampled_from([1, -3, 1 << 62])),
    st.tuples(
        st.just("set"),
        st.sampled_from(KEYS),
        st.sampled_from(VALUES),
        st.sampled_from([(False, False), (True, False), (False, True)]),  # nx, xx
        st.sampled_from([0, -1, 15_000]),  # at_ms from now: none, past, later
    ),
    st.tuples(st.just("append"), st.sampled_from(KEYS), st.sampled_from(VALUES)),
    st.tuples(st.just("expire"), st.sampled_from(KEYS), st.sampled_from([-1, 15_000])),
    st.tuples(st.just("persist"), st.sampled_from(KEYS)),
    st.tuples(st.just("advance")),
)


def at_ms(db: bitcask.Bitcask, offset: int) -> int:
    """An expiry ``offset`` ms from the store's now (0: none; -1: already past)."""
    return offset and int(db._clock() * 1000) + offset


def fast(db: bitcask.Bitcask, op: Op) -> object:
    kind, key = op[0], op[1]
    if kind == "put":
        return db.put(key, op[2], op[3])
    if kind == "delete":
        return db.delete(key)
    if kind == "get_delete":
        return db.get_delete(key)
    if kind == "incr":
        return db.incr(key, op[2])
    if kind == "set":
        nx, xx = op[3]
        return db.set(key, op[2], nx=nx, xx=xx, at_ms=at_ms(db, op[4]) or None)
    if kind == "append":
        return db.append(key, op[2])
    if kind == "expire":
        return db.expire(key, at_ms=at_ms(db, op[2]))
    return db.persist(key)


def rmw(db: bitcask.Bitcask, op: Op) -> Any:
    """The read-modify-write op ``op`` stands for."""
    kind, key = op[0], op[1]
    if kind == "get_delete":
        return GetDel(key)
    if kind == "incr":
        return Incr(key, op[2])
    if kind == "set":
        return Set(key, op[2], at_ms(db, op[4]), *op[3])
    if kind == "append":
        return Append(key, op[2])
    if kind == "expire":
        return Expire(key, at_ms(db, op[2]))
    return Persist(key)


def batch(db: bitcask.Bitcask, op: Op) -> object:
    if op[0] in ("put", "delete"):
        return db.writer.write_batch([op], _single=True)[0]
    answers = db.commit([rmw(db, op)])
    assert answers is not None
    if isinstance(answers[0], BaseException):
        raise answers[0]
    return answers[0]


def answer(db: bitcask.Bitcask, how: Any, op: Op) -> tuple[object, object]:
    """The op's answer (or its error) and what a watch on its key then saw."""
    with db.watch(op[1]) as w:
        try:
            got: object = how(db, op)
        except (bitcask.BitcaskError, ValueError) as exc:
            got = (type(exc).__name__, str(exc))
        seen = db.commit([Peek(op[1])], watch=w)
    return got, seen


def files(path: Path) -> tuple[list[tuple[object, ...]], list[tuple[object, ...]]]:
    """Every record (offset, size, flags, expiry, key, tombstone target; not the
    timestamp), in file order over all data files, and every hint's contents."""
    recs: list[tuple[object, ...]] = []
    for data in sorted(path.glob("*.data")):
        mm = map_file(str(data))
        assert mm is not None
        size = data.stat().st_size
        recs += [
            (r[0], r[1], r[2], r[4], r[5], r[6])
            for r in scan(mm, FILE_HEADER_SIZE, size, ScanIssues())
        ]
    hints: list[tuple[object, ...]] = []
    for hint in sorted(path.glob("*.hint")):
        h = decode_hint(hint.read_bytes(), int(hint.name.split(".")[0]))
        hints.append(
            (
                h.file_id,
                h.keys,
                *map(list, (h.locs, h.exp_index, h.exp_ms)),
                h.tomb_keys,
                list(h.tomb_files),
            )
        )
    return recs, hints


def every_key(db: bitcask.Bitcask) -> list[tuple[object, ...]]:
    return [(db.get(k), db.ttl(k) if k in db else "absent") for k in KEYS] + [(len(db),)]


def reopened(path: Path, clock: Any) -> list[list[tuple[object, ...]]]:
    """Every key's answers after a reopen from the hints, then after one without them."""
    out = []
    with bitcask.open(path, **OPTIONS, clock=clock) as db:
        out.append(every_key(db))
    for hint in path.glob("*.hint"):
        hint.unlink()
    with bitcask.open(path, **OPTIONS, clock=clock, hint_files=False) as db:
        assert db.recovery.hinted_files == 0
        out.append(every_key(db))
    return out


@settings(
    max_examples=100,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
)
@given(st.lists(OPS, max_size=40))
def test_fast_and_batch_paths_agree(ops: list[Op]) -> None:
    now = [1_700_000_000.0]

    def clock() -> float:
        return now[0]

    base = Path(tempfile.mkdtemp(prefix="fast-paths-"))
    try:
        outcome = []
        for name, how in (("fast", fast), ("batch", batch)):
            now[0] = 1_700_000_000.0
            path = base / name
            answers: list[object] = []
            with bitcask.open(path, **OPTIONS, clock=clock) as db:
                for op in ops:
                    if op[0] == "advance":
                        now[0] += 10
                        continue
                    answers.append(answer(db, how, op))
                final = every_key(db)
                keydir = (dict(db.keydir.map), dict(db.keydir.expiry), dict(db.keydir.live))
            recs = files(path)
            again = reopened(path, clock)
            assert again == [final, final]
            outcome.append((answers, final, keydir, recs))
        assert outcome[0] == outcome[1]
    finally:
        shutil.rmtree(base, ignore_errors=True)
