"""ShardedClient.ping()/stats() with one shard of three down: every shard's outcome.

Three real bitcask-servers on loopback ports; one is killed (SIGKILL). A health check
must learn that the other two answer, and what the down one said: by the per-shard
map (return_exceptions=True) or by the note on the raised error.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from typing import Any

import pytest

from client import ConnectionLostError, ShardedClient, connect_sharded
from tests.serverproc import ServerProcess

NAMES = ("shard-a", "shard-b", "shard-c")
FAST: dict[str, Any] = {
    "timeout": 5.0,
    "reconnect_attempts": 2,
    "backoff_base": 0.05,
    "backoff_max": 0.1,
}


@pytest.fixture
def shards(server_factory: Callable[..., ServerProcess]) -> dict[str, ServerProcess]:
    return {name: server_factory() for name in NAMES}


@pytest.fixture
async def sc(shards: dict[str, ServerProcess]) -> AsyncIterator[ShardedClient]:
    client = await connect_sharded({n: f"127.0.0.1:{s.port}" for n, s in shards.items()}, **FAST)
    yield client
    await client.close()


async def test_one_shard_down_every_shard_is_reported(
    sc: ShardedClient, shards: dict[str, ServerProcess]
) -> None:
    keys = [b"%d:k" % i for i in range(60)]
    await sc.mput({k: b"v" + k for k in keys})
    held = {n: sum(1 for k in keys if sc.shard_for(k) == n) for n in NAMES}
    assert all(held.values())  # each shard holds some
    assert await sc.ping(return_exceptions=True) == dict.fromkeys(NAMES, "PONG")

    shards["shard-b"].kill()

    pings = await sc.ping(return_exceptions=True)
    assert list(pings) == list(NAMES)
    assert (pings["shard-a"], pings["shard-c"]) == ("PONG", "PONG")
    assert isinstance(pings["shard-b"], ConnectionLostError)

    stats = await sc.stats(return_exceptions=True)
    assert isinstance(stats["shard-b"], ConnectionLostError)
    assert {n: stats[n]["keys"] for n in ("shard-a", "shard-c")} == {
        n: held[n] for n in ("shard-a", "shard-c")
    }

    # the default still raises (the first failing shard's error), now saying what
    # every shard did
    for call in (sc.ping, sc.stats):
        with pytest.raises(ConnectionLostError) as info:
            await call()
        note = "".join(info.value.__notes__)
        assert f"{call.__name__} failed on 1 of 3 shards (shard-b: " in note
        assert "answered: ['shard-a', 'shard-c']" in note

    # the live shards' keys are all still served, the down one's fail alone
    for k in keys:
        if sc.shard_for(k) == "shard-b":
            with pytest.raises(ConnectionLostError):
                await sc.get(k)
        else:
            assert await sc.get(k) == b"v" + k

    shards["shard-b"].start()  # same port and data: every shard answers again
    assert await sc.ping() == dict.fromkeys(NAMES, "PONG")
    assert sum(s["keys"] for s in (await sc.stats()).values()) == len(keys)


async def test_every_shard_down_is_every_shard_an_error(
    sc: ShardedClient, shards: dict[str, ServerProcess]
) -> None:
    for srv in shards.values():
        srv.kill()
    pings = await sc.ping(return_exceptions=True)
    assert list(pings) == list(NAMES)
    assert all(isinstance(p, ConnectionLostError) for p in pings.values())
    with pytest.raises(ConnectionLostError) as info:
        await sc.ping()
    assert "ping failed on 3 of 3 shards" in "".join(info.value.__notes__)
    assert "answered: []" in "".join(info.value.__notes__)
