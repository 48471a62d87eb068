"""The Redis dialect's transactions: MULTI, EXEC, DISCARD, WATCH, UNWATCH.

Strategy: a mixin of `RedisDispatcher` (server/_redis.py), whose `call` routes
MULTI, EXEC, DISCARD and WATCH here before any command object is built (they act
on the connection's queue, never queued themselves); UNWATCH is a handler as the
other commands' (server/_redis_admin.py's pattern).
- EXEC concatenates the steps of its queued commands into ONE engine batch, with
  the connection's watches (nil when a watched key was written since WATCH). The
  reads GET, MGET, STRLEN, EXISTS, TYPE, the TTL family and DBSIZE are ops inside
  it, so they see the transaction's own earlier writes and nothing after them; KEYS,
  SCAN and RANDOMKEY run when EXEC starts if no write comes before them in the
  transaction, else right after the batch.
- The queue is bounded (--max-multi-bytes, `queued_bytes`): a command that would
  take it past the bound is not queued, answers BATCH_TOO_LARGE's one line and
  makes EXEC answer EXECABORT (Redis's rule for a command refused inside MULTI).
  The keys a connection WATCHes are bounded by the same number, apart
  (`watch_cost`): a WATCH past it is refused whole and watches nothing.
- The reply is bounded before anything is read (values_over's rule): a command over
  the bound alone answers its error in its place, the rest over it together refuse
  the EXEC whole, nothing written.
"""

from __future__ import annotations

import asyncio
import itertools
from collections.abc import Callable
from typing import Any

import bitcask
from protocol import ErrorCode, ErrorInfo
from protocol import redis_commands as rc
from protocol._resp_writer import NullArray, encode, encode_error
from protocol.resp_dialect import error_line

from ._outcome import Async, Done, Outcome, Read, error_info
from ._redis_replies import ErrorReply, reply_too_big
from ._redis_session import (
    OK,
    QUEUED,
    RedisError,
    RedisSession,
    Settle,
    Step,
    redis_error,
    run_read,
    watch_cost,
)
from ._reply_bounds import batch_values, sizes_over
from ._writer import Writer
from ._writer_thread import WATCH_ABORTED
from .config import ServerConfig

__all__ = ["MULTI_ENTRY_BYTES", "TransactionCommands", "queued_bytes"]

MULTI_ENTRY_BYTES = 64
"""What a queued command costs besides its arguments' bytes, per argument and once
for the command (the objects that hold them): 1,000,000 queued `SET k<n> <16 bytes>`
took 250 MB of RSS, about 250 bytes each; queued_bytes counts each at about 280."""


def queued_bytes(argv: list[bytes]) -> int:
    """The bytes one command queued inside MULTI counts against --max-multi-bytes."""
    return sum(map(len, argv)) + MULTI_ENTRY_BYTES * (len(argv) + 1)


