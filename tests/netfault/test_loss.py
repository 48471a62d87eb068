"""Loss between the clients and a server in its own network namespace (tests/netfault/
conftest.py: `Net.lossy`, random drops both ways, since netem is often missing).

TCP hides loss from the application except as delay, so the checks are the ones a
delay could break: a deep pipeline of binary calls and a raw Redis pipeline get every
reply, in order, each to its own caller; and under --sync always a write is
acknowledged only once durable: the server SIGKILLed while a pipeline of puts is in
flight, every acknowledged put is there after the restart.
"""

from __future__ import annotations

import asyncio
import signal
import socket
from collections.abc import Callable

from client import connect
from tests.netfault.conftest import Net, NsServer
from tests.sharding.netlab import Host

N = 3000


def _value(i: int) -> bytes:
    return b"v%d:" % i * 40


async def test_pipelines_and_acknowledged_writes_survive_loss(
    net: Net, ns_server: Callable[..., tuple[NsServer, Host]]
) -> None:
    srv, host = ns_server()
    net.lossy(host, 10)
    async with connect(srv.host, srv.port, timeout=20.0) as c:
        await asyncio.gather(*(c.put(b"k%d" % i, _value(i)) for i in range(N)))
        got = await asyncio.gather(*(c.get(b"k%d" % i) for i in range(N)))
        assert got == [_value(i) for i in range(N)]
    with socket.create_connection((srv.host, srv.port), timeout=20.0) as s:
        s.sendall(b"".join(b"*2\r\n$3\r\nGET\r\n$%d\r\nk%d\r\n" % (len(b"%d" % i) + 1, i)
                           for i in range(N)))  # fmt: skip
        want = b"".join(b"$%d\r\n%s\r\n" % (len(_value(i)), _value(i)) for i in range(N))
        buf = b""
        while len(buf) < len(want):
            data = s.recv(1 << 16)
            assert data, buf[-200:]
            buf += data
        assert buf == want
    assert net.dropped(host) > 0
    acked: list[int] = []
    async with connect(srv.host, srv.port, timeout=20.0, reconnect_attempts=1) as c:

        async def put(i: int) -> None:
            await c.put(b"w%d" % i, _value(i))
            acked.append(i)

        tasks = [asyncio.ensure_future(put(i)) for i in range(N)]
        while len(acked) < N // 10:
            await asyncio.sleep(0.005)
        assert srv.proc is not None
        srv.proc.send_signal(signal.SIGKILL)
        await asyncio.gather(*tasks, return_exceptions=True)
    assert len(acked) < N  # the kill came mid-pipeline
    srv.proc.wait(20)
    srv.start()
    async with connect(srv.host, srv.port, timeout=20.0) as c:
        got = await c.mget([b"w%d" % i for i in acked])
    assert got == [_value(i) for i in acked]
