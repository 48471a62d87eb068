"""Why a connection stopped reading: several independent reasons, one switch.

Strategy: reading is paused while any reason holds and resumed only when the last
one clears. Each reason is one bit, so clearing one never resumes a connection
that another still holds (the rule of uvicorn's flow_control.py, for four
reasons instead of two). Both the binary and the HTTP protocol use it, and its
rule for closing after the replies (``_linger_close``).

A connection refused when it is accepted (over --max-connections, while draining)
lingers too (``_linger_refused``), or a client that sent its request at once (a
PUT with its body) reads a reset instead of the refusal; it holds no connection
slot, so the lingering ones are bounded separately: at most REFUSED_LINGER_MAX at
once in the process, each for at most REFUSED_LINGER_SECONDS, reading nothing into
memory; past the bound a refusal closes at once. A flood of refused connections
costs at most that many descriptors (taken from the server's 64 kept in reserve).
The count is the server's (``RefusedLingers``, in its ServerState), not this module's.
"""

from __future__ import annotations

import asyncio

__all__ = [
    "LINGER_SECONDS",
    "PAUSE_INFLIGHT",
    "PAUSE_SHUTDOWN",
    "PAUSE_TRANSPORT",
    "PAUSE_WRITER",
    "REFUSED_LINGER_MAX",
    "REFUSED_LINGER_SECONDS",
    "ReadPause",
    "RefusedLingers",
]

PAUSE_INFLIGHT = 1  # too many requests in flight on this connection
PAUSE_WRITER = 2  # the server's writer queue is full
PAUSE_TRANSPORT = 4  # our own write buffer is full (the peer is not reading)
PAUSE_SHUTDOWN = 8  # the server is draining

# How long a connection closed by us still reads (and drops) what its peer sends:
# closing with unread input makes the kernel answer with a reset, which can destroy
# replies the peer has not read yet (a refusal, an error before a large body).
LINGER_SECONDS = 2.0

# Refused connections lingering at once (per server: both its ports), and how long
# each may: a client that sends its request at once has sent it by then.
REFUSED_LINGER_MAX = 16
REFUSED_LINGER_SECONDS = 1.0


class RefusedLingers:
    """The refused connections of one server lingering now (at most REFUSED_LINGER_MAX)."""

    __slots__ = ("count",)

    def __init__(self) -> None:
        self.count = 0


class ReadPause:
    """Mixin for an asyncio.Protocol that has a `transport` attribute.

    It also answers the transport's own flow control: while our write buffer is
    over its high-water mark (the peer does not read), we stop reading its input.
    """

    transport: asyncio.Transport | None
    _pause: int = 0

    def _set_pause(self, bit: int, on: bool) -> None:
        before = self._pause
        self._pause = before | bit if on else before & ~bit
        if self.transport is None or self.transport.is_closing():
            return
        if before and not self._pause:
            self.transport.resume_reading()
        elif not before and self._pause:
            self.transport.pause_reading()

    def pause_writing(self) -> None:
        self._set_pause(PAUSE_TRANSPORT, True)

    def resume_writing(self) -> None:
        self._set_pause(PAUSE_TRANSPORT, False)

    # ---- closing after the replies (the binary and the HTTP protocol alike) ----

    _peer_eof: bool = False
    _linger_timer: asyncio.TimerHandle | None = None

    def _linger_close(self, loop: asyncio.AbstractEventLoop) -> None:
        """Close after the replies: half-close (the peer reads every reply, then EOF),
        drop what still arrives (the protocol's data_received, once it is closing),
        close at the peer's EOF or after LINGER_SECONDS."""
        transport = self.transport
        assert transport is not None
        if self._linger_timer is not None or transport.is_closing():
            return
        if self._peer_eof or not transport.can_write_eof():
            transport.close()
            return
        transport.write_eof()
        self._linger_timer = loop.call_later(LINGER_SECONDS, transport.close)
        self._pause = 0
        transport.resume_reading()

    _refused_slots: RefusedLingers | None = None  # the server's, while this one lingers

    def _linger_refused(self, loop: asyncio.AbstractEventLoop, slots: RefusedLingers) -> None:
        """Close a connection refused at accept, its refusal written: half-close and
        drop its input (the protocol's data_received) until its EOF or
        REFUSED_LINGER_SECONDS, if fewer than REFUSED_LINGER_MAX already do; else now."""
        transport = self.transport
        assert transport is not None
        if slots.count >= REFUSED_LINGER_MAX or not transport.can_write_eof():
            transport.close()
            return
        slots.count += 1
        self._refused_slots = slots
        transport.write_eof()
        self._linger_timer = loop.call_later(REFUSED_LINGER_SECONDS, transport.close)

    def _end_linger(self) -> None:
        """From connection_lost: the linger's timer and its refused slot, if any."""
        if self._linger_timer is not None:
            self._linger_timer.cancel()
            self._linger_timer = None
        if self._refused_slots is not None:
            self._refused_slots.count -= 1
            self._refused_slots = None
