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

A peer that vanishes without a FIN (power loss, a pulled cable, a NAT that forgot
the flow) never reads again. The server's sweeper (server/_connections.py) closes a
connection once no byte moved either way for --idle-timeout, and what counts as
moving is decided here, for both protocols alike (``ReadPause.moved``): input
read, or the transport's write buffer changed (the peer took bytes). Output still buffered for a peer that took none of it is no sign of
life: a connection with replies queued (write buffer full, reading paused), a
linger or a graceful close waiting to flush them would otherwise hold its slot
until the kernel gave up retransmitting (about 15 minutes for a dead peer, never
for one that is alive and does not read). ``close_idle`` then resets (abort):
a graceful close would wait for the same flush. TCP keepalive (``set_keepalive``,
--tcp-keepalive) covers the one case the sweeper cannot see: an idle connection
under --idle-timeout 0.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
from typing import Any

__all__ = [
    "LINGER_SECONDS",
    "PAUSE_INFLIGHT",
    "PAUSE_SHUTDOWN",
    "PAUSE_TRANSPORT",
    "PAUSE_TURN",
    "PAUSE_WRITER",
    "REFUSED_LINGER_MAX",
    "REFUSED_LINGER_SECONDS",
    "TURN_BYTES",
    "TURN_SECONDS",
    "ReadPause",
    "RefusedLingers",
    "set_keepalive",
]

PAUSE_INFLIGHT = 1  # too many requests in flight on this connection
PAUSE_WRITER = 2  # the server's writer queue is full
PAUSE_TRANSPORT = 4  # our own write buffer is full (the peer is not reading)
PAUSE_SHUTDOWN = 8  # the server is draining
PAUSE_TURN = 16  # this connection had its turn of the loop: others' input goes first

# A chunk of input this large filled the read buffer, so the event loop would read
# the same connection again in the same turn (libuv reads a stream up to 32 times
# while each read fills its 256 KiB buffer); once such a chunk took TURN_SECONDS to
# handle, the connection pauses until the loop's next turn (``yield_turn``).
TURN_BYTES = 64 * 1024
TURN_SECONDS = 0.001

# How long a connection closed by us still reads (and drops) what its peer sends:
# closing with unread input makes the kernel answer with a reset, which can destroy
# replies the peer has not read yet (a refusal, an error before a large body).
LINGER_SECONDS = 2.0

# Refused connections lingering at once (per server: both its ports), and how long
# each may: a client that sends its request at once has sent it by then.
REFUSED_LINGER_MAX = 16
REFUSED_LINGER_SECONDS = 1.0


def set_keepalive(transport: asyncio.BaseTransport, seconds: int) -> None:
    """Probe the peer after `seconds` of silence, as Redis's tcp-keepalive does: every
    seconds/3 after that, dropped after 3 probes unanswered (0: keepalive off)."""
    sock = transport.get_extra_info("socket")
    if sock is None or seconds <= 0:
        return
    with contextlib.suppress(OSError):  # not TCP (a test's socketpair), or no such option
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE, 1)
        if hasattr(socket, "TCP_KEEPIDLE"):  # Linux; macOS has only TCP_KEEPALIVE
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_KEEPIDLE, seconds)
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_KEEPINTVL, max(1, seconds // 3))
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_KEEPCNT, 3)


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
    _closing: bool = False
    # -- the idle sweeper's view (server/_connections.py) --
    active: bool = True  # input arrived since the last sweep (the protocol sets it)
    last_active: float = 0.0  # when the sweeper last saw this connection move
    _buffered: int = 0  # the transport's write buffer at the last sweep
    _pipeline: Any = None  # the protocol's Pipeline (server/_pipeline.py), once admitted
    # -- partial input (server/_held.py keeps them, for the server's PartialInput) --
    _held: int = 0  # bytes held for a request not complete yet
    held_since: float = 0.0  # loop time that request started (0: none)

    def _set_pause(self, bit: int, on: bool) -> None:
        before = self._pause
        self._pause = before | bit if on else before & ~bit
        if self.transport is None or self.transport.is_closing():
            return
        if before and not self._pause:
            self.transport.resume_reading()
        elif not before and self._pause:
            self.transport.pause_reading()

    def yield_turn(self, loop: asyncio.AbstractEventLoop) -> None:
        """Stop reading until the loop's next turn: the other connections' input,
        ready now, is handled before this one's next chunk. Without it one client
        pipelining 1,000,000 GETs had its socket read 32 times in a row per turn
        (8 MB, seconds of work) and another connection's PING waited 12.9 s."""
        if not self._pause & PAUSE_TURN:
            self._set_pause(PAUSE_TURN, True)
            loop.call_soon(self._set_pause, PAUSE_TURN, False)

    def pause_writing(self) -> None:
        self._set_pause(PAUSE_TRANSPORT, True)

    def resume_writing(self) -> None:
        self._set_pause(PAUSE_TRANSPORT, False)

    # ---- the idle sweeper (server/_connections.py) ----

    def moved(self, working: bool) -> bool:
        """Since the last call: input arrived, the peer took output (the transport's
        write buffer changed), or `working` (work of ours in flight) while nothing
        waits in the buffer. Output buffered and untouched is no sign of life."""
        transport = self.transport
        buffered = 0 if transport is None else transport.get_write_buffer_size()
        moved = self.active or buffered != self._buffered or (working and not buffered)
        self.active = False
        self._buffered = buffered
        return moved

    @property
    def held_by_peer(self) -> bool:
        """Only the peer keeps this connection busy: it takes none of its replies (our
        write buffer is over its mark) and none of its writes is in flight."""
        pipeline = self._pipeline
        return bool(self._pause & PAUSE_TRANSPORT) and not (pipeline and pipeline.writing)

    def close_idle(self) -> None:
        """The idle timeout expired: close without a reply; reset if output is still
        buffered (the peer took none of it: a graceful close would wait to flush it)."""
        transport = self.transport
        if transport is None:
            return
        self._closing = True
        if transport.get_write_buffer_size():
            transport.abort()
        else:
            transport.close()

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
