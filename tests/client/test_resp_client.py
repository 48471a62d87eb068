"""The RESP client (client/_resp.py) against a real bitcask-server's Redis dialect."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from client import InterfaceError
from client._resp import connect_resp
from tests.serverproc import ServerProcess

pytestmark = pytest.mark.timeout(60)


@pytest.mark.parametrize("bad", ["text", 5, None], ids=["str", "int", "none"])
async def test_a_command_that_cannot_be_encoded_never_shifts_the_replies(
    server: ServerProcess, bad: Any
) -> None:
    # RESP matches replies to calls by their order. A command that failed to encode
    # used to leave its future queued with nothing sent, so the next reply met it and
    # every later call got the reply of the call after it (get(a) answered b's value).
    async with await connect_resp(server.host, server.port, timeout=5.0) as c:
        await c.mput({b"a": b"1", b"b": b"2", b"c": b"3"})
        with pytest.raises(InterfaceError):
            await c.execute_command(b"GET", bad)
        assert await asyncio.gather(c.get(b"a"), c.get(b"b"), c.get(b"c")) == [b"1", b"2", b"3"]
        assert await c.get(b"b") == b"2"
