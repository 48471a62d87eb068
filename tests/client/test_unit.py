"""Client pieces that need no server: errors, configuration, argument checks."""

from __future__ import annotations

import asyncio
import pickle
from typing import Any

import pytest

import client
from client import (
    AuthError,
    AuthFailedError,
    AuthRequiredError,
    BusyError,
    CallTimeoutError,
    ClientConfig,
    ClientError,
    ConnectError,
    ConnectionLostError,
    CorruptRecordError,
    InterfaceError,
    KeyTooLargeError,
    Limits,
    ReadOnlyError,
    ServerError,
    ValueTooLargeError,
    connect,
    error_for_code,
    parse_url,
)
from client._args import check_ttl
from client._config import make_config
from protocol import ErrorCode, ProtocolError, validate_params
from tests.client.fake import fake_server
from tests.serverproc import free_port


@pytest.mark.parametrize("code", list(ErrorCode), ids=lambda c: c.name)
def test_every_error_code_has_a_class(code: ErrorCode) -> None:
    err = error_for_code(int(code), code.name, "m")
    assert type(err) is not ServerError
    assert (err.code, err.name, err.message) == (int(code), code.name, "m")
    assert isinstance(err, ServerError) and isinstance(err, ClientError)


@pytest.mark.parametrize(
    ("code", "cls"),
    [
        pytest.param(200, AuthRequiredError, id="auth-required"),
        pytest.param(201, AuthFailedError, id="auth-failed"),
        pytest.param(300, KeyTooLargeError, id="key"),
        pytest.param(301, ValueTooLargeError, id="value"),
        pytest.param(400, ReadOnlyError, id="read-only"),
        pytest.param(402, CorruptRecordError, id="corrupt"),
        pytest.param(502, BusyError, id="busy"),
    ],
)
def test_error_classes_by_code(code: int, cls: type[ServerError]) -> None:
    assert type(error_for_code(code, "ANY NAME", "")) is cls


def test_error_hierarchy() -> None:
    assert issubclass(AuthRequiredError, AuthError) and issubclass(AuthFailedError, AuthError)
    assert issubclass(KeyTooLargeError, ValueError) and issubclass(ValueTooLargeError, ValueError)
    assert issubclass(CallTimeoutError, TimeoutError)
    assert issubclass(ConnectionLostError, ConnectionError)
    assert issubclass(ConnectError, ConnectionLostError)
    assert type(error_for_code(999, "NEW", "")) is ServerError
    local = KeyTooLargeError.local("too big")
    assert local.code == 300 and local.name == "KEY_TOO_LARGE"


def test_server_errors_pickle() -> None:
    err = pickle.loads(pickle.dumps(error_for_code(400, "READ_ONLY", "disk")))
    assert type(err) is ReadOnlyError and err.message == "disk"


@pytest.mark.parametrize(
    ("url", "fields"),
    [
        pytest.param("bitcask://h:1", {"host": "h", "port": 1}, id="host-port"),
        pytest.param("bitcask://h", {"host": "h", "port": 7379}, id="default-port"),
        pytest.param(
            "bitcask://:t%40k@h:2", {"host": "h", "port": 2, "auth": "t@k"}, id="token-quoted"
        ),
        pytest.param(
            "bitcask://h:3?timeout=0.5", {"host": "h", "port": 3, "timeout": 0.5}, id="timeout"
        ),
    ],
)
def test_parse_url(url: str, fields: dict[str, Any]) -> None:
    assert parse_url(url) == fields


@pytest.mark.parametrize(
    "url",
    [
        pytest.param("redis://h:1", id="scheme"),
        pytest.param("bitcask://h:99999", id="port"),
        pytest.param("bitcask://h:1?timeout=x", id="timeout"),
        pytest.param("bitcask://h:1?bogus=1", id="option"),
    ],
)
def test_parse_url_errors(url: str) -> None:
    with pytest.raises(InterfaceError):
        parse_url(url)


def test_make_config_precedence() -> None:
    cfg = make_config("bitcask://:url-token@h:5", None, auth=None, timeout=2.0)
    assert (cfg.host, cfg.port, cfg.auth, cfg.timeout) == ("h", 5, "url-token", 2.0)
    assert make_config("bitcask://:a@h:5", None, auth="b").auth == "b"
    with pytest.raises(InterfaceError):
        make_config("bitcask://h:5", 6)
    with pytest.raises(InterfaceError):
        make_config("h", 5, bogus=1)


