"""What every kind of client answers about its own life, against real servers.

An application (or a framework's shutdown hook) that holds "the client" checks
`closed` and calls `close()` without asking which kind it holds: a `Client`, a
`Pool`, a `ShardedClient` or a `RespClient`.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from client import InterfaceError, Pool, connect, connect_resp, connect_sharded
from tests.serverproc import ServerProcess

pytestmark = pytest.mark.timeout(60)


def _open(kind: str, server: ServerProcess) -> Any:
    host, port = server.host, server.port
    if kind == "client":
        return connect(host, port)
    if kind == "pool":
        return Pool(host, port, size=2)
    if kind == "sharded":
        return connect_sharded({"a": f"{host}:{port}"})
    return connect_resp(host, port)


@pytest.mark.parametrize("kind", ["client", "pool", "sharded", "resp"])
async def test_every_client_says_whether_it_is_closed(
    server_factory: Callable[..., ServerProcess], kind: str
) -> None:
    # Before: Pool and ShardedClient had no `closed` (AttributeError), where Client and
    # RespClient have one.
    server = server_factory(sync="never")
    async with _open(kind, server) as db:
        assert db.closed is False
        await db.put(b"k", b"v")
    assert db.closed is True
    with pytest.raises(InterfaceError):
        await db.get(b"k")
    async with connect(server.host, server.port) as check:
        assert await check.get(b"k") == b"v"
