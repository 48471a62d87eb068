"""Fixtures shared by every test package."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from tests.serverproc import ServerProcess


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
