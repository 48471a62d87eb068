"""The shell's Redis backend (`client.RespClient`) against small scripted endpoints.

A real asyncio server on a loopback port answers each command as the test scripts
it, so the cases real servers rarely produce on demand are exact: a late reply
after a timeout, an endpoint that closes instead of answering (as twemproxy does),
error replies of every kind. The real endpoints are in test_redis_cli.py.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable

import pytest

from client import (
    AuthFailedError,
    AuthRequiredError,
    CallTimeoutError,
    EndpointClosedError,
    NoSuchKeyError,
    NotANumberError,
    ReadOnlyError,
    Refusals,
    ServerError,
    UnsupportedCommandError,
    connect_resp,
)
from client._resp_translate import error_from_reply, parse_info
from protocol._resp_client import ErrorReply
from protocol._resp_reader import RespReader

Handler = Callable[[list[bytes]], Awaitable[bytes | None]]  # None: close the connection


@pytest.fixture
async def endpoint() -> AsyncIterator[Callable[[Handler], Awaitable[int]]]:
    servers: list[asyncio.Server] = []

    async def start(handler: Handler) -> int:
        async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            parser = RespReader()
            try:
                while data := await reader.read(65536):
                    parser.feed(data)
                    while (argv := parser.next_command()) is not None:
                        assert isinstance(argv, list)
                        reply = await handler(argv)
                        if reply is None:
                            writer.close()
                            return
                        writer.write(reply)
            finally:
                writer.close()

        server = await asyncio.start_server(serve, "127.0.0.1", 0)
        servers.append(server)
        return int(server.sockets[0].getsockname()[1])

    yield start
    for server in servers:
        server.close()
        await server.wait_closed()


@pytest.mark.parametrize(
    ("line", "kind", "name"),
    [
        pytest.param("NOAUTH Authentication required.", AuthRequiredError, "AUTH_REQUIRED", id="noauth"),
        pytest.param("WRONGPASS invalid username-password pair", AuthFailedError, "AUTH_FAILED", id="wrongpass"),
        pytest.param("ERR invalid password", AuthFailedError, "AUTH_FAILED", id="old-redis-auth"),
        pytest.param("ERR value is not an integer or out of range", NotANumberError, "NOT_A_NUMBER", id="int"),
        pytest.param("ERR no such key", NoSuchKeyError, "NO_SUCH_KEY", id="rename"),
        pytest.param("READONLY You can't write against a read only replica.", ReadOnlyError, "READ_ONLY", id="ro"),
        pytest.param("WRONGTYPE Operation against a key", ServerError, "WRONGTYPE", id="wrongtype"),
        pytest.param("ERR unknown command 'GETDEL'", ServerError, "ERR", id="unknown"),
    ],
)  # fmt: skip
def test_error_replies_map_to_typed_errors(line: str, kind: type[ServerError], name: str) -> None:
    err = error_from_reply(ErrorReply.parse(line.encode()))
    assert type(err) is kind
    assert err.name == name
    assert err.message == line.partition(" ")[2]


def test_info_is_parsed_with_a_key_count() -> None:
    info = parse_info(b"# Server\r\nredis_version:7.2.4\r\nuptime:3\r\n\r\n# Keyspace\r\n")
    assert info == {"redis_version": "7.2.4", "uptime": 3, "keys": 0}


async def test_a_late_reply_still_meets_its_caller(
    endpoint: Callable[[Handler], Awaitable[int]],
) -> None:
    release = asyncio.Event()

    async def handler(argv: list[bytes]) -> bytes:
        if argv == [b"GET", b"slow"]:
            await release.wait()
            return b"$4\r\nslow\r\n"
        return b"$4\r\nfast\r\n"

    port = await endpoint(handler)
    c = await connect_resp("127.0.0.1", port, timeout=2.0)
    try:
        with pytest.raises(CallTimeoutError):
            await c.get(b"slow", timeout=0.05)
        release.set()
        assert await c.get(b"next") == b"fast"  # not the late "slow"
    finally:
        await c.close()


async def test_two_closes_instead_of_a_reply_are_remembered(
    endpoint: Callable[[Handler], Awaitable[int]],
) -> None:
    sent: list[bytes] = []

    async def handler(argv: list[bytes]) -> bytes | None:
        sent.append(argv[0])
        return None if argv[0] == b"SCAN" else b"+PONG\r\n"

    port = await endpoint(handler)
    refusals = Refusals()
    for _ in range(Refusals.STRIKES):
        c = await connect_resp("127.0.0.1", port, refusals=refusals)
        with pytest.raises(EndpointClosedError) as caught:
            await c.scan_page(b"", None, 10)
        assert caught.value.command == "SCAN"
        assert c.closed
        await c.close()
    c = await connect_resp("127.0.0.1", port, refusals=refusals)
    try:
        with pytest.raises(UnsupportedCommandError, match="does not support SCAN"):
            await c.scan_page(b"", None, 10)
        assert await c.ping() == "PONG"
        assert sent == [b"SCAN", b"SCAN", b"PING"]  # the third SCAN was never sent
    finally:
        await c.close()


async def test_a_restart_does_not_ban_a_command(
    endpoint: Callable[[Handler], Awaitable[int]],
) -> None:
    answers = [None, b"$1\r\nv\r\n", None, b"$1\r\nv\r\n"]  # close, answer, close, answer

    async def handler(argv: list[bytes]) -> bytes | None:
        return answers.pop(0)

    port = await endpoint(handler)
    refusals = Refusals()
    for expected in (EndpointClosedError, None, EndpointClosedError, None):
        c = await connect_resp("127.0.0.1", port, refusals=refusals)
        try:
            if expected is None:
                assert await c.get(b"k") == b"v"
            else:
                with pytest.raises(expected):
                    await c.get(b"k")
        finally:
            await c.close()
    assert not refusals.refuses(("GET", 2))


async def test_binary_only_methods_send_nothing(
    endpoint: Callable[[Handler], Awaitable[int]],
) -> None:
    sent: list[list[bytes]] = []

    async def handler(argv: list[bytes]) -> bytes:
        sent.append(argv)
        return b"+OK\r\n"

    port = await endpoint(handler)
    c = await connect_resp("127.0.0.1", port, password="pw", username="ann", db=2)
    try:
        for call in (c.merge(), c.sync(), c.backup("dir")):
            with pytest.raises(UnsupportedCommandError, match="not part of the Redis protocol"):
                await call
        with pytest.raises(UnsupportedCommandError):
            c.transaction(b"k")
        assert sent == [[b"AUTH", b"ann", b"pw"], [b"SELECT", b"2"]]
    finally:
        await c.close()


async def test_commands_on_the_wire(endpoint: Callable[[Handler], Awaitable[int]]) -> None:
    sent: list[list[bytes]] = []

    async def handler(argv: list[bytes]) -> bytes:
        sent.append(argv)
        if argv[0] == b"SCAN":
            return b"*2\r\n$1\r\n0\r\n*2\r\n$1\r\nb\r\n$1\r\na\r\n"
        return b":1\r\n" if argv[0] in (b"PEXPIRE", b"PEXPIREAT", b"RENAMENX") else b"+OK\r\n"

    port = await endpoint(handler)
    c = await connect_resp("127.0.0.1", port)
    try:
        await c.put(b"k", b"v", ttl=1.0001)
        await c.set(b"k", b"v", nx=True, get=True, ttl=2)
        await c.set(b"k", b"v", xx=True, keep_ttl=True)
        assert await c.expire(b"k", 0.5, cond="gt") is True
        assert await c.expire(b"k", at_ms=1_900_000_000_000) is True
        assert await c.rename(b"a", b"b", nx=True) is True
        assert await c.scan_page(b"a*[", b"17", 5) == (None, [b"a", b"b"])  # "0": done
    finally:
        await c.close()
    assert sent == [
        [b"SET", b"k", b"v", b"PX", b"1001"],
        [b"SET", b"k", b"v", b"NX", b"GET", b"PX", b"2000"],
        [b"SET", b"k", b"v", b"XX", b"KEEPTTL"],
        [b"PEXPIRE", b"k", b"500", b"GT"],
        [b"PEXPIREAT", b"k", b"1900000000000"],
        [b"RENAMENX", b"a", b"b"],
        [b"SCAN", b"17", b"MATCH", b"a\\*\\[*", b"COUNT", b"5"],
    ]
