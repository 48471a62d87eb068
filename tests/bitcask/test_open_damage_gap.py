"""Damage in the middle of the last data file: what a writer open keeps.

Strategy: one real data file of ~20 MB (every key written once, every third key
written again later: an older value a damaged key may fall back to), closed with
sync never; then 100 B, 1 MiB, 5 MiB or 16 MiB of random bytes or zeros written
over it from offset 1 MiB, with its hint kept or removed. A writer open, a write,
close, two reopens, a merge, a reopen, repair and two reopens: after every step
every key's answer is asserted. A key whose latest record lies outside the damage
answers its latest value at every step; a key whose latest record the damage
touches answers CORRUPT_RECORD (a hint or a framing names it) or, where the
framing is gone (rule 5 of docs/format.md), the newest of its records the damage
left whole, or absent when there is none: never any other value.

Before the fix the scanner looked for the next valid record 4 MiB ahead only, and
a writer open truncated the last file at the first damaged byte when none was
found there: 5 MiB of damage at offset 1 MiB cut 20,064,836 bytes, ~16,000 keys
gone for good with no copy kept (16 MiB: the same). The search now goes on to the
end of the file, once.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

import bitcask
from bitcask._datafile import data_name, list_data_files
from tests.bitcask._damage import records
from tests.bitcask.test_damage_cost import count_probes
from tests.bitcask.test_damage_scope import CORRUPT, Answers, answer, drop_hints

N_KEYS = 2_400
AT = 1 << 20  # where the damage starts
SIZES = {"100B": 100, "1MiB": 1 << 20, "5MiB": 5 << 20, "16MiB": 16 << 20}
OPTS = {"sync": "never", "max_file_size": 256 << 20}
# Probes (``valid_at``) the scan of the damaged file may cost: each offset is searched
# once. Measured: 12-22 for 100 B, ~16 per MiB of random bytes, 31 for 5 MiB of zeros
# (skipped in one search), 206 for 16 MiB of zeros; the bound holds twice that (the
# background hint writer may scan the file once more while they are counted).
PROBES_BASE, PROBES_PER_MIB = 64, 32


def value(i: int, gen: int) -> bytes:
    return b"g%d-%06d-" % (gen, i) * 800  # ~8 KiB


def key(i: int) -> bytes:
    return b"k%06d" % i


@pytest.fixture(scope="module")
def pristine(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("gap") / "store"
    with bitcask.open(path, **OPTS) as db:
        for i in range(N_KEYS):
            db.put(key(i), value(i, 0))
        for i in range(0, N_KEYS, 3):
            db.put(key(i), value(i, 1))
    assert len(list_data_files(str(path))) == 1
    return path


def allowed(path: Path, size: int) -> tuple[dict[bytes, set[object]], int]:
    """Per key, the answers it may give once ``size`` bytes from AT are damaged (a
    value, CORRUPT, absent), and how many keys must keep their latest value."""
    versions: dict[bytes, list[tuple[bool, bytes]]] = {}
    for rec in records(path / data_name(1)):
        hit = rec.offset < AT + size and rec.offset + rec.size > AT
        versions.setdefault(rec.key, []).append((hit, rec.value))
    ok: dict[bytes, set[object]] = {}
    kept = 0
    for k, vs in versions.items():
        hit, latest = vs[-1]
        if not hit:
            ok[k] = {latest}
            kept += 1
            continue
        whole = [v for h, v in vs if not h]
        ok[k] = {CORRUPT, whole[-1] if whole else None}
    return ok, kept


def check_answers(path: Path, ok: dict[bytes, set[object]], extra: Answers, step: str) -> None:
    with bitcask.open(path, **OPTS) as db:
        assert db.recovery.truncated_bytes == 0, f"{step}: {db.recovery}"
        got = {k: answer(db, k) for k in ok}
        got_extra = {k: answer(db, k) for k in extra}
    wrong = {k: v for k, v in got.items() if v not in ok[k]}
    assert not wrong, f"{step}: {len(wrong)} keys answer what they never held"
    assert got_extra == extra, step


# A kept hint spares the open its scan: the 16 MiB case adds nothing to the 5 MiB one.
CASES = [
    (size, kind, hint)
    for size in SIZES
    for kind in ("random", "zeros")
    for hint in ("kept", "removed")
    if not (size == "16MiB" and hint == "kept")
]


@pytest.mark.parametrize(("size", "kind", "hint"), CASES, ids=["-".join(c) for c in CASES])
def test_damage_in_the_last_file_keeps_what_follows(
    pristine: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, size: str, kind: str, hint: str
) -> None:
    path = tmp_path / "store"
    shutil.copytree(pristine, path)
    n = SIZES[size]
    ok, kept = allowed(path, n)
    assert kept > 200, "records must lie past the damage"
    with open(path / data_name(1), "r+b") as f:
        f.seek(AT)
        f.write(os.urandom(n) if kind == "random" else bytes(n))
    if hint == "removed":
        drop_hints(path)
    probes = count_probes(monkeypatch)
    with bitcask.open(path, **OPTS) as db:
        monkeypatch.undo()
        assert probes[0] <= PROBES_BASE + PROBES_PER_MIB * (n >> 20), f"{probes[0]} probes"
        rep = db.recovery
        assert rep.truncated_bytes == 0, str(rep)
        if hint == "removed":
            assert rep.skipped_bytes >= n and any("offset" in e for e in rep.events), str(rep)
        got = {k: answer(db, k) for k in ok}
        assert sum(got[k] == next(iter(ok[k])) for k in ok if len(ok[k]) == 1) == kept
        assert all(got[k] in ok[k] for k in ok)
        db.put(b"after", b"written after the open")
        db.put(key(N_KEYS - 1), b"overwritten after the open")
    ok[key(N_KEYS - 1)] = {b"overwritten after the open"}
    extra: Answers = {b"after": b"written after the open"}
    for step in ("reopen 1", "reopen 2"):
        check_answers(path, ok, extra, step)
    with bitcask.open(path, **OPTS) as db:
        report = db.merge()
        assert 1 in [fid for fid, _ in report.left_out], str(report)
    check_answers(path, ok, extra, "after merge")
    repaired = bitcask.repair(path)
    assert repaired.quarantined and not repaired.truncated, str(repaired)
    assert bitcask.check(path).ok
    # Repair turns a CORRUPT key into a tombstone (absent) or, where the framing was
    # gone, leaves its older record in force: never a value it did not hold.
    after = {k: (v - {CORRUPT}) | {None} if CORRUPT in v else v for k, v in ok.items()}
    for step in ("after repair", "reopen after repair"):
        check_answers(path, after, extra, step)
