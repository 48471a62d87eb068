"""Active expiry: expired keys leave memory in the background, as Redis's sampler.

Strategy / invariants:
- Redis samples 20 random keys of its expires dict every 100 ms, deletes the
  expired ones and repeats while more than 25% of a sample was expired, within a
  time budget. A Python dict offers no random access, so the sampler walks a
  *ring*: a snapshot ``list(expiry)`` (one C call) taken when the previous one is
  used up, read ``limit`` keys at a time. Every key with a TTL is looked at once
  per pass; the snapshot costs 8 bytes per expiring key while a pass lasts and
  O(keys with a TTL) once per pass. Keys written after the snapshot wait for the
  next pass, as an unlucky key waits for Redis's random sample.
- ``reclaim`` runs under the writer's lock (``Bitcask.expire_sample``), so it is one
  more mutation by the one owner of the keydir: it deletes the entry from ``map``
  and ``expiry`` and moves its bytes from live to dead (merge then drops them). It
  writes nothing to disk: the record carries its expiry, so a reopen loads it as
  expired and it still shadows every older record of its key (merge, which no
  longer finds the key in the keydir, writes a tombstone where an older record may
  sit in a file it does not merge).
- Reclaiming is not a write for WATCH: a key watched while live whose expiry
  passes aborts the EXEC whether or not it was reclaimed yet (``Watch.expires``);
  a key already expired when watched may be reclaimed without aborting. That is
  Redis 7's rule (multi.c: ``isWatchedKeyExpired``, ``touchWatchedKey``).
- ``avg_ttl_ms`` is Redis's estimate: the mean TTL left of the live keys of each
  sample, folded into a running average with weight 2%; 0 once no key has a TTL.
"""

from __future__ import annotations

from ._keydir import FID_SHIFT, SIZE_MASK, Keydir

__all__ = ["KEYS_PER_ROUND", "STALE_PERCENT", "reclaim"]

# Redis's ACTIVE_EXPIRE_CYCLE_KEYS_PER_LOOP, and the share of expired keys in a
# sample above which a cycle samples again at once.
KEYS_PER_ROUND = 20
STALE_PERCENT = 25
# At most this many ring entries per key sampled are looked at in one call.
_STALE_SKIP = 16


def reclaim(kd: Keydir, now_ms: int, limit: int) -> tuple[int, int]:
    """Sample up to ``limit`` keys with a TTL and delete the expired ones from ``kd``.

    Caller holds the writer's lock. Returns (keys sampled, keys reclaimed); a key of
    the ring that no longer has a TTL (deleted, persisted) is skipped, not counted.
    (0, 0) means nothing was found to sample: no key has a TTL, or only stale
    entries were met.
    """
    s = kd.sampler
    expiry = kd.expiry
    if not expiry:
        s.ring, s.pos, s.avg_ttl_ms = [], 0, 0
        return 0, 0
    if s.pos >= len(s.ring):
        s.ring, s.pos = list(expiry), 0
    ring = s.ring
    pos = s.pos
    # Keys of the ring that lost their TTL since the snapshot (deleted, persisted,
    # reclaimed, FLUSHALL) are skipped cheaply and do not count as sampled; a bound
    # on them keeps one call short.
    end = min(len(ring), pos + limit * _STALE_SKIP)
    kmap = kd.map
    live = kd.live
    sampled = reclaimed = ttl_sum = ttl_n = 0
    while pos < end and sampled < limit:
        key = ring[pos]
        pos += 1
        exp = expiry.get(key)
        if exp is None:
            continue
        sampled += 1
        if exp > now_ms:
            ttl_sum += exp - now_ms
            ttl_n += 1
            continue
        del expiry[key]
        loc = kmap.pop(key, None)
        if loc is not None:
            fid = loc >> FID_SHIFT
            if fid in live:
                live[fid] -= loc & SIZE_MASK
            kd.note_deleted()
        reclaimed += 1
    s.pos = pos
    if s.pos >= len(s.ring):
        s.ring, s.pos = [], 0  # let go of the snapshot's keys at the end of a pass
    s.expired += reclaimed
    if ttl_n:
        avg = ttl_sum // ttl_n
        prev = s.avg_ttl_ms or avg
        s.avg_ttl_ms = (prev // 50) * 49 + avg // 50
    if not expiry:
        s.avg_ttl_ms = 0
    return sampled, reclaimed
