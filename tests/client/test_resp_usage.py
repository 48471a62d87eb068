"""`connect_resp()` used the way `connect()` is, against a real bitcask-server's
Redis dialect (the same port as its binary protocol).

An application moving between the two clients writes the same code for both:
`async with connect_resp(...) as c`, `timeout=None` for no timeout, a bad
timeout refused locally.
"""

from __future__ import annotations

import asyncio
import math
from typing import Any

import pytest

from client import InterfaceError, RespClient, connect, connect_resp
from tests.serverproc import ServerProcess

pytestmark = pytest.mark.timeout(60)


async def test_connect_resp_is_a_context_manager_as_connect_is(server: ServerProcess) -> None:
    # Before: connect_resp was a coroutine function, so `async with connect_resp(...)`
    # raised "TypeError: 'coroutine' object does not support the asynchronous context
    # manager protocol" (and warned that the coroutine was never awaited).
    async with connect_resp(server.host, server.port) as c:
        assert isinstance(c, RespClient)
        await c.put(b"k", b"v")
        assert await c.get(b"k") == b"v"
    assert c.closed
    # awaiting it, as before, still gives a connected client
    c = await connect_resp(server.host, server.port)
    async with c:
        assert await c.get(b"k") == b"v"
    assert c.closed
    # and through asyncio.wait_for, as the shell opens it
    c = await asyncio.wait_for(connect_resp(server.host, server.port), 10)
    assert await c.ping() == "PONG"
    await c.close()


async def test_a_resp_client_without_a_timeout_waits_for_its_replies(
    server: ServerProcess,
) -> None:
    # Before: every call of connect_resp(timeout=None) raised "TypeError: delay must
    # not be None" after its command was written: the incr below was applied while
    # its caller got a TypeError.
    async with connect_resp(server.host, server.port, timeout=None) as c:
        assert await c.incr(b"n") == 1
        assert await c.get(b"n") == b"1"
        assert await asyncio.gather(*(c.incr(b"n") for _ in range(10))) == list(range(2, 12))
        assert await c.get(b"n", timeout=5) == b"11"
    async with connect(server.host, server.port) as check:
        assert await check.get(b"n") == b"11"


@pytest.mark.parametrize("timeout", [0, -1, math.nan, "5"], ids=["zero", "negative", "nan", "str"])
async def test_a_bad_resp_client_timeout_is_refused_before_connecting(
    server: ServerProcess, timeout: Any
) -> None:
    # Before: 0 or a negative number gave "ConnectError: cannot connect to ...: no
    # answer within 0 s" for a server that was up; a str a TypeError.
    with pytest.raises(InterfaceError, match="timeout must be"):
        await connect_resp(server.host, server.port, timeout=timeout)
    with pytest.raises(InterfaceError, match="timeout must be"):
        async with connect_resp(server.host, server.port, timeout=timeout):
            pass
