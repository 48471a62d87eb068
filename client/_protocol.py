"""The wire layer of the client: one asyncio.Protocol per connection.

Strategy / invariants (asyncpg's split: this file owns the bytes, `Client` owns
the policy):
- One future per pending call, in `_pending[msgid] = (future, deadline, retry)`,
  retry being (method, params) for a call that may be re-sent after a loss and
  None otherwise. A reply resolves the future whose msgid it carries and nothing
  else; a reply whose msgid is unknown (its call timed out or was cancelled and
  already forgotten) or whose future is already done (cancelled) is dropped.
  Replies can therefore never shift onto the wrong caller, whatever was
  cancelled in between.
- msgids count up from 1 and wrap at 2**32; 0 is never used for a call because
  the server sends connection-level errors (too many connections, oversize
  frame) with msgid 0. A msgid still pending is skipped, never reused.
- Timeouts cost no timer per call: each entry carries its deadline and a single
  timer is armed for the earliest one; when it fires, `_sweep` fails every
  expired call with CallTimeoutError, forgets the expired ones, and re-arms for
  the next deadline, then tells `on_timeout` (the Client's policy) that calls
  expired. A cancelled call keeps its entry until its reply or its deadline,
  whichever comes first, and counts as expired at its deadline: an application
  bounding its calls with asyncio.timeout cancels them, and a connection that
  went silent under them must be noticed as under calls that timed out.
  `received` counts the chunks read, so that policy can tell a silent connection
  from a slow call on a live one.
- Connection loss (EOF, socket error, garbage from the server) fails every
  pending future with ConnectionLostError whose __cause__ is what happened,
  except the retryable ones, which are handed, still pending, to `on_retry`
  (the Client re-sends them once on its next connection); the protocol is then
  dead (`closed`) and the Client replaces it.
- A connection serves the event loop that made it only: `request` checks that
  loop is the one running, in this thread, before writing anything (a frame
  written for a caller in another loop, after the first one ended or in another
  thread while it runs, would be applied by the server while its reply could never
  be awaited there).
- Write flow control: the transport's pause_writing/resume_writing toggle
  `write_paused`; callers await `wait_writable()` before writing while paused.
- The request path creates no task: encode the frame, register the future,
  write or queue the frame. A call on an idle connection (nothing in flight)
  is written at once. While other calls are in flight, frames queued during one
  event-loop turn go out together at the end of the turn (one `call_soon` per
  turn, not per call). Measured on a minimal task-based client, 50 tasks on one
  connection, uvloop: 2.7-3.5 us of client CPU per call instead of 6.8-7.0 us
  with one write per call, because uvloop tries a send syscall on every write
  to an empty transport buffer.
"""

from __future__ import annotations

import asyncio
import math
from collections.abc import Callable
from threading import get_ident
from typing import Any

from client.errors import (
    CallTimeoutError,
    ConnectionLostError,
    FrameTooLargeError,
    InterfaceError,
    ServerError,
    error_for_code,
)
from protocol import (
    DEFAULT_MAX_FRAME,
    MAX_MSGID,
    FrameDecoder,
    LocalProtocolError,
    RemoteProtocolError,
    encode_request,
    is_refusal,
    refusal_error,
)
from protocol import ErrorCode as _ErrorCode

__all__ = ["OTHER_LOOP", "ClientProtocol", "Entry", "HttpAnswerError"]

OTHER_LOOP = (
    "this client belongs to the event loop that connected it; "
    "connect one client per event loop (asyncio.run starts a new loop each time)"
)

# a pending call: its future, its deadline, and (method, params) if it may be re-sent
_Entry = tuple["asyncio.Future[Any]", float, "tuple[str, list[Any]] | None"]
Entry = _Entry


class HttpAnswerError(RemoteProtocolError):
    """The peer answered in HTTP where a reply frame must start: an HTTP port (a
    bitcask-server's --http-port), not its binary one."""


def _server_error(error: Any) -> ServerError:
    """The typed exception for a wire error `[code, name, message]`."""
    if type(error) is list and len(error) == 3 and type(error[0]) is int:
        return error_for_code(error[0], str(error[1]), str(error[2]))
    return ServerError(int(_ErrorCode.INTERNAL), "INTERNAL", f"malformed error {error!r}")


