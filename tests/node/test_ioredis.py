"""ioredis from npm against a real bitcask-server: GET/SET, INCR, a pipeline,
MULTI/EXEC and a SCAN stream (tests/node/ioredis_tour.mjs, also run by docs/redis.md).

Needs node and npm (Debian packages nodejs, npm): skipped without them, a failure
under CI=true. npm ci installs the locked ioredis once into .cache/node/.
"""

from __future__ import annotations

from collections.abc import Callable

import pytest

from tests.node import ioredis_tour
from tests.serverproc import ServerProcess

EXPECTED = [
    "set: OK",
    "get: hello from node",
    "incr: 1",
    'pipeline: [[null,"OK"],[null,42],[null,"42"]]',
    'multi: [[null,2],[null,"2"]]',
    "scan: 25 keys",
    "del: 28",
]


@pytest.mark.usefixtures("node_tools")
@pytest.mark.parametrize("sync", ["never", "always"])
def test_ioredis_tour(server_factory: Callable[..., ServerProcess], sync: str) -> None:
    srv = server_factory(sync=sync)
    done = ioredis_tour.run(srv.port, srv.host)
    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines() == EXPECTED
    assert done.stderr == ""


@pytest.mark.usefixtures("node_tools")
def test_ioredis_with_a_password(server_factory: Callable[..., ServerProcess]) -> None:
    """Without the password ioredis gets NOAUTH, and the tour fails, not hangs."""
    srv = server_factory(sync="never", extra=["--auth", "s3cret"])
    done = ioredis_tour.run(srv.port, srv.host)
    assert done.returncode != 0
    assert "NOAUTH" in done.stderr
