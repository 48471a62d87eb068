"""Fixtures shared by every test package."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from tests.serverproc import ServerProcess

# The files whose single tests (or xdist group) run longest, collected first: make
# pytest's xdist workers take tests in collection order, and a long one left for
# the end kept one worker busy alone (tests/test_packaging.py's group, ~30 s, came
# last: pytest took ~30 s longer than the suite's test time over two workers).
LONG_FIRST = (
    "tests/test_packaging.py",
    "tests/test_docs.py",
    "tests/bitcask/test_stateful.py",
    "tests/sharding/test_shard3_faults.py",
    "tests/test_examples.py",
)


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Move LONG_FIRST's tests to the front (the same order on every worker)."""

    def rank(item: pytest.Item) -> int:
        path = item.nodeid.split("::", 1)[0]
        return LONG_FIRST.index(path) if path in LONG_FIRST else len(LONG_FIRST)

    items.sort(key=rank)  # stable: the rest keep their order


@pytest.fixture
def server_factory(tmp_path: Path) -> Iterator[Callable[..., ServerProcess]]:
    """Start real servers: `server_factory(sync="never", extra=["--auth", "t"])`.

    Each gets its own data directory under tmp_path and free loopback ports; all are
    killed when the test ends.
    """
    started: list[ServerProcess] = []

    def start(**kwargs: object) -> ServerProcess:
        data = tmp_path / f"data{len(started)}"
        data.mkdir()
        srv = ServerProcess(data=data, **kwargs)  # type: ignore[arg-type]
        started.append(srv)
        return srv.start()

    yield start
    for srv in started:
        srv.kill()


@pytest.fixture
def server(server_factory: Callable[..., ServerProcess]) -> ServerProcess:
    """One running server (`--sync always`) for the test."""
    return server_factory()