class ClientProtocol(asyncio.Protocol):
    """Frames out, futures resolved in: the connection under one `Client`.

    Args:
        loop: the event loop the connection lives on.
        max_frame: the largest frame accepted from or sent to the server.
    """

    def __init__(self, loop: asyncio.AbstractEventLoop, max_frame: int = DEFAULT_MAX_FRAME) -> None:
        self._loop = loop
        self._thread = get_ident()  # the loop's: asyncio makes a protocol in its loop
        self.time = loop.time
        self.max_frame = max_frame
        # connection state
        self._transport: asyncio.Transport | None = None
        self._decoder = FrameDecoder(max_frame)
        self.closed = False
        self._cause: BaseException | None = None  # why the connection ended
        self._conn_error: ServerError | None = None  # a msgid-0 error from the server
        self.lost: asyncio.Future[None] = loop.create_future()
        # uvloop may return from create_connection before connection_made runs
        self.made: asyncio.Future[None] = loop.create_future()
        # pending calls
        self._pending: dict[int, _Entry] = {}
        # gets the still-pending retryable calls when the connection is lost
        self.on_retry: Callable[[list[_Entry], BaseException], None] | None = None
        # told (after a sweep) that calls timed out; `received` counts chunks read
        self.on_timeout: Callable[[ClientProtocol], None] | None = None
        self.received = 0
        self._next_id = 1
        # timeouts: one timer for the earliest deadline
        self._timer: asyncio.TimerHandle | None = None
        self._timer_at = math.inf
        # outgoing frames queued this loop turn, flushed by _flush
        self._out: list[bytes] = []
        # write flow control
        self.write_paused = False
        self._writable: list[asyncio.Future[None]] = []

    # ------------------------------------------------------------ asyncio callbacks

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's transports do not subclass asyncio.Transport, hence no isinstance check
        self._transport = transport  # type: ignore[assignment]
        if not self.made.done():
            self.made.set_result(None)

    def data_received(self, data: bytes) -> None:
        self.received += 1
        if not self._decoder.buffered and is_refusal(data):
            # A text line where a frame must start: the server refused the connection
            # (protocol/refusals.py), e.g. "-ERR max number of clients reached".
            self._conn_error = _server_error(refusal_error(data).to_obj())
            self._violation(self._conn_error)
            return
        try:
            objs = self._decoder.feed_raw(data)
        except RemoteProtocolError as exc:
            self._deliver(exc.messages)
            if is_refusal(exc.unread):
                # the same refusal line, after replies in the same read: the server
                # dropped a request it held (--max-partial-input, --request-timeout)
                self._conn_error = _server_error(refusal_error(exc.unread).to_obj())
            elif self.received == 1 and data.startswith(b"HTTP/"):
                status = data.split(b"\r\n", 1)[0][:80].decode("ascii", "replace")
                exc = HttpAnswerError(f"it answers HTTP ({status}), not bitcask's binary protocol")
            self._violation(self._conn_error or exc)
            return
        self._deliver(objs)

    def eof_received(self) -> bool | None:
        return None  # let the transport close; connection_lost fails what is pending

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        # the server's own reason (a msgid-0 error just before it closed) beats the
        # socket error its close caused (often ECONNRESET: it had unread requests)
        cause: BaseException = (
            self._conn_error
            or self._cause
            or exc
            or ConnectionResetError("server closed the connection")
        )
        self._cause = cause
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        pending, self._pending = self._pending, {}
        retry: list[_Entry] = []
        for entry in pending.values():
            fut = entry[0]
            if fut.done():
                continue
            if entry[2] is not None and self.on_retry is not None:
                retry.append(entry)
            else:
                fut.set_exception(self._lost_error())
        if retry:
            assert self.on_retry is not None
            self.on_retry(retry, cause)
        for waiter in self._writable:
            if not waiter.done():
                waiter.set_exception(self._lost_error())
        self._writable.clear()
        if not self.lost.done():
            self.lost.set_result(None)
        if not self.made.done():
            self.made.set_exception(self._lost_error())

    def pause_writing(self) -> None:
        self.write_paused = True

    def resume_writing(self) -> None:
        self.write_paused = False
        waiters, self._writable = self._writable, []
        for waiter in waiters:
            if not waiter.done():
                waiter.set_result(None)

    # ------------------------------------------------------------ replies

    def _deliver(self, objs: list[Any]) -> None:
        pending = self._pending
        try:
            for obj in objs:
                if type(obj) is not list or len(obj) != 4 or obj[0] != 1:
                    raise TypeError("expected a response [1, msgid, error, result]")
                entry = pending.pop(obj[1], None)
                if entry is None:
                    if obj[1] == 0 and obj[2] is not None:
                        self._conn_error = _server_error(obj[2])
                    continue  # the reply to a call that timed out or was cancelled
                fut = entry[0]
                if fut.done():
                    continue
                error = obj[2]
                if error is None:
                    fut.set_result(obj[3])
                else:
                    fut.set_exception(_server_error(error))
        except TypeError as exc:
            self._violation(RemoteProtocolError(f"bad response from server: {exc}"))

    def _violation(self, exc: BaseException) -> None:
        """The server broke the protocol: the stream is unusable, drop the connection."""
        self._cause = exc
        if self._transport is not None:
            self._transport.abort()

    def _lost_error(self) -> ConnectionLostError:
        cause = self._cause
        err = ConnectionLostError(f"connection lost: {cause}")
        err.__cause__ = cause
        return err

    # ------------------------------------------------------------ requests

    @property
    def in_flight(self) -> int:
        """Calls sent and not yet answered (a cancelled one until its reply or deadline)."""
        return len(self._pending)

    def request(
        self, method: str, params: list[Any], deadline: float, retry: bool = False
    ) -> asyncio.Future[Any]:
        """Send one request now; return the future its reply will resolve.

        Args:
            method: the wire method.
            params: the params array, already normalised by the caller.
            deadline: loop time after which the call fails with CallTimeoutError
                (math.inf for none).
            retry: on connection loss, hand the call to `on_retry` instead of
                failing it (for idempotent calls).

        Raises:
            ConnectionLostError: the connection is already closed (nothing sent).
            FrameTooLargeError: the request would exceed max_frame (nothing sent).
            InterfaceError: a param cannot be encoded, or the caller runs in another
                event loop than the connection's (nothing sent).
        """
        if self.closed:
            raise self._lost_error()
        if get_ident() != self._thread or not self._loop.is_running():
            # The caller runs in another loop: in another thread (the connection's loop
            # may be running there), or in this one after that loop ended (one thread
            # runs one loop at a time). Checked before writing: the frame would reach
            # the server (an incr applied) while the caller could never await its reply.
            # (get_ident and is_running cost ~50 ns each, get_running_loop ~170.)
            raise InterfaceError(OTHER_LOOP)
        pending = self._pending
        msgid = self._next_id
        while msgid in pending:
            msgid = msgid + 1 if msgid < MAX_MSGID else 1
        self._next_id = msgid + 1 if msgid < MAX_MSGID else 1
        try:
            frame = encode_request(msgid, method, params, max_frame=self.max_frame)
        except LocalProtocolError as exc:
            if exc.code == _ErrorCode.FRAME_TOO_LARGE:
                raise FrameTooLargeError.local(exc.message) from None
            raise InterfaceError(f"cannot encode {method} params: {exc.message}") from None
        out = self._out
        if out:
            out.append(frame)  # a flush is already scheduled for this loop turn
        elif pending:
            out.append(frame)  # others in flight: more calls likely follow this turn
            self._loop.call_soon(self._flush)
        else:
            self._transport.write(frame)  # type: ignore[union-attr]  # idle: no reason to wait
        fut = self._loop.create_future()
        pending[msgid] = (fut, deadline, (method, params) if retry else None)
        if deadline < self._timer_at:
            self._arm(deadline)
        return fut

    def _flush(self) -> None:
        out = self._out
        if not out or self.closed:
            out.clear()
            return
        self._out = []
        # writelines: uvloop sends the frames without joining them (big values are not copied)
        self._transport.writelines(out)  # type: ignore[union-attr]

    def pending_futures(self) -> list[asyncio.Future[Any]]:
        """The futures of the calls still waiting for a reply."""
        return [entry[0] for entry in self._pending.values() if not entry[0].done()]

    def set_max_receive(self, max_frame: int) -> None:
        """Accept reply frames up to `max_frame` bytes (the server's announced limit)."""
        self._decoder.max_frame = max_frame

    async def wait_writable(self) -> None:
        """Wait until the transport's buffer has drained below its high-water mark."""
        if not self.write_paused:
            return
        if self.closed:
            raise self._lost_error()
        waiter: asyncio.Future[None] = self._loop.create_future()
        self._writable.append(waiter)
        try:
            await waiter
        except asyncio.CancelledError:
            # a caller that gave up (wait_for, a timeout) leaves no waiter behind: with
            # a peer that never reads again they would pile up, one per call
            if waiter in self._writable:
                self._writable.remove(waiter)
            raise

    def close(self) -> None:
        """Close the transport (pending calls fail with ConnectionLostError)."""
        if self._transport is not None and not self.closed:
            self._cause = self._cause or ConnectionAbortedError("client closed the connection")
            self._transport.close()

    def abort(self, cause: BaseException | None = None) -> None:
        """Drop the connection at once."""
        if self._transport is not None and not self.closed:
            self._cause = cause or ConnectionAbortedError("client aborted the connection")
            self._transport.abort()

    # ------------------------------------------------------------ timeouts

    def _arm(self, when: float) -> None:
        if self._timer is not None:
            self._timer.cancel()
        self._timer = self._loop.call_at(when, self._sweep)
        self._timer_at = when

    def _sweep(self) -> None:
        self._timer = None
        self._timer_at = math.inf
        # the loop may run a timer up to its clock resolution early: count that as due
        now = self._loop.time() + 0.001
        pending = self._pending
        soonest = math.inf
        expired = False
        for msgid, (fut, deadline, _) in list(pending.items()):
            if deadline <= now:
                del pending[msgid]
                if not fut.done():
                    fut.set_exception(CallTimeoutError("call timed out"))
                # a cancelled call still unanswered at its deadline counts as timed out
                # too: an application bounding its calls with asyncio.timeout or
                # wait_for cancels them first, and a silent connection must be probed
                # all the same (its reply, if it ever comes, is dropped)
                expired = True
            elif deadline < soonest:
                soonest = deadline
        if soonest < math.inf:
            self._arm(soonest)
        if expired and self.on_timeout is not None:
            self.on_timeout(self)
