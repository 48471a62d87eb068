"""A client that half-closes (shutdown(SHUT_WR), what `nc -N` does when its input
ends) gets the answer of every request it sent, then the server closes: the worked
examples of docs/protocol.md and docs/redis.md rely on it, in both dialects."""

from __future__ import annotations

import socket

import msgpack

from tests.server.wire import request
from tests.serverproc import ServerProcess

TIMEOUT = 10.0


def half_close(port: int, payload: bytes) -> bytes:
    """Send `payload`, shut our side down, read until the server closes (bounded)."""
    with socket.create_connection(("127.0.0.1", port), timeout=TIMEOUT) as s:
        s.sendall(payload)
        s.shutdown(socket.SHUT_WR)
        out = b""
        while chunk := s.recv(65536):  # a timeout raises: the server never closed
            out += chunk
    return out


def frames(data: bytes) -> list[list[object]]:
    out = []
    while data:
        n = int.from_bytes(data[:4], "big")
        out.append(msgpack.unpackb(data[4 : 4 + n]))
        data = data[4 + n :]
    return out


def test_binary_requests_before_the_half_close_are_all_answered(shared: ServerProcess) -> None:
    payload = b"".join(
        [
            request(1, "put", [b"hc:k", b"v1"]),
            request(2, "get", [b"hc:k"]),
            request(3, "mput", [[[b"hc:a", b"1"], [b"hc:b", b"2"]]]),
            request(4, "mget", [[b"hc:a", b"hc:b", b"hc:none"]]),
            request(5, "ping"),
        ]
    )
    assert frames(half_close(shared.port, payload)) == [
        [1, 1, None, True],
        [1, 2, None, b"v1"],
        [1, 3, None, True],
        [1, 4, None, [b"1", b"2", None]],
        [1, 5, None, "PONG"],
    ]
    # the writes were stored, not only answered
    assert frames(half_close(shared.port, request(6, "get", [b"hc:b"]))) == [[1, 6, None, b"2"]]


def test_redis_commands_before_the_half_close_are_all_answered(shared: ServerProcess) -> None:
    inline = b'SET hc:r "hello world"\r\nGET hc:r\r\nINCR hc:n\r\nPING\r\n'
    assert half_close(shared.port, inline) == b"+OK\r\n$11\r\nhello world\r\n:1\r\n+PONG\r\n"
    multibulk = b"*2\r\n$4\r\nINCR\r\n$4\r\nhc:n\r\n*2\r\n$3\r\nGET\r\n$4\r\nhc:n\r\n"
    assert half_close(shared.port, multibulk) == b":2\r\n$1\r\n2\r\n"
