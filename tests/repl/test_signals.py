"""repl/_signals.py in one process: what `stoppable()` does with a real signal.

The end-to-end behaviour (real commands stopped by real signals) is in
test_offline_interrupt.py, test_transfer_stops.py, test_backup_cli.py and
tests/sharding/test_reshard.py; these pin the rules they rely on.
"""

from __future__ import annotations

import asyncio
import os
import signal
from collections.abc import Iterator

import pytest

from repl._signals import Interrupted, stoppable


@pytest.fixture(autouse=True)
def _handlers() -> Iterator[None]:
    saved = {s: signal.getsignal(s) for s in (signal.SIGINT, signal.SIGTERM)}
    yield
    for s, handler in saved.items():
        signal.signal(s, handler)


def _run(body: str) -> tuple[BaseException | None, list[str]]:
    seen: list[str] = []

    async def command() -> None:
        with stoppable():
            try:
                os.kill(os.getpid(), signal.SIGTERM)
                if body == "twice":
                    os.kill(os.getpid(), signal.SIGINT)  # ignored: one stop only
                await asyncio.sleep(30)
            except asyncio.CancelledError:
                seen.append("cleanup")
                await asyncio.sleep(0.05)  # a cleanup that awaits is not cut short
                seen.append("cleaned")
                if body != "caught":
                    raise

    try:
        asyncio.run(command())
    except Interrupted as exc:
        return exc, seen
    return None, seen


@pytest.mark.parametrize("body", ["raises", "caught", "twice"])
def test_a_signal_cancels_once_the_cleanup_runs_and_the_exit_code_is_128_plus_it(
    body: str,
) -> None:
    exc, seen = _run(body)
    assert isinstance(exc, Interrupted)
    assert exc.exit_code == 128 + signal.SIGTERM
    assert seen == ["cleanup", "cleaned"]
    # stopped: later signals change nothing while the process closes and exits
    assert signal.getsignal(signal.SIGTERM) == signal.SIG_IGN
    assert signal.getsignal(signal.SIGINT) == signal.SIG_IGN


def test_without_a_signal_the_handlers_are_given_back() -> None:
    before = signal.getsignal(signal.SIGINT), signal.getsignal(signal.SIGTERM)

    async def command() -> int:
        with stoppable():
            await asyncio.sleep(0)
        return 7

    assert asyncio.run(command()) == 7
    assert (signal.getsignal(signal.SIGINT), signal.getsignal(signal.SIGTERM)) == before
