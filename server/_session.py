"""Per-connection state the dispatcher keeps: authentication, watches, snapshots.

Strategy / invariants:
- A ``Session`` is made by ``Dispatcher.new_session`` for each connection and ended
  by ``Dispatcher.end_session``, which releases every watch and snapshot it holds,
  so nothing a connection took outlives it.
- A watch id names a ``WatchRef`` at once (a pipelined commit may name it before the
  engine watch exists); the engine ``Watch`` is taken later by a Read, in order with
  the connection's reads. A ref released before its watch was taken releases the
  watch as soon as it is taken.
"""

from __future__ import annotations

from typing import Any

__all__ = ["Session", "WatchRef", "release_all"]


class Session:
    """Per-connection state the dispatcher needs: is this connection authenticated,
    its watches (by id) and snapshots, released by Dispatcher.end_session when it closes."""

    __slots__ = ("authenticated", "client", "closed", "last_watch", "spent", "watches")

    def __init__(self, authenticated: bool) -> None:
        self.authenticated = authenticated
        self.client: str | None = None
        self.watches: dict[int, WatchRef] = {}
        self.last_watch = 0
        self.spent: dict[int, WatchRef] = {}  # id(ref) -> watch of a commit in flight
        self.closed = False  # the connection is gone (its snapshots are released)


class WatchRef:
    """A watch id's engine Watch: None until the watch's Read ran on the loop."""

    __slots__ = ("released", "watch")

    def __init__(self) -> None:
        self.watch: Any = None
        self.released = False

    def take(self, watch: Any) -> None:
        self.watch = watch
        if self.released:  # unwatched or closed before the watch was taken
            watch.release()

    def get(self) -> Any:
        if self.watch is None:  # its Read failed: never apply as if unwatched
            raise ValueError("the watch was not taken")
        return self.watch

    def release(self) -> None:
        self.released = True
        if self.watch is not None:
            self.watch.release()


def release_all(refs: list[WatchRef]) -> bool:
    """Release every watch of ``refs`` (also run as a Read, in order with the connection's
    reads, so after a pending watch's Read)."""
    for ref in refs:
        ref.release()
    return True
