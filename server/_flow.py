"""Why a connection stopped reading: several independent reasons, one switch.

Strategy: reading is paused while any reason holds and resumed only when the last
one clears. Each reason is one bit, so clearing one never resumes a connection
that another still holds (the rule of uvicorn's flow_control.py, for four
reasons instead of two). Both the binary and the HTTP protocol use it.
"""

from __future__ import annotations

import asyncio

__all__ = [
    "PAUSE_INFLIGHT",
    "PAUSE_SHUTDOWN",
    "PAUSE_TRANSPORT",
    "PAUSE_WRITER",
    "ReadPause",
]

PAUSE_INFLIGHT = 1  # too many requests in flight on this connection
PAUSE_WRITER = 2  # the server's writer queue is full
PAUSE_TRANSPORT = 4  # our own write buffer is full (the peer is not reading)
PAUSE_SHUTDOWN = 8  # the server is draining


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