@pytest.mark.parametrize(
    "fields",
    [
        pytest.param({"port": 0}, id="port"),
        pytest.param({"host": ""}, id="host"),
        pytest.param({"timeout": -1}, id="timeout"),
        pytest.param({"reconnect_attempts": 0}, id="attempts"),
        pytest.param({"backoff_base": 5.0, "backoff_max": 1.0}, id="backoff"),
        pytest.param({"auth": 5}, id="auth"),
    ],
)
def test_config_is_validated(fields: dict[str, Any]) -> None:
    with pytest.raises(InterfaceError):
        ClientConfig(**fields)


def test_limits_from_hello_keeps_defaults_for_junk() -> None:
    assert Limits.from_hello(None) == Limits()
    lim = Limits.from_hello({"max_key_size": 10, "max_value_size": "x", "max_batch": -1})
    assert lim.max_key_size == 10 and lim.max_value_size == Limits().max_value_size
    assert lim.max_batch == Limits().max_batch


async def test_connect_to_a_closed_port_is_a_connect_error() -> None:
    with pytest.raises(ConnectError) as info:
        await connect("127.0.0.1", free_port(), timeout=2.0)
    assert isinstance(info.value.__cause__, OSError)


async def test_connect_timeout_is_bounded() -> None:
    # a listener that accepts but never answers hello
    server = await asyncio.start_server(lambda r, w: None, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    try:
        with pytest.raises(ConnectError):
            await asyncio.wait_for(connect("127.0.0.1", port, timeout=0.2), 5)
    finally:
        server.close()


@pytest.mark.parametrize(
    "call",
    [
        pytest.param(lambda c: c.get(123), id="int-key"),
        pytest.param(lambda c: c.get(None), id="none-key"),
        pytest.param(lambda c: c.put(b"k", 5), id="int-value"),
        pytest.param(lambda c: c.put(b"k", b"v", ttl=0), id="zero-ttl"),
        pytest.param(lambda c: c.put(b"k", b"v", ttl=True), id="bool-ttl"),
        pytest.param(lambda c: c.mget(b"single"), id="mget-single-key"),
        pytest.param(lambda c: c.mput([b"abc"]), id="mput-bad-pair"),
        pytest.param(lambda c: c.scan_page(count=0), id="scan-count"),
        pytest.param(lambda c: c.ping(5), id="ping-int"),
    ],
)
async def test_wrong_types_are_interface_errors(call: Any) -> None:
    async with fake_server() as srv, connect("127.0.0.1", srv.port) as c:
        with pytest.raises(InterfaceError):
            await call(c)
        assert await c.ping() == "PONG"


async def test_closed_client_and_reused_batch() -> None:
    async with fake_server() as srv:
        c = await connect("127.0.0.1", srv.port)
        b = c.batch()
        b.put(b"k", b"v")
        assert len(b) == 1
        await b.execute()
        with pytest.raises(InterfaceError):
            await b.execute()
        with pytest.raises(InterfaceError):
            b.put(b"k", b"v")
        assert await c.batch().execute() == []
        await c.close()
        with pytest.raises(InterfaceError):
            await c.get(b"k")
        with pytest.raises(InterfaceError):
            c.batch()
        assert "closed" in repr(c)


def test_public_names() -> None:
    for name in client.__all__:
        assert hasattr(client, name), name
    with pytest.raises(InterfaceError):
        connect(5)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    "ttl",
    [
        pytest.param(0, id="zero"),
        pytest.param(-1.5, id="negative"),
        pytest.param(float("inf"), id="inf"),
        pytest.param(float("nan"), id="nan"),
        pytest.param(True, id="bool"),
        pytest.param("5", id="str"),
    ],
)
def test_bad_ttl_fails_locally_like_the_protocol_rule(ttl: Any) -> None:
    with pytest.raises(InterfaceError):
        check_ttl(ttl)
    with pytest.raises(ProtocolError):  # the server's rule for the same value
        validate_params("put", [b"k", b"v", {"ttl": ttl}])


def test_good_ttl_passes_both_rules() -> None:
    assert check_ttl(2) == 2 and check_ttl(0.25) == 0.25
    assert validate_params("put", [b"k", b"v", {"ttl": 0.25}])[2] == 0.25
