"""The Redis dialect's key-space and expiry commands (EXISTS, TYPE, DEL, EXPIRE, TTL, RENAME, COPY, SCAN, KEYS, ...).

Strategy: a mixin of `RedisDispatcher` (server/_redis.py), one handler per command
as there: handler(session, command, tx) -> Step. What these commands need beyond
the engine (SCAN's cursors, COPY's op) is server/_redis_keyspace.py's.
- Inside EXEC the reads EXISTS, TYPE, OBJECT, MEMORY USAGE, the TTL family and
  DBSIZE are ops (GetEx without an expiry, Peek, CountKeys), so they see the
  transaction's own earlier writes and nothing after them; KEYS, SCAN and RANDOMKEY
  are reads, run by EXEC (server/_redis_transactions.py) when it starts or after
  its batch.
- DBSIZE is an O(1) engine counter (Bitcask.stored_keys); TTL/PTTL/EXPIRETIME/
  PEXPIRETIME read the record's exact expiry (Bitcask.expire_at_ms). Expired keys
  leave memory through the engine's sampler, which server/app.py runs every 100 ms
  on the writer's thread (ExpiryTask).
- KEYS' and SCAN's replies are bounded by max_reply_bytes as MGET's values are.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from typing import Any

import bitcask
from protocol import redis_commands as rc
from protocol._glob import compile_glob
from protocol._resp_reader import _string2ll
from protocol._resp_writer import encode, encode_error

from ._redis_keyspace import Copy, ScanCursors
from ._redis_replies import int_of_applied, ok, reply_too_big
from ._redis_session import RedisError, RedisSession, Step
from .config import ServerConfig

__all__ = ["KeyCommands"]


class KeyCommands:
    """The key-space and expiry commands; mixed into RedisDispatcher, whose state they use."""

    _db: Any
    _config: ServerConfig
    _cursors: ScanCursors
    _key: Callable[[bytes], bytes]

    def _exists(self, s: RedisSession, c: rc.Exists, tx: bool) -> Step:
        keys = [self._key(k) for k in c.keys]
        if tx:
            return Step(
                ops=[bitcask.GetEx(k) for k in keys],
                shape=lambda r: encode(sum(type(v) is bytes for v in r)),
            )
        db = self._db
        return Step(read=lambda: encode(sum(k in db for k in keys)))

    def _type(self, s: RedisSession, c: rc.Type, tx: bool) -> Step:
        key = self._key(c.key)
        if tx:
            return Step(
                ops=[bitcask.GetEx(key)],
                shape=lambda r: b"+string\r\n" if type(r[0]) is bytes else b"+none\r\n",
            )
        return Step(read=lambda: b"+string\r\n" if key in self._db else b"+none\r\n")

    def _object(self, s: RedisSession, c: rc.ObjectInfo, tx: bool) -> Step:
        # OBJECT FREQ: nil for a missing key, else Redis's reply without an LFU policy
        # (`redis-cli --hotkeys` prints it and exits 1, as against Redis). OBJECT
        # ENCODING and REFCOUNT: what Redis would give the value freshly SET (int,
        # embstr, raw; shared or not), from its length alone unless it is short
        # enough to be an integer.
        key, proto, sub = self._key(c.key), s.proto, c.name
        freq = sub == "object|freq"
        if tx:
            return Step(
                ops=[bitcask.GetEx(key)],
                shape=lambda r: _object_reply(r[0] if type(r[0]) is bytes else None, sub, proto),
            )
        db = self._db

        def read() -> bytes:
            if key not in db:
                return encode(None, proto)
            size = db.value_bytes((key,))
            if freq or size > ENCODING_INT_MAX:
                return _object_reply(size, sub, proto)
            return _object_reply(db.get(key), sub, proto)

        return Step(read=read)

    def _memory_usage(self, s: RedisSession, c: rc.MemoryUsage, tx: bool) -> Step:
        # The key's and its value's bytes (values live in the data files, not in
        # memory: INFO memory has the keydir's bytes), from the keydir alone, so
        # `redis-cli --memkeys` ranks keys as it does against Redis and reads no value.
        key, proto = self._key(c.key), s.proto
        if tx:
            return Step(
                ops=[bitcask.GetEx(key)],
                shape=lambda r: encode(
                    len(key) + len(r[0]) if type(r[0]) is bytes else None, proto
                ),
            )
        db = self._db
        return Step(
            read=lambda: encode(len(key) + db.value_bytes((key,)) if key in db else None, proto)
        )

    def _dbsize(self, s: RedisSession, c: rc.DbSize, tx: bool) -> Step:
        if tx:  # counted at its place in the transaction, after the writes before it
            return Step(ops=[bitcask.CountKeys()], shape=lambda r: encode(r[0]))
        # O(1): the keys held, expired ones until the sampler reclaims them (Redis)
        return Step(read=lambda: encode(self._db.stored_keys()))

    def _ttl(self, s: RedisSession, c: rc.Ttl, tx: bool) -> Step:
        key = self._key(c.key)
        if tx:  # the expiry as the transaction's earlier writes left it
            return Step(
                ops=[bitcask.Peek(key)],
                shape=lambda r: encode(
                    -2 if r[0] is None else _ttl_reply(r[0][1] or None, c.ms, c.absolute)
                ),
            )
        return Step(read=lambda: encode(self._read_ttl(key, c.ms, c.absolute)))

    def _read_ttl(self, key: bytes, ms: bool, absolute: bool) -> int:
        try:
            at = self._db.expire_at_ms(key)
        except KeyError:
            return -2
        return _ttl_reply(at, ms, absolute)

    def _del(self, s: RedisSession, c: rc.Del, tx: bool) -> Step:
        keys = list(dict.fromkeys(self._key(k) for k in c.keys))  # DEL a a deletes one
        return Step(
            ops=[bitcask.GetDel(k) for k in keys],
            shape=lambda r: encode(sum(type(v) is bytes for v in r)),
        )

    def _expire(self, s: RedisSession, c: rc.Expire, tx: bool) -> Step:
        key = self._key(c.key)
        cond = "nx" if c.nx else "gt" if c.gt else "lt" if c.lt else ""
        if c.xx:  # XX combines with GT or LT (the parser refused NX with any of them)
            cond = "xx+" + cond if cond else "xx"
        at = max(c.at_ms, 1)  # in the past either way: the key is deleted
        return Step(ops=[bitcask.Expire(key, at, cond)], shape=lambda r: int_of_applied(r[0]))

    def _persist(self, s: RedisSession, c: rc.Persist, tx: bool) -> Step:
        key = self._key(c.key)
        return Step(ops=[bitcask.Persist(key)], shape=lambda r: int_of_applied(r[0]))

    def _rename(self, s: RedisSession, c: rc.Rename, tx: bool) -> Step:
        key, dst = self._key(c.key), self._key(c.newkey)
        op = bitcask.Rename(key, dst, nx=c.nx)
        if c.nx:
            return Step(ops=[op], shape=lambda r: int_of_applied(r[0]))
        return Step(ops=[op], shape=ok)

    def _copy(self, s: RedisSession, c: rc.Copy, tx: bool) -> Step:
        if c.db != 0:  # after the parser's checks, as copyCommand's selectDb
            raise RedisError("ERR DB index is out of range")
        op = Copy(self._key(c.key), self._key(c.newkey), c.replace)
        return Step(ops=[op], shape=lambda r: int_of_applied(r[0]))

    def _flush(self, s: RedisSession, c: Any, tx: bool) -> Step:
        return Step(ops=[bitcask.Clear()], shape=ok)

    # ---- key space walks ----

    def _scan(self, s: RedisSession, c: rc.Scan, tx: bool) -> Step:
        proto = s.proto
        if c.type is not None and c.type.lower() != b"string":
            return Step(encode([b"0", []], proto))
        limit = self._config.max_reply_bytes
        return Step(read=lambda: _scan_reply(self._scan_page(c), proto, limit))

    def _scan_page(self, c: rc.Scan) -> list[Any]:
        after = self._cursors.after(c.cursor) if c.cursor else None
        keys = self._db.scan(b"", after=after, limit=c.count)
        cursor = self._cursors.new(keys[-1]) if len(keys) == c.count else 0
        if c.match is not None:
            match = compile_glob(c.match)
            keys = [k for k in keys if match(k)]
        return [str(cursor).encode(), keys]

    def _keys(self, s: RedisSession, c: rc.Keys, tx: bool) -> Step:
        proto, limit = s.proto, self._config.max_reply_bytes
        match = compile_glob(c.pattern)

        def read() -> bytes:
            keys = [k for k in self._db if match(k)]
            return _bounded_keys(keys, keys, proto, limit)

        return Step(read=read)

    def _randomkey(self, s: RedisSession, c: rc.RandomKey, tx: bool) -> Step:
        proto = s.proto

        def pick() -> bytes:
            db = self._db
            keys = db.scan(b"", after=os.urandom(8), limit=1) or db.scan(b"", limit=1)
            return encode(keys[0] if keys else None, proto)

        return Step(read=pick)


def _bounded_keys(reply: list[Any], keys: list[bytes], proto: int, limit: int) -> bytes:
    # KEYS' keys, or SCAN's [cursor, keys] (COUNT has no cap in Redis): the keydir
    # holds them already, the reply would copy them (KEYS * of 1 KiB keys: 1 GB a
    # million); refused past the bound, as MGET's values.
    size = sum(map(len, keys))
    if size > limit:
        return encode_error(reply_too_big(size, limit, "keys"))
    return encode(reply, proto)


def _scan_reply(page: list[Any], proto: int, limit: int) -> bytes:
    return _bounded_keys(page, page[1], proto, limit)


ENCODING_INT_MAX = 20  # Redis reads a value this long or shorter as a long if it can
ENCODING_EMBSTR_MAX = 44  # OBJ_ENCODING_EMBSTR_SIZE_LIMIT
SHARED_INTEGERS = 10_000  # OBJ_SHARED_INTEGERS: Redis's values 0 ..= 9,999 are shared
SHARED_REFCOUNT = 2**31 - 1  # OBJ_SHARED_REFCOUNT (INT_MAX), their OBJECT REFCOUNT
_LFU_OFF = (
    "ERR An LFU maxmemory policy is not selected, access frequency not tracked. Please "
    "note that when switching between policies at runtime LRU and LFU data will take "
    "some time to adjust."
)


def _object_reply(value: bytes | int | None, sub: str, proto: int) -> bytes:
    """OBJECT ENCODING / FREQ / REFCOUNT as Redis 7.0 answers for a value freshly SET,
    of the value, or of its length alone when too long to be an integer (None: no
    such key). REFCOUNT: Redis shares the integers 0 ..= 9,999 (OBJ_SHARED_INTEGERS),
    whose count is INT_MAX; any other value is held once."""
    if value is None:
        return encode(None, proto)
    if sub == "object|freq":
        return encode_error(_LFU_OFF)
    number = None
    if isinstance(value, int):
        size = value
    else:
        size = len(value)
        number = _string2ll(value) if size <= ENCODING_INT_MAX else None
    if sub == "object|refcount":
        return encode(
            SHARED_REFCOUNT if number is not None and 0 <= number < SHARED_INTEGERS else 1
        )
    if number is not None:
        return b"$3\r\nint\r\n"
    return b"$6\r\nembstr\r\n" if size <= ENCODING_EMBSTR_MAX else b"$3\r\nraw\r\n"


def _ttl_reply(at: int | None, ms: bool, absolute: bool) -> int:
    """Redis's ttlGenericCommand for a present key, from its record's exact expiry
    (ms since the epoch; None: no expiry). A missing key answers -2 (the callers')."""
    if at is None:
        return -1
    value = at if absolute else max(at - int(time.time() * 1000), 0)
    return value if ms else (value + 500) // 1000
