"""A blocking binary-protocol client written from docs/protocol.md alone.

Strategy: no import of `protocol/`, `client/` or `server/`; only `socket` and
`msgpack`, so that it proves the document is enough to speak the protocol. Framing
is a 4-byte big-endian length and one msgpack value (bin for bytes, str for text);
requests are `[0, msgid, method, params]`, responses `[1, msgid, error, result]`.
Replies are matched by msgid (section 6), never by position. msgids start at 1 and
skip 0 on wrap-around (section 2). Every socket operation has a timeout.
"""

from __future__ import annotations

import socket
from dataclasses import dataclass
from typing import Any

import msgpack

TIMEOUT = 20.0


@dataclass
class ServerError(Exception):
    code: int
    name: str
    message: str
    msgid: int = -1


class Closed(Exception):
    """The server closed the connection."""


def frame(value: Any) -> bytes:
    body = msgpack.packb(value, use_bin_type=True)
    return len(body).to_bytes(4, "big") + body


class WireClient:
    def __init__(self, host: str, port: int) -> None:
        self.sock = socket.create_connection((host, port), timeout=TIMEOUT)
        self.buf = b""
        self.next_id = 1
        self.replies: dict[int, tuple[Any, Any]] = {}

    def close(self) -> None:
        self.sock.close()

    def __enter__(self) -> WireClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # framing ---------------------------------------------------------------------

    def recv_exactly(self, n: int) -> bytes:
        while len(self.buf) < n:
            chunk = self.sock.recv(65536)
            if not chunk:
                raise Closed(f"closed with {len(self.buf)} of {n} bytes received")
            self.buf += chunk
        out, self.buf = self.buf[:n], self.buf[n:]
        return out

    def read_message(self) -> list[Any]:
        size = int.from_bytes(self.recv_exactly(4), "big")
        assert size >= 1
        message = msgpack.unpackb(self.recv_exactly(size), raw=False)
        assert isinstance(message, list) and len(message) == 4 and message[0] == 1, message
        return message

    def send_raw(self, data: bytes) -> None:
        self.sock.sendall(data)

    # requests ----------------------------------------------------------------------

    def take_id(self) -> int:
        msgid = self.next_id
        self.next_id = (self.next_id + 1) % 2**32 or 1
        return msgid

    def send(self, method: str, params: list[Any]) -> int:
        msgid = self.take_id()
        self.sock.sendall(frame([0, msgid, method, params]))
        return msgid

    def reply(self, msgid: int) -> Any:
        """The result for `msgid`; raises ServerError for an error reply."""
        while msgid not in self.replies:
            _kind, got, error, result = self.read_message()
            if got == 0 and error is not None:
                code, name, message = error
                raise ServerError(code, name, message, 0)
            self.replies[got] = (error, result)
        error, result = self.replies.pop(msgid)
        if error is not None:
            code, name, message = error
            assert result is None
            raise ServerError(code, name, message, msgid)
        return result

    def call(self, method: str, *params: Any) -> Any:
        return self.reply(self.send(method, list(params)))

    def error(self, method: str, *params: Any) -> ServerError:
        """The error `method` answers (fails the test if it succeeds)."""
        try:
            result = self.call(method, *params)
        except ServerError as exc:
            return exc
        raise AssertionError(f"{method} {params!r} answered {result!r}, not an error")
