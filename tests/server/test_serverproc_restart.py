"""The test helper's restart: the binary port stays, an HTTP port taken meanwhile moves.

A test that kills its server and starts it again keeps the binary port its clients
know. While the server was down, any process could take its HTTP port (a client's
outgoing connection did, in one run, and the restart failed with EXIT_BIND).
"""

from __future__ import annotations

import socket
from collections.abc import Callable

from tests.server.wire import Conn, http
from tests.serverproc import ServerProcess


def test_a_restart_whose_http_port_was_taken_moves_only_that_port(
    server_factory: Callable[..., ServerProcess],
) -> None:
    srv = server_factory(sync="never")
    with Conn(srv.port) as conn:
        conn.call("put", b"k", b"v")
    port, http_port = srv.port, srv.http_port
    srv.kill()
    with socket.socket() as squatter:
        squatter.bind(("127.0.0.1", http_port))
        squatter.listen(1)
        srv.start()
    assert srv.port == port
    assert srv.http_port != http_port
    with Conn(srv.port) as conn:
        assert conn.call("get", b"k") == b"v"
    reply = http(srv.http_port, b"GET /readyz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
    assert reply.startswith(b"HTTP/1.1 200"), reply


def test_a_restart_whose_binary_port_was_taken_still_fails(
    server_factory: Callable[..., ServerProcess],
) -> None:
    srv = server_factory(sync="never")
    port = srv.port
    srv.kill()
    with socket.socket() as squatter:
        squatter.bind(("127.0.0.1", port))
        squatter.listen(1)
        try:
            srv.start()
        except RuntimeError as exc:
            assert "(--port)" in str(exc)
        else:
            raise AssertionError("the restart moved the binary port its clients know")
