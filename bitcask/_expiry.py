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
- Exact counts (``len(db)``, ``stats()["keys"]``) need the keys whose expiry has
  passed, which the sampler may not have reached. Walking every key with a TTL per
  count cost O(keys with a TTL) (50 ms at 1,000,000: every metrics scrape, INFO,
  /health). ``count_visible`` instead keeps ``Keydir.due``, a heap of (expiry,
  key): built once from the expiry dict (0.18 s at 1,000,000). From then on the
  writer appends each key it gives an expiry to ``Keydir.due_log`` (TTL writes
  only: one list append, no heap work on the write path) and a count pushes them
  with their expiry then and pops the entries whose time has come into
  ``Keydir.due_past``, the keys found expired (reclaiming them instead would change
  what the sampler and merge report); the count is ``len(map)`` less those that
  still hold the expiry they were found with. That costs the expired keys not
  reclaimed yet, which the sampler keeps few (bitcask-server runs it every 100 ms),
  not every key with a TTL. An entry whose key has another expiry since (overwritten,
  persisted, deleted, reclaimed) is stale: popped and dropped. Both are bounded:
  past twice the keys with a TTL (plus ``DUE_SLACK``) stale entries, or
  ``DUE_LOG_MAX`` keys logged with no count, the next count builds the heap again
  (the writer drops the log), so a count costs O(1) amortized over the TTL writes.
  The wall clock may step back: a key found expired whose expiry is ahead again
  goes back into the heap, so a count agrees with ``get`` at the same ``now_ms``.
- The keys found expired are walked at every count (one may have been overwritten,
  deleted or persisted since: the writer logs only TTL writes). Where nothing
  reclaims them (the embedded engine runs no sampler by itself) they grew without
  bound: 500,000 expired keys cost 160 ms per ``len(db)``. Past ``PAST_MAX`` of
  them, a count reclaims those it holds, as an access would (counted in
  ``expired_keys``, as Redis counts a key its lookup expired), so a count walks at
  most ``PAST_MAX`` keys. Below that, ``stored_keys()`` still holds them until
  reclaimed, as Redis's DBSIZE does.
"""

from __future__ import annotations

from heapq import heapify, heappop, heappush

from ._keydir import FID_SHIFT, SIZE_MASK, Keydir

__all__ = [
    "DUE_LOG_MAX",
    "DUE_SLACK",
    "KEYS_PER_ROUND",
    "PAST_MAX",
    "STALE_PERCENT",
    "count_visible",
    "drop_expired",
    "reclaim",
]

# Redis's ACTIVE_EXPIRE_CYCLE_KEYS_PER_LOOP, and the share of expired keys in a
# sample above which a cycle samples again at once.
KEYS_PER_ROUND = 20
STALE_PERCENT = 25
# At most this many ring entries per key sampled are looked at in one call.
_STALE_SKIP = 16
# Stale entries ``Keydir.due`` may hold beyond one per key with a TTL before a count
# builds it again from the expiry dict.
DUE_SLACK = 4096
# Keys ``Keydir.due_log`` may hold before the writer lets it go (no count for that
# long: the next one builds the heap again instead of folding them).
DUE_LOG_MAX = 1 << 20
# Keys found expired and not reclaimed a count keeps before it reclaims them.
PAST_MAX = 4096


def count_visible(kd: Keydir, now_ms: float) -> int:
    """The keys present and unexpired at ``now_ms``; reclaims nothing.

    Caller holds the writer's lock. Costs O(1) amortized plus the keys found expired
    and not reclaimed yet (module header).
    """
    expiry = kd.expiry
    due = kd.due
    log = kd.due_log
    past = kd.due_past
    if log is None or len(due) > (len(expiry) << 1) + DUE_SLACK:
        past.clear()
        if not expiry:
            kd.due, kd.due_log = [], None
            return len(kd.map)
        due = kd.due = [(e, k) for k, e in expiry.items()]
        heapify(due)
        kd.due_log = []
    elif log:
        get = expiry.get
        for key in log:
            exp = get(key)
            if exp:
                heappush(due, (exp, key))
        log.clear()
    get = expiry.get
    while due and due[0][0] <= now_ms:
        exp, key = heappop(due)
        if get(key) == exp:
            past[key] = exp
    # The keys found expired that still are (a write since gave them another expiry,
    # or none, or removed them; reclaiming removed them): a later write of the key
    # logged it, so a count sees it again under its new expiry. A key whose expiry is
    # ahead again (the clock stepped back) goes back to the heap: len(db) counted it
    # expired while get() served it.
    gone = [(e, k) for k, e in past.items() if e > now_ms or get(k) != e]
    for exp, key in gone:
        del past[key]
        if exp > now_ms and get(key) == exp:
            heappush(due, (exp, key))
    if len(past) > PAST_MAX:  # as an access would: a count walks at most PAST_MAX
        for key in past:
            _drop(kd, key)
        kd.sampler.expired += len(past)
        past.clear()
    return len(kd.map) - len(past)


def _drop(kd: Keydir, key: bytes) -> None:
    # Reclaim ``key`` (expired): out of ``map`` and ``expiry``, its bytes now dead.
    # ``map`` first: a reader (no lock) between the two sees the key absent; the other
    # order let it see the key without its expiry, the expired value served.
    loc = kd.map.pop(key, None)
    del kd.expiry[key]
    if loc is not None:
        fid = loc >> FID_SHIFT
        live = kd.live
        if fid in live:
            live[fid] -= loc & SIZE_MASK
        kd.note_deleted()


def drop_expired(kd: Keydir, keys: list[bytes], now_ms: float) -> int:
    """Reclaim those of ``keys`` whose expiry has passed at ``now_ms``, as an access
    would (a walk of the keydir met them: ``Bitcask.popitem``); returns how many.

    Caller holds the writer's lock. A key written, persisted or reclaimed since it
    was met is left alone (its expiry is checked again here).
    """
    expiry = kd.expiry
    n = 0
    for key in keys:
        exp = expiry.get(key)
        if exp is not None and exp <= now_ms:
            _drop(kd, key)
            n += 1
    kd.sampler.expired += n
    return n


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
        _drop(kd, key)
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
