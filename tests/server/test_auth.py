"""Auth: a token guards every method but hello/auth/ping on every front end."""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator

import pytest

from tests.server.wire import Conn, Inline
from tests.serverproc import ServerProcess

TOKEN = "s3cret-token"


@pytest.fixture(scope="module")
def guarded(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    data = tmp_path_factory.mktemp("auth") / "data"
    data.mkdir()
    srv = ServerProcess(data=data, sync="never", env={"BITCASK_AUTH": TOKEN})
    srv.start()
    yield srv
    srv.kill()


def test_binary_requires_auth(guarded: ServerProcess) -> None:
    with Conn(guarded.port) as c:
        assert c.call("ping") == "PONG"
        info = c.call("hello")
        assert info["auth_required"] is True and info["authenticated"] is False
        for method, params in (("get", [b"k"]), ("put", [b"k", b"v"]), ("stats", []), ("nope", [])):
            # AUTH_REQUIRED comes before any other check, even an unknown method's
            assert c.error(method, *params).name == "AUTH_REQUIRED"
        assert c.error("auth", b"wrong").name == "AUTH_FAILED"
        assert c.error("get", b"k").name == "AUTH_REQUIRED"
        assert c.call("auth", TOKEN) is True
        assert c.call("put", b"k", b"v") is True and c.call("get", b"k") == b"v"


def test_hello_can_authenticate(guarded: ServerProcess) -> None:
    with Conn(guarded.port) as c:
        assert c.error("hello", {"auth": "wrong"}).name == "AUTH_FAILED"
        assert c.call("hello", {"protocol": 1, "auth": TOKEN})["authenticated"] is True
        assert c.call("exists", b"k") in (True, False)


def test_pipelined_requests_before_auth_fail(guarded: ServerProcess) -> None:
    with Conn(guarded.port) as c:
        c.send("put", b"early", b"v")
        c.send("auth", TOKEN)
        c.send("get", b"early")
        replies = [c.read_message() for _ in range(3)]
        assert replies[0][2][1] == "AUTH_REQUIRED"
        assert replies[1][3] is True
        assert replies[2][2] is None and replies[2][3] is None, "the early put was refused"


def test_inline_requires_auth(guarded: ServerProcess) -> None:
    # the Redis protocol's inline commands (docs/redis.md): Redis's replies and prefixes
    with Inline(guarded.port) as c:
        assert c.cmd(b"GET k") == "NOAUTH Authentication required."
        assert c.cmd(b"AUTH nope") == (
            "WRONGPASS invalid username-password pair or user is disabled."
        )
        assert c.cmd(b"AUTH " + TOKEN.encode()) == "OK"
        assert c.cmd(b"SET inline v") == "OK"
        assert c.cmd(b"GET inline") == b"v"


def _http(srv: ServerProcess, path: str, headers: dict[str, str], method: str = "GET") -> int:
    req = urllib.request.Request(
        f"http://127.0.0.1:{srv.http_port}{path}", headers=headers, method=method
    )
    try:
        with urllib.request.urlopen(req, timeout=10) as resp:
            return int(resp.status)
    except urllib.error.HTTPError as err:
        if err.code == 401:
            name = json.loads(err.read())["error"]["name"]
            # RFC 6750 3.1: the challenge names a wrong token, not a missing one
            assert (
                err.headers["www-authenticate"]
                == {
                    "AUTH_REQUIRED": 'Bearer realm="bitcask"',
                    "AUTH_FAILED": 'Bearer realm="bitcask", error="invalid_token"',
                }[name]
            )
        return int(err.code)


@pytest.mark.parametrize(
    ("headers", "status"),
    [
        pytest.param({}, 401, id="no-header"),
        pytest.param({"Authorization": "Bearer wrong"}, 401, id="wrong-token"),
        pytest.param({"Authorization": f"Basic {TOKEN}"}, 401, id="wrong-scheme"),
        pytest.param({"Authorization": f"Bearer {TOKEN}"}, 404, id="right-token"),
    ],
)
def test_http_bearer(guarded: ServerProcess, headers: dict[str, str], status: int) -> None:
    assert _http(guarded, "/kv/never-set", headers) == status


def test_http_probes_stay_open(guarded: ServerProcess) -> None:
    for path in ("/health", "/livez", "/readyz", "/metrics"):
        assert _http(guarded, path, {}) == 200


def test_auth_flag_beats_env(server_factory: Callable[..., ServerProcess]) -> None:
    srv = server_factory(sync="never", extra=["--auth", "flag"], env={"BITCASK_AUTH": "env"})
    with Conn(srv.port) as c:
        assert c.error("auth", "env").name == "AUTH_FAILED"
        assert c.call("auth", "flag") is True
