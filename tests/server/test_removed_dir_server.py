"""The data directory removed under a running server: writes answer READ_ONLY.

Before, after ``rm -rf DATA`` a server went on answering OK to every put (into
unlinked files that vanished at its stop); only /readyz noticed (503). Now the
engine sees it (at the next sync, or within a second when idle) and refuses
writes; this test asserts what two clients get after the removal (the writer's
puts until the refusal, then READ_ONLY for every write of either client, their
reads still answered), /readyz and /livez, and the ERROR line in the log.
"""

from __future__ import annotations

import shutil
import time
from collections.abc import Callable

import pytest

from tests.server.test_container_probes import get
from tests.server.wire import Conn, RemoteError
from tests.serverproc import ServerProcess

ATTEMPTS = 500  # puts 10 ms apart until one is refused (the engine checks every 1 s)
KEYS = {b"k%02d" % i: b"value %d" % i for i in range(20)}


@pytest.mark.parametrize("sync", ["always", "never"])
def test_writes_answer_read_only_once_the_data_directory_is_gone(
    server_factory: Callable[..., ServerProcess], sync: str
) -> None:
    srv = server_factory(sync=sync)
    with Conn(srv.port) as a, Conn(srv.port) as b:
        for k, v in KEYS.items():
            assert (a if k[-1] % 2 else b).call("put", k, v) is True
        assert get(srv.http_port, "/readyz")[0] == 200
        shutil.rmtree(srv.data)
        acked: dict[bytes, bytes] = {}
        refused: RemoteError | None = None
        for i in range(ATTEMPTS):
            k, v = b"after%03d" % i, b"late %d" % i
            try:
                assert a.call("put", k, v) is True
            except RemoteError as exc:
                refused = exc
                break
            acked[k] = v
            time.sleep(0.01)
        assert refused is not None, f"{ATTEMPTS} puts acknowledged: {srv.log()}"
        assert refused.name == "READ_ONLY", refused
        assert "removed or replaced" in refused.message, refused
        if sync == "always":
            assert not acked, "the fsync of the first put after the removal sees it"
        # every write of every client is refused from now on; reads are answered
        for c in (a, b):
            assert c.error("put", b"k00", b"new").name == "READ_ONLY"
            assert c.error("delete", b"k01").name == "READ_ONLY"
            assert c.error("batch", [["put", b"x", b"1"]]).name == "READ_ONLY"
            assert {k: c.call("get", k) for k in KEYS} == KEYS
            assert {k: c.call("get", k) for k in acked} == acked
            assert c.call("get", b"x") is None
    status, body = get(srv.http_port, "/readyz")
    assert status == 503 and b"removed or replaced" in body, body
    assert get(srv.http_port, "/livez")[0] == 200  # a restart would start an empty store
    log = srv.log()
    assert log.count("was removed or replaced while the store is open") >= 1, log
    assert "ERROR bitcask: the data directory" in log, log
