"""A redis-server's port given for a bitcask-server's: refused at once, in one line.

A redis-server never answers the binary hello, so `connect`, a `Client` and
`connect_sharded` used to wait out their whole timeout and then report a timeout.
Real servers only: a redis-server (tests/protocol/_redis_server.py: skipped naming
the Debian package when missing, never under CI=true) and a bitcask-server. Every
attempt here is given a 30 s timeout and bounded by BOUND (10 s): a client that
waited its timeout fails the test. No timing is asserted beyond that.
"""

from __future__ import annotations

import asyncio
import socket
import subprocess
from pathlib import Path

import pytest

from client import (
    Client,
    ClientConfig,
    ConnectError,
    Pool,
    RedisPortError,
    RespAnswer,
    answers_resp_after,
    connect,
    connect_sharded,
    resp_answer,
)
from tests.protocol._redis_server import redis_server, require_binary
from tests.serverproc import ServerProcess, free_port

pytestmark = pytest.mark.timeout(120)

TIMEOUT = 30.0  # the clients' own timeout: never waited out in these tests
BOUND = 10.0  # what each refusal may take at most here


def _redis_message(port: int) -> str:
    return (
        f"cannot connect to 127.0.0.1:{port}: it is a Redis server (it answers the Redis "
        "protocol, not bitcask's binary one): connect to the bitcask-server's port "
        "(default 7379), or use connect_resp() to talk to Redis"
    )


def _redis_keys(port: int, *auth: str) -> dict[str, str]:
    """Every key of the redis-server and its value (redis-cli, a real client)."""
    cli = require_binary("redis-cli", "redis-tools")
    run = [cli, "-p", str(port), *auth, "--no-auth-warning"]
    keys = subprocess.run([*run, "--scan"], capture_output=True, check=True, timeout=BOUND)
    out: dict[str, str] = {}
    for key in keys.stdout.decode().split():
        got = subprocess.run([*run, "get", key], capture_output=True, check=True, timeout=BOUND)
        out[key] = got.stdout.decode().strip()
    return out


def _redis_set(port: int, key: str, value: str) -> None:
    cli = require_binary("redis-cli", "redis-tools")
    subprocess.run([cli, "-p", str(port), "set", key, value], check=True, capture_output=True,
                   timeout=BOUND)  # fmt: skip


async def _bitcask_state(server: ServerProcess) -> dict[bytes, bytes | None]:
    """The bitcask-server's keys and values."""
    async with connect(server.host, server.port, timeout=TIMEOUT) as c:
        keys = [k async for k in c.scan()]
        return dict(zip(keys, await c.mget(keys), strict=True)) if keys else {}


def test_connect_client_and_pool_at_a_redis_port_refuse_at_once(tmp_path: Path) -> None:
    with redis_server(tmp_path) as port:
        _redis_set(port, "k", "redis-value")

        async def main() -> tuple[RedisPortError, RedisPortError]:
            with pytest.raises(RedisPortError) as by_connect:
                await asyncio.wait_for(connect("127.0.0.1", port, timeout=TIMEOUT), BOUND)
            # a Client made directly connects on its first call: refused, not retried
            # (reconnect_attempts=5 would otherwise try again with backoff)
            client = Client(ClientConfig(port=port, timeout=TIMEOUT, reconnect_attempts=5))
            with pytest.raises(RedisPortError) as by_call:
                await asyncio.wait_for(client.put(b"k", b"bitcask-value"), BOUND)
            assert not client.is_connected and client.in_flight == 0
            with pytest.raises(RedisPortError):  # the next call is refused the same way
                await asyncio.wait_for(client.get(b"k"), BOUND)
            await client.close()
            pool = Pool("127.0.0.1", port, size=2, timeout=TIMEOUT)  # its clients alike
            with pytest.raises(RedisPortError):
                await asyncio.wait_for(pool.start(), BOUND)
            assert pool.clients == []
            await pool.close()
            return by_connect.value, by_call.value

        first, second = asyncio.run(main())
        for err in (first, second):
            assert str(err) == _redis_message(port)
            assert isinstance(err, ConnectError)  # what callers already catch
            assert (err.address, err.redis_server) == (f"127.0.0.1:{port}", True)
        # the refused put reached nothing: the redis-server holds what it held
        assert _redis_keys(port) == {"k": "redis-value"}


