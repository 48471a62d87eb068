"""The client pointed at a bitcask-server's HTTP port instead of its binary one.

Both ports are printed at start-up and both accept connections, so `connect(host,
http_port)` is an easy slip (7380 for 7379). The HTTP server answers the binary
hello with an HTTP response; the client must say so in one line.
"""

from __future__ import annotations

import pytest

from client import ConnectError, Pool, connect
from tests.serverproc import ServerProcess

pytestmark = pytest.mark.timeout(60)


async def test_connecting_to_the_http_port_says_it_is_one(server: ServerProcess) -> None:
    # Before: "ConnectError: connection to 127.0.0.1:PORT lost during hello", caused by
    # "frame of 1213486160 bytes exceeds the limit of 68157440" (b"HTTP" read as a
    # frame length): nothing pointed at the port.
    with pytest.raises(ConnectError, match=r"answers HTTP.*binary port.*7379") as info:
        await connect(server.host, server.http_port, timeout=5)
    message = str(info.value)
    assert "\n" not in message
    assert message.startswith(f"cannot connect to {server.host}:{server.http_port}: ")
    with pytest.raises(ConnectError, match="answers HTTP"):
        await Pool(server.host, server.http_port, size=2, timeout=5)
    # the binary port, as the message says, works
    async with connect(server.host, server.port) as c:
        assert await c.ping() == "PONG"