class TransactionCommands:
    """MULTI/EXEC/DISCARD/WATCH/UNWATCH; mixed into RedisDispatcher, whose state they use."""

    _db: Any
    _writer: Writer
    _config: ServerConfig
    _max_value: int
    _key: Callable[[bytes], bytes]
    _step: Callable[..., Step]
    _refusal: Callable[[], ErrorInfo | None]

    def _unwatch(self, s: RedisSession, c: rc.Unwatch, tx: bool) -> Step:
        s.unwatch()
        return Step(OK)

    def _multi(self, s: RedisSession) -> Outcome:
        if s.multi is not None:
            return Done(None, redis_error("ERR MULTI calls can not be nested"))
        s.multi, s.dirty, s.multi_bytes = [], False, 0
        return Done(OK, None)

    def _multi_limit(self) -> int:
        """--max-multi-bytes, at least --max-frame: one request of the largest size
        always queues. The keys a connection WATCHes are bounded by it too, apart."""
        return max(self._config.max_multi_bytes, self._config.max_frame)

    def _queue(self, s: RedisSession, argv: list[bytes]) -> Outcome:
        """Queue one command inside MULTI, unless the queue would pass --max-multi-bytes
        (at least --max-frame, so the largest single command fits): then it is refused
        and the transaction aborts at EXEC, as Redis aborts one whose command was
        refused. The queue never grows past the bound, however many follow."""
        assert s.multi is not None
        size = s.multi_bytes + queued_bytes(argv)
        limit = self._multi_limit()
        if size > limit:
            s.dirty = True
            return Done(
                None, ErrorInfo.from_code(ErrorCode.BATCH_TOO_LARGE, multi_too_big(size, limit))
            )
        s.multi.append(argv)
        s.multi_bytes = size
        return Done(QUEUED, None)

    def _discard(self, s: RedisSession) -> Outcome:
        if s.multi is None:
            return Done(None, redis_error("ERR DISCARD without MULTI"))
        s.multi, s.dirty = None, False
        s.unwatch()
        return Done(OK, None)

    def _watch(self, s: RedisSession, keys: list[bytes]) -> Outcome:
        if s.multi is not None:
            return Done(None, redis_error("ERR WATCH inside MULTI is not allowed"))
        try:
            ks = [self._key(k) for k in keys]
        except RedisError as exc:
            return Done(None, redis_error(exc.message))

        # The connection holds the watch at once, so an UNWATCH, DISCARD or EXEC
        # pipelined behind this WATCH finds it (it found nothing, so EXEC ran unwatched
        # and the watch was left for the next transaction); the engine watch is taken
        # by a Read, after this connection's earlier writes applied, so they never
        # count as writes seen by it. A ref released before then takes nothing. Keys
        # the connection watches already keep their first watch (Redis's rule).
        new = s.unwatched(ks)
        size = s.watch_bytes + watch_cost(new)
        limit = self._multi_limit()
        if new and size > limit:
            message = (
                f"WATCH would hold {size} bytes of watched keys, over max-multi-bytes "
                f"{limit}: UNWATCH, EXEC or DISCARD first, and watch fewer keys"
            )
            return Done(None, ErrorInfo.from_code(ErrorCode.BATCH_TOO_LARGE, message))
        taken = s.watch_keys(new)
        if taken is None:
            return Done(OK, None)
        ref, ks = taken

        def watch(_: None) -> bytes:
            if not ref.released:
                ref.take(self._db.watch(*ks))
            return OK

        return Read(watch, None)

    def _exec(self, s: RedisSession) -> Outcome:
        if s.multi is None:
            return Done(None, redis_error("ERR EXEC without MULTI"))
        queued, dirty = s.multi, s.dirty
        s.multi, s.dirty = None, False
        watches = s.take_watches()
        if dirty:
            for w in watches:
                w.release()
            return Done(
                None, redis_error("EXECABORT Transaction discarded because of previous errors.")
            )
        steps: list[Step] = []
        for argv in queued:
            try:
                steps.append(self._step(s, argv, tx=True))
            except RedisError as exc:
                steps.append(Step(encode_error(exc.message)))
        proto = s.proto  # a queued HELLO changes the version of the replies after it
        # The reply bound (values_over's rule), before anything is read: a command over
        # it alone answers its error in its place (MGET's rule); the rest over it
        # together refuse the EXEC whole, nothing written (MULTI, GET of a 64 MiB key
        # 10,000 times, EXEC read 640 GB into the writer's results).
        limit = self._config.max_reply_bytes
        bounds = self._exec_bounds(steps)
        for i, step in enumerate(steps):
            if bounds[i] > limit and step.ops is not None and len(step.ops) > 1:
                steps[i], bounds[i] = Step(encode_error(reply_too_big(bounds[i], limit))), 0
        over = sizes_over(bounds, limit)  # one value alone: max_value_size, as GET
        if over:
            for w in watches:
                w.release()
            return Done(None, redis_error(reply_too_big(over, limit)))
        # KEYS, SCAN, RANDOMKEY are sized only by running them (after the batch, when a
        # write comes first): each counts its reply against what the values and the
        # reads before it left, and one that does not fit answers the error in its
        # place (five KEYS of 2 MB each under a 3 MB bound: a 10 MB reply).
        spent = [sum(bounds)]
        for step in steps:
            if step.read is not None:
                step.read = _within(step.read, spent, limit)
        ops: list[Any] = []
        size = 0
        for step in steps:
            if step.ops is not None:
                ops.extend(step.ops)
                size += step.nbytes
        if not ops and not watches:
            return Read(run_read, lambda: _exec_reply(steps, [], proto))
        refusal = self._refusal() if ops else None
        if refusal is not None:
            for w in watches:
                w.release()
            return Done(None, refusal)

        def watch() -> bitcask.Watch | None:
            # taken by the Writer when it writes the group: the WATCH Reads ran by then
            return _combined([w.get() for w in watches])

        def start(settle: Settle) -> None:
            # Started after this connection's earlier writes applied (the Pipeline's
            # rule for Async work): the reads queued before the first write of the
            # transaction are answered now, the later ones right after the batch.
            for step in steps:
                if step.ops is not None:
                    break
                if step.read is not None:
                    step.reply, step.read = step.read(), None

            def done(results: list[Any] | None, exc: BaseException | None) -> None:
                for w in watches:
                    w.release()
                if exc is not None:
                    settle(None, error_info(exc))
                elif results is None or results is WATCH_ABORTED:  # a watched key was written:
                    settle(encode(NullArray(), proto), None)
                else:
                    settle(_exec_reply(steps, results, proto), None)

            if not self._writer.submit(ops, done, nbytes=size, watch=watch if watches else None):
                for w in watches:
                    w.release()
                _later(settle, None, _busy(self._writer))

        return Async(start)

    def _exec_bounds(self, steps: list[Step]) -> list[int]:
        """Per step, the most bytes of values its ops can hold (_reply_bounds.batch_values,
        the binary commit's sizing: the keydir plus the transaction's earlier writes)."""
        sizes = iter(
            batch_values(self._db, [op for st in steps for op in st.ops or ()], self._max_value)
        )
        return [sum(itertools.islice(sizes, len(step.ops or ()))) for step in steps]


