"""A random record stream fed to two hint journals, one compacted at random points.

The compaction tests (tests/bitcask/test_memory_journal.py, tests/server/test_soak.py)
check that the compacted journal builds byte for byte the hint the uncompacted one
does, over values, TTL values, tombstones and batches.
"""

from __future__ import annotations

import random

from bitcask._hint import HintJournal
from bitcask._keydir import FID_SHIFT


def compacted_and_plain(
    rng: random.Random, nkeys: int, off: int, steps: int = 3000
) -> tuple[HintJournal, HintJournal, int]:
    """(compacted, plain, end offset) after ``steps`` records over ``nkeys`` keys."""
    plain, compacted = HintJournal(), HintJournal()
    keys = [b"k%d" % i for i in range(nkeys)]
    for step in range(steps):
        kind = rng.random()
        if kind < 0.6:
            key, exp = rng.choice(keys), rng.choice([0, 0, 0, 10**12 + step])
            for j in (plain, compacted):
                j.add(key, (1 << FID_SHIFT) | off << 32 | 20, step, exp)
        elif kind < 0.8:
            key, target = rng.choice(keys), rng.choice([0, 1])
            for j in (plain, compacted):
                j.add_tombstone(key, (1 << FID_SHIFT) | off << 32 | 15, step, target)
        else:
            batch = rng.sample(keys, min(len(keys), 5))
            locs = [(1 << FID_SHIFT) | (off + i) << 32 | 20 for i in range(len(batch))]
            for j in (plain, compacted):
                j.extend(batch, locs, step)
        off += 40
        if rng.random() < 0.05:
            compacted.compact_tail()
    compacted.compact_tail()
    return compacted, plain, off
