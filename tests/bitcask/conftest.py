"""Fixtures shared by the engine's tests: a settable clock and a store that uses it."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

import bitcask


class Clock:
    """The store's clock, moved by hand (`clock.now += 5`): expiry without sleeping."""

    def __init__(self) -> None:
        self.now = 1_700_000_000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def db(tmp_path: Path, clock: Clock) -> Iterator[bitcask.Bitcask]:
    """A store (sync="never") on `clock`; a module may define its own `db` instead."""
    with bitcask.open(tmp_path, sync="never", clock=clock) as store:
        yield store
