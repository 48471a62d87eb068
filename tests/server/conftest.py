"""Fixtures of the server tests: a shared server per module, and in-process servers.

`shared` is one real `python -m server` child (--sync always) for a whole module: most
tests only need a server that answers, and starting one costs about a second. Tests
that change flags use `server_factory` (tests/conftest.py). Tests that monkeypatch the
engine (disk-failure injection) run the Server in the test's own event loop with
`inproc` and talk to it from a worker thread with the blocking clients of wire.py.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from server import Server, ServerConfig
from tests.serverproc import ServerProcess


@pytest.fixture(scope="module")
def shared(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    data = tmp_path_factory.mktemp("shared") / "data"
    data.mkdir()
    srv = ServerProcess(data=data, extra=["--http-header-timeout", "1", "--http-keepalive", "2"])
    srv.start()
    yield srv
    srv.kill()


@pytest.fixture
async def inproc(tmp_path: Path) -> AsyncIterator[Callable[..., Awaitable[Server]]]:
    started: list[Server] = []

    async def start(**fields: Any) -> Server:
        data = tmp_path / f"inproc{len(started)}"
        cfg = ServerConfig(data=data, port=0, http_port=0, **fields)
        srv = Server(cfg)
        await srv.start()
        started.append(srv)
        return srv

    yield start
    for srv in started:
        await asyncio.wait_for(srv.stop(), 30)