def multi_too_big(size: int, limit: int) -> str:
    """The refusal of a command that would take a MULTI queue past its bound."""
    return (
        f"MULTI queue of {size} bytes would exceed max-multi-bytes {limit}: the "
        "transaction will abort at EXEC; send it as smaller transactions"
    )


def _within(read: Callable[[], bytes], spent: list[int], limit: int) -> Callable[[], bytes]:
    """An EXEC's read, bounded with the rest of its reply (spent[0]: bytes so far)."""

    def bounded() -> bytes:
        reply = read()
        over = sizes_over((spent[0], len(reply)), limit)
        if over:
            return encode_error(reply_too_big(over, limit, "keys"))
        spent[0] += len(reply)
        return reply

    return bounded


def _later(settle: Settle, result: Any, error: Any) -> None:
    """Settle an Async outcome on a later turn: never from inside its own start()."""
    asyncio.get_running_loop().call_soon(settle, result, error)


def _busy(writer: Writer) -> ErrorInfo:
    if writer.closed:
        return ErrorInfo.from_code(ErrorCode.SHUTTING_DOWN, "shutting down")
    return ErrorInfo.from_code(ErrorCode.BUSY, "writer queue full; retry later")


def _exec_reply(steps: list[Step], results: list[Any], proto: int) -> bytes:
    out = [b"*%d\r\n" % len(steps)]
    i = 0
    for step in steps:
        if step.ops is not None:
            n = len(step.ops)
            assert step.shape is not None
            try:
                out.append(step.shape(results[i : i + n]))
            except ErrorReply as exc:  # one command's error, an element of the array
                out.append(error_line(exc.info))
            i += n
        elif step.read is not None:
            out.append(step.read())
        else:
            assert step.reply is not None
            out.append(step.reply)
    return b"".join(out)


def _combined(watches: list[bitcask.Watch]) -> bitcask.Watch | None:
    """One watch over the keys of several WATCH calls (the engine decides one watch per
    batch; a connection may WATCH several times). Never released itself: its parts are."""
    if not watches:
        return None
    return watches[0] if len(watches) == 1 else bitcask.Watch.combine(watches)
