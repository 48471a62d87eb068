"""The clients across a silent partition (tests/netfault/conftest.py): the server in its
own network namespace, its veth set down while calls are in flight, then up again.

Checked: a call in flight fails within its timeout (CallTimeoutError), never hangs;
connecting to the cut-off address (its SYNs dropped) fails within the timeout, saying
so (the Redis-protocol client's message ended in an empty reason: the str() of a
TimeoutError); after
the partition heals, while the server has meanwhile timed the old connections out
(--idle-timeout 0.5), the binary client, a Pool and the Redis-protocol client answer
every caller with its own reply (distinct values per key), and the RESP client's
loss of a connection its caller had given up on is a plain ConnectionLostError:
before, it was blamed on the command ("closed the connection instead of answering
GET (a proxy such as twemproxy ...)") and counted as a refusal, two of which made
the shell refuse GET locally for the rest of the session.

And (4 s): a call without a timeout whose request the
server's kernel took before the host vanished ends through TCP keepalive
(tcp_keepalive=1) instead of waiting for good.
"""

from __future__ import annotations

import asyncio
import signal
import time
from collections.abc import Callable
from typing import Any

import pytest

from client import (
    CallTimeoutError,
    ConnectError,
    ConnectionLostError,
    EndpointClosedError,
    Pool,
    Refusals,
    connect,
    connect_resp,
)
from tests.netfault.conftest import Net, NsServer, metric
from tests.sharding.netlab import Host

KEYS = [b"k%d" % i for i in range(20)]
FAST: dict[str, Any] = {
    "timeout": 0.5,
    "reconnect_attempts": 2,
    "backoff_base": 0.05,
    "backoff_max": 0.1,
}


async def test_calls_across_a_partition_fail_in_time_and_recover(
    net: Net, ns_server: Callable[..., tuple[NsServer, Host]]
) -> None:
    srv, host = ns_server("--idle-timeout", "0.5")
    refusals = Refusals()
    c = await connect(srv.host, srv.port, **FAST)
    pool = await Pool(srv.host, srv.port, size=2, **FAST)
    r = await connect_resp(srv.host, srv.port, timeout=0.5, refusals=refusals)
    try:
        await c.mput([(k, b"v:" + k) for k in KEYS])
        assert await r.get(KEYS[0]) == b"v:" + KEYS[0]
        net.cut(host)
        started = time.monotonic()
        results = await asyncio.wait_for(
            asyncio.gather(
                *(c.get(k) for k in KEYS),
                *(pool.get(k) for k in KEYS),
                r.get(KEYS[0]),
                r.get(KEYS[1]),
                return_exceptions=True,
            ),
            5.0,
        )
        assert {type(x) for x in results} == {CallTimeoutError}, results
        # connecting to the cut-off address (SYNs dropped): in time, saying why
        for connecting in (connect, connect_resp):
            with pytest.raises(
                ConnectError, match=r"cannot connect to .*: no answer within 0.5 s$"
            ):
                await asyncio.wait_for(connecting(srv.host, srv.port, timeout=0.5), 5.0)
        # the server times the cut-off connections out meanwhile (the clients cannot
        # tell: their FIN or reset is lost in the partition)
        await asyncio.sleep(max(0.0, started + 1.1 - time.monotonic()))
        net.heal(host)
        # every caller gets its own key's value, on the same or a new connection
        for client in (c, pool):
            got = await asyncio.gather(*(client.get(k) for k in KEYS), return_exceptions=True)
            reset = [i for i, x in enumerate(got) if isinstance(x, ConnectionLostError)]
            for i in reset:  # the server's reset of the old connection, met by a call
                got[i] = await client.get(KEYS[i])
            assert got == [b"v:" + k for k in KEYS]
        with pytest.raises(ConnectionLostError) as lost_info:
            await r.get(KEYS[2])
        lost = lost_info.value
        assert not isinstance(lost, EndpointClosedError), lost
        assert "instead of answering" not in str(lost), lost
        # no strike against GET: one more close on it must not make it refused
        refusals.closed_on(("GET", 2))
        assert not refusals.refuses(("GET", 2))
        r2 = await connect_resp(srv.host, srv.port, timeout=0.5, refusals=refusals)
        try:
            assert await r2.get(KEYS[3]) == b"v:" + KEYS[3]
        finally:
            await r2.close()
        n = await asyncio.to_thread(metric, srv, host, "bitcask_connections")
        assert n <= 4  # c, the pool's two, the probe: the old ones are gone
    finally:
        await c.close(timeout=0.1)
        await pool.close(timeout=0.1)
        await r.close(timeout=0.1)


async def test_keepalive_ends_a_call_without_timeout_whose_server_vanished(
    net: Net, ns_server: Callable[..., tuple[NsServer, Host]]
) -> None:
    """timeout=None: the request is delivered (acknowledged by the server's kernel: the
    process is stopped), then the host vanishes. Without keepalive nothing is ever
    sent again on that connection, so nothing fails: the call waited for good."""
    srv, host = ns_server("--idle-timeout", "0")
    assert srv.proc is not None
    async with connect(srv.host, srv.port, timeout=None, tcp_keepalive=1) as c:
        await c.put(b"k", b"v")
        srv.proc.send_signal(signal.SIGSTOP)
        try:
            call = asyncio.ensure_future(c.put(b"k", b"w"))  # not idempotent: not re-sent
            await asyncio.sleep(0.2)
            net.cut(host)
            with pytest.raises(ConnectionLostError, match="timed out"):
                await asyncio.wait_for(call, 10.0)
        finally:
            srv.proc.send_signal(signal.SIGCONT)
