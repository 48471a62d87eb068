"""PartialInput (server/_held.py): the server-wide count of bytes in unfinished requests."""

from __future__ import annotations

from protocol.refusals import PARTIAL_INPUT_LINE
from server._flow import PAUSE_TRANSPORT, PAUSE_WRITER
from server._held import PartialInput
from server._metrics import Metrics
from server.config import DEFAULT_MAX_FRAME, FRAME_CEILING, ServerConfig


class Holder:
    """What PartialInput reads and sets on a connection."""

    def __init__(self) -> None:
        self._held = 0
        self.held_since = 0.0
        self._pause = 0
        self.refused: list[bytes] = []

    def refuse_input(self, line: bytes) -> None:
        self.refused.append(line)


def test_the_largest_holder_goes_and_the_rest_stay_counted() -> None:
    metrics = Metrics()
    held = PartialInput(1000, metrics)
    a, b, c = Holder(), Holder(), Holder()
    held.update(a, 400, 1.0)
    held.update(b, 500, 2.0)
    assert (held.total, metrics.partial_input_bytes, a.held_since, b.held_since) == (
        900,
        900,
        1.0,
        2.0,
    )
    held.update(a, 450, 3.0)  # growing keeps the start time
    assert a.held_since == 1.0
    held.update(c, 200, 4.0)  # 1150 > 1000: b (500) goes
    assert (a.refused, b.refused, c.refused) == ([], [PARTIAL_INPUT_LINE], [])
    assert (held.total, b._held, b.held_since) == (650, 0, 0.0)
    assert metrics.partial_input_refused == 1
    held.release(a)
    held.release(a)  # twice is harmless
    held.update(c, 0, 5.0)
    assert (held.total, metrics.partial_input_bytes, c.held_since) == (0, 0, 0.0)


def test_the_asking_connection_is_refused_when_it_is_the_largest() -> None:
    held = PartialInput(100, Metrics())
    small, big = Holder(), Holder()
    held.update(small, 10, 0.0)
    held.update(big, 95, 0.0)
    assert big.refused == [PARTIAL_INPUT_LINE] and small.refused == []
    assert held.total == 10


def test_the_deadline_does_not_run_while_the_server_does_not_read() -> None:
    held = PartialInput(1000, Metrics())
    slow, paused, unread = Holder(), Holder(), Holder()
    for conn in (slow, paused, unread):
        held.update(conn, 10, 0.0)
    paused._pause = PAUSE_WRITER  # ours: its window starts again
    unread._pause = PAUSE_TRANSPORT  # the peer's: it counts
    assert set(held.expired(5.0, 3.0)) == {slow, unread}
    assert paused.held_since == 5.0
    paused._pause = 0
    assert paused not in held.expired(7.0, 3.0)
    assert paused in held.expired(8.5, 3.0)


def test_the_budget_always_holds_the_largest_request() -> None:
    # A tiny --max-partial-input (or a --max-frame raised past the default budget)
    # must not make the largest request the server accepts impossible to send.
    assert ServerConfig(max_partial_input=1).partial_input_budget == DEFAULT_MAX_FRAME + 4
    big = ServerConfig(max_frame=FRAME_CEILING - 1, max_value_size=1024)
    assert big.partial_input_budget == big.max_frame + 4
    assert ServerConfig().partial_input_budget == 512 * 1024 * 1024