def test_sharded_client_names_the_redis_shard_and_fails(
    server: ServerProcess, tmp_path: Path
) -> None:
    before = asyncio.run(_bitcask_state(server))
    with redis_server(tmp_path) as port:
        shards = {"good": f"127.0.0.1:{server.port}", "wrong": f"127.0.0.1:{port}"}

        async def main() -> RedisPortError:
            with pytest.raises(RedisPortError) as caught:
                await asyncio.wait_for(connect_sharded(shards, timeout=TIMEOUT), BOUND)
            return caught.value

        err = asyncio.run(main())
        assert str(err) == f"shard 'wrong': {_redis_message(port)}"
        assert (err.address, err.redis_server) == (f"127.0.0.1:{port}", True)
        assert _redis_keys(port) == {}
    after = asyncio.run(_bitcask_state(server))
    assert after == before == {}


def test_a_redis_with_a_password_is_named_after_the_timeout(tmp_path: Path) -> None:
    """NOAUTH could be a bitcask-server's RESP dialect too (one with a token, whose
    hello is merely slow): not refused early, but the timeout says what answered."""
    with redis_server(tmp_path, "--requirepass", "sekrit") as port:

        async def main() -> RedisPortError:
            with pytest.raises(RedisPortError) as caught:
                await asyncio.wait_for(connect("127.0.0.1", port, timeout=1.0), BOUND)
            return caught.value

        err = asyncio.run(main())
        assert str(err) == (
            f"cannot connect to 127.0.0.1:{port}: no answer within 1 s; it answers the "
            "Redis protocol, not bitcask's binary one (a Redis server with a password, "
            "or a proxy): check the port, or use connect_resp()"
        )
        assert err.redis_server is False
        assert str(err.__cause__) == f"cannot connect to 127.0.0.1:{port}: no answer within 1 s"
        assert _redis_keys(port, "-a", "sekrit") == {}


def test_a_bitcask_server_is_not_taken_for_redis(server: ServerProcess, tmp_path: Path) -> None:
    """The probe against a bitcask-server's own RESP dialect: its INFO names
    bitcask_version, so a slow hello is waited for, never refused."""

    async def probe(port: int) -> RespAnswer | None:
        return await resp_answer("127.0.0.1", port, BOUND)

    assert asyncio.run(probe(server.port)) is RespAnswer.BITCASK
    assert asyncio.run(probe(free_port())) is None
    with redis_server(tmp_path) as port:
        assert asyncio.run(probe(port)) is RespAnswer.REDIS

    async def three_connects() -> None:
        for n in range(3):
            async with connect(server.host, server.port, timeout=TIMEOUT) as c:
                await c.put(f"k{n}", b"v")

    asyncio.run(three_connects())
    assert asyncio.run(_bitcask_state(server)) == {b"k0": b"v", b"k1": b"v", b"k2": b"v"}


def test_a_silent_peer_is_still_a_plain_timeout() -> None:
    """A peer that accepts and never answers anything (a wedged process): the probe
    learns nothing, so the hello's timeout is reported as before, not as Redis."""
    with socket.create_server(("127.0.0.1", 0)) as listener:
        port = listener.getsockname()[1]

        async def main() -> tuple[ConnectError, bool]:
            with pytest.raises(ConnectError) as caught:
                await asyncio.wait_for(connect("127.0.0.1", port, timeout=1.0), BOUND)
            # The callers' question after a failed connect (the CLI, reshard): a
            # timeout is never asked again (a silent peer cost `bitcask ping` a
            # second whole timeout: 6.3 s for --timeout 3). A second connection to
            # the listener here would fail the assertion on its backlog below.
            asked = await answers_resp_after(caught.value, "127.0.0.1", port, BOUND)
            return caught.value, asked

        err, asked = asyncio.run(main())
        listener.setblocking(False)
        extra = []
        for _ in range(4):  # the client's hello and its probe, no more
            try:
                extra.append(listener.accept()[0])
            except BlockingIOError:
                break
        for conn in extra:
            conn.close()
    assert type(err) is ConnectError
    assert str(err) == f"cannot connect to 127.0.0.1:{port}: no answer within 1 s"
    assert asked is False
    assert len(extra) <= 2, len(extra)
