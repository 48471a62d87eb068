"""A raw-socket client for the server tests: blocking, explicit, every read bounded.

It speaks the wire format with msgpack directly (not through protocol/), so the tests
also check the bytes the server sends against CONTRACTS.md rather than against our own
decoder.
"""

from __future__ import annotations

import contextlib
import socket
import struct
import time
from collections.abc import Iterator, Sequence
from typing import Any

import msgpack

TIMEOUT = 10.0


class RemoteError(Exception):
    def __init__(self, code: int, name: str, message: str) -> None:
        super().__init__(f"{name} ({code}): {message}")
        self.code = code
        self.name = name
        self.message = message


def frame(obj: Any) -> bytes:
    body = msgpack.packb(obj, use_bin_type=True)
    return struct.pack(">I", len(body)) + body


def request(msgid: int, method: str, params: Sequence[Any] = ()) -> bytes:
    return frame([0, msgid, method, list(params)])


class Conn:
    """One binary-protocol connection.

    Example:
        conn = Conn(port); conn.call("put", b"k", b"v") -> True
    """

    def __init__(self, port: int, host: str = "127.0.0.1", timeout: float = TIMEOUT) -> None:
        self.sock = socket.create_connection((host, port), timeout=timeout)
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.buf = b""
        self.next_id = 1

    def close(self) -> None:
        with contextlib.suppress(OSError):
            self.sock.close()

    def __enter__(self) -> Conn:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def send_raw(self, data: bytes) -> None:
        self.sock.sendall(data)

    def _fill(self, n: int) -> None:
        while len(self.buf) < n:
            chunk = self.sock.recv(1 << 20)
            if not chunk:
                raise ConnectionError(f"server closed the connection (buffered {self.buf!r:.200})")
            self.buf += chunk

    def read_message(self) -> list[Any]:
        self._fill(4)
        (n,) = struct.unpack(">I", self.buf[:4])
        self._fill(4 + n)
        body, self.buf = self.buf[4 : 4 + n], self.buf[4 + n :]
        msg = msgpack.unpackb(body, raw=False)
        assert isinstance(msg, list) and len(msg) == 4 and msg[0] == 1, msg
        return msg

    def send(self, method: str, *params: Any) -> int:
        msgid = self.next_id
        self.next_id += 1
        self.sock.sendall(request(msgid, method, params))
        return msgid

    def reply(self) -> tuple[int, Any]:
        """(msgid, result); raises RemoteError for an error reply."""
        _, msgid, error, result = self.read_message()
        if error is not None:
            raise RemoteError(*error)
        return msgid, result

    def call(self, method: str, *params: Any) -> Any:
        msgid = self.send(method, *params)
        got, result = self.reply()
        assert got == msgid
        return result

    def error(self, method: str, *params: Any) -> RemoteError:
        """Call and expect an error reply; returns it."""
        try:
            result = self.call(method, *params)
        except RemoteError as exc:
            return exc
        raise AssertionError(f"{method} succeeded with {result!r}; an error was expected")

    def closed_by_peer(self, timeout: float = TIMEOUT) -> bool:
        """True once the server has closed (reads EOF or reset within timeout)."""
        self.sock.settimeout(timeout)
        deadline = time.monotonic() + timeout
        try:
            while time.monotonic() < deadline:
                chunk = self.sock.recv(65536)
                if not chunk:
                    return True
                self.buf += chunk
        except ConnectionResetError:
            return True
        except TimeoutError:
            return False
        return False


class Inline:
    """One inline-text connection (what `nc` would do)."""

    def __init__(self, port: int, timeout: float = TIMEOUT) -> None:
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=timeout)
        self.buf = b""

    def close(self) -> None:
        with contextlib.suppress(OSError):
            self.sock.close()

    def __enter__(self) -> Inline:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def send(self, text: bytes) -> None:
        self.sock.sendall(text)

    def line(self) -> bytes:
        while b"\n" not in self.buf:
            chunk = self.sock.recv(65536)
            if not chunk:
                raise ConnectionError(f"closed; buffered {self.buf!r}")
            self.buf += chunk
        line, _, self.buf = self.buf.partition(b"\n")
        return line

    def cmd(self, text: bytes) -> bytes:
        self.send(text + b"\r\n")
        return self.line()

    def read_all(self) -> bytes:
        """Everything until the server closes (a reset counts as the close)."""
        with contextlib.suppress(ConnectionResetError):
            while True:
                chunk = self.sock.recv(65536)
                if not chunk:
                    break
                self.buf += chunk
        return self.buf


def http(port: int, raw: bytes, timeout: float = TIMEOUT) -> bytes:
    """Send raw bytes to the HTTP port; return everything until the server closes."""
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as sock:
        sock.sendall(raw)
        chunks = []
        with contextlib.suppress(ConnectionResetError):
            while True:
                chunk = sock.recv(65536)
                if not chunk:
                    break
                chunks.append(chunk)
        return b"".join(chunks)


def status_of(response: bytes) -> int:
    return int(response.split(b" ", 2)[1])


@contextlib.contextmanager
def connections(port: int, n: int) -> Iterator[list[Conn]]:
    conns = [Conn(port) for _ in range(n)]
    try:
        yield conns
    finally:
        for c in conns:
            c.close()
