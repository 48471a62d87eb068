"""The Redis dialect's string commands (GET, MGET, STRLEN, SET, MSET, GETEX, INCR, APPEND, ...).

Strategy: a mixin of `RedisDispatcher` (server/_redis.py), one handler per command
as there: handler(session, command, tx) -> Step. Reads outside EXEC run in their
turn on the event loop (never a value read to answer a size: STRLEN, APPEND's hint
read the keydir); inside EXEC they are ops (GetEx without an expiry), so they see
the transaction's own earlier writes. Writes are engine ops decided by the one
writer at apply time (bitcask.Set, Incr, Append, GetDel, ...), so SET NX, INCR and
APPEND are atomic against every other write; MSET is one batch, and MSETNX one op
(bitcask.MSetNx: every key only if none exists), atomic alone and inside EXEC alike.
GET and plain SET outside MULTI take the dispatcher's fast path first (its `call`);
these handlers are their general path.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import bitcask
from protocol import redis_commands as rc
from protocol._resp_writer import encode, encode_error

from ._redis_replies import TOO_BIG, int_of_applied, ok, op_error, reply_too_big
from ._redis_session import OK, RedisError, RedisSession, Step
from ._reply_bounds import values_over
from .config import ServerConfig

__all__ = ["StringCommands"]


class StringCommands:
    """The string commands; mixed into RedisDispatcher, whose state they use."""

    _db: Any
    _config: ServerConfig
    _max_value: int
    _key: Callable[[bytes], bytes]
    _value: Callable[[bytes], bytes]

    def _get(self, s: RedisSession, c: rc.Get, tx: bool) -> Step:
        key, proto = self._key(c.key), s.proto
        if tx:
            return Step(ops=[bitcask.GetEx(key)], shape=lambda r: _value_reply(r[0], proto))
        get = self._db.get
        return Step(read=lambda: encode(get(key), proto))

    def _mget(self, s: RedisSession, c: rc.MGet, tx: bool) -> Step:
        keys, proto = [self._key(k) for k in c.keys], s.proto
        limit = self._config.max_reply_bytes
        if tx:
            return Step(
                ops=[bitcask.GetEx(k) for k in keys],
                shape=lambda r: _bounded_reply(
                    [v if type(v) is bytes else None for v in r], proto, limit
                ),
            )
        db = self._db
        get_many = db.get_many  # one instant: never half of a batch, as Redis

        def read() -> bytes:
            # Sized from the keydir first, so a reply past the bound reads no value:
            # MGET of one 1 MiB key named 300 times peaked near 865 MB of RSS.
            size = values_over(db, keys, limit)  # one key: max_value_size
            if size:
                return encode_error(reply_too_big(size, limit))
            return _bounded_reply(get_many(keys), proto, limit)

        return Step(read=read)

    def _strlen(self, s: RedisSession, c: rc.StrLen, tx: bool) -> Step:
        key = self._key(c.key)
        if tx:
            return Step(ops=[bitcask.GetEx(key)], shape=lambda r: _len_reply(r[0]))
        # From the keydir, as Redis's is O(1): reading the value made each STRLEN of a
        # 32 MiB value cost ~50 ms of the event loop and a 32 MiB copy, and
        # `redis-cli --bigkeys` (a STRLEN per key) read the whole store.
        value_bytes = self._db.value_bytes
        return Step(read=lambda: encode(value_bytes((key,))))

    def _set(self, s: RedisSession, c: rc.Set, tx: bool) -> Step:
        key, value, proto = self._key(c.key), self._value(c.value), s.proto
        size = len(key) + len(value)
        if not (c.nx or c.xx or c.get or c.keep_ttl or c.expire_at_ms):
            return Step(ops=[("put", key, value, None)], shape=ok, nbytes=size)
        op = bitcask.Set(
            key, value, expire_at_ms=c.expire_at_ms or 0, nx=c.nx, xx=c.xx, keep_ttl=c.keep_ttl
        )
        if c.get:
            return Step(ops=[op], shape=lambda r: _set_get_reply(r[0], proto), nbytes=size)
        if c.name == "set":
            return Step(ops=[op], shape=lambda r: _set_reply(r[0], proto), nbytes=size)
        return Step(ops=[op], shape=ok, nbytes=size)  # SETEX, PSETEX

    def _setnx(self, s: RedisSession, c: rc.SetNx, tx: bool) -> Step:
        key, value = self._key(c.key), self._value(c.value)
        op = bitcask.Set(key, value, nx=True)
        return Step(ops=[op], shape=lambda r: int_of_applied(r[0]), nbytes=len(key) + len(value))

    def _mset(self, s: RedisSession, c: rc.MSet, tx: bool) -> Step:
        pairs = [(self._key(k), self._value(v)) for k, v in c.pairs]
        size = sum(len(k) + len(v) for k, v in pairs)
        if c.name == "msetnx":  # all or nothing, decided by the writer at apply time
            op = bitcask.MSetNx(tuple(pairs))
            return Step(ops=[op], shape=lambda r: int_of_applied(r[0]), nbytes=size)
        return Step(ops=[("put", k, v, None) for k, v in pairs], shape=ok, nbytes=size)

    def _getdel(self, s: RedisSession, c: rc.GetDel, tx: bool) -> Step:
        key, proto = self._key(c.key), s.proto
        return Step(ops=[bitcask.GetDel(key)], shape=lambda r: _value_reply(r[0], proto))

    def _getex(self, s: RedisSession, c: rc.GetEx, tx: bool) -> Step:
        key, proto = self._key(c.key), s.proto
        if c.invalid_expire is not None:  # an error only for a key that exists (Redis)
            message = c.invalid_expire
            if tx:  # as the transaction's earlier writes left the key
                return Step(
                    ops=[bitcask.Peek(key)],
                    shape=lambda r: encode(None, proto) if r[0] is None else encode_error(message),
                )
            db = self._db

            def bad() -> bytes:
                return encode_error(message) if key in db else encode(None, proto)

            return Step(read=bad)
        op = bitcask.GetEx(key, at_ms=c.expire_at_ms or 0, persist=c.persist)
        return Step(ops=[op], shape=lambda r: _value_reply(r[0], proto))

    def _incrby(self, s: RedisSession, c: rc.IncrBy, tx: bool) -> Step:
        key = self._key(c.key)
        return Step(ops=[bitcask.Incr(key, c.delta)], shape=lambda r: _int_reply(r[0]))

    def _incrbyfloat(self, s: RedisSession, c: rc.IncrByFloat, tx: bool) -> Step:
        key = self._key(c.key)
        if not c.text:  # built without the client's text: the double's arithmetic
            if not math.isfinite(c.delta):
                raise RedisError("ERR increment would produce NaN or Infinity")
            return Step(
                ops=[bitcask.IncrFloat(key, c.delta)], shape=lambda r: _value_reply(r[0], 2)
            )
        # Redis's long double arithmetic on the increment as written (bitcask._ldouble)
        op = bitcask.IncrFloat(key, 0.0, text=c.text)
        return Step(ops=[op], shape=lambda r: _value_reply(r[0], 2))

    def _append(self, s: RedisSession, c: rc.Append, tx: bool) -> Step:
        key, value = self._key(c.key), self._value(c.value)
        # A hint from the keydir (the writer decides on the value it reads): the hint
        # read the whole value on the event loop, 64 MiB per APPEND to a 64 MiB value.
        if len(value) + self._db.value_bytes((key,)) > self._max_value:
            raise RedisError(TOO_BIG)
        return Step(
            ops=[bitcask.Append(key, value)], shape=lambda r: _int_reply(r[0]), nbytes=len(value)
        )


def _bounded_reply(values: list[bytes | None], proto: int, limit: int) -> bytes:
    # The values read: refused past the bound all the same (a write between sizing
    # and reading may have grown them), before the reply doubles them.
    size = sum(len(v) for v in values if v is not None)
    if size > limit and len(values) > 1:
        return encode_error(reply_too_big(size, limit))
    return encode(values, proto)


def _value_reply(result: Any, proto: int) -> bytes:
    op_error(result)
    return encode(result, proto)


def _len_reply(result: Any) -> bytes:
    op_error(result)
    return encode(len(result or b""))


def _int_reply(result: Any) -> bytes:
    op_error(result)
    return encode(int(result))


def _set_reply(result: Any, proto: int) -> bytes:
    op_error(result)
    return OK if result[0] else encode(None, proto)


def _set_get_reply(result: Any, proto: int) -> bytes:
    op_error(result)
    return encode(result[1], proto)
