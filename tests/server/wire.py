"""A raw-socket client for the server tests: blocking, explicit, every read bounded.

It speaks the wire format with msgpack directly (not through protocol/), so the tests
also check the bytes the server sends against CONTRACTS.md rather than against our own
decoder. `Inline` speaks the Redis protocol the way `nc` does (inline command lines)
and reads RESP replies by hand, for the same reason.
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


class ReplyError(str):
    """A RESP error reply (`-ERR ...`), as its text without `-`; a str, so
    `reply.startswith("ERR ")` works and `isinstance(reply, ReplyError)` tells it
    from a simple string."""


class Inline:
    """One Redis-protocol connection sending inline commands (what `nc` would do).

    Replies are read as RESP2/RESP3 values: `+OK` -> "OK" (str), `-ERR x` ->
    ReplyError("ERR x"), `:1` -> 1, `$5 hello` -> b"hello", nil -> None, arrays ->
    lists, maps -> dicts, doubles -> float, booleans -> bool.

    Example:
        with Inline(port) as c: c.cmd(b'SET k "a b"') -> "OK"
    """

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

    def _fill(self) -> None:
        chunk = self.sock.recv(1 << 20)
        if not chunk:
            raise ConnectionError(f"closed; buffered {self.buf!r:.200}")
        self.buf += chunk

    def line(self) -> bytes:
        """The next raw line, without its CRLF."""
        while b"\r\n" not in self.buf:
            self._fill()
        line, _, self.buf = self.buf.partition(b"\r\n")
        return line

    def _exactly(self, n: int) -> bytes:
        while len(self.buf) < n + 2:
            self._fill()
        data, self.buf = self.buf[:n], self.buf[n + 2 :]
        return data

    def reply(self) -> Any:
        """The next reply, parsed (see the class docstring)."""
        line = self.line()
        kind, rest = line[:1], line[1:]
        if kind == b"+":
            return rest.decode("utf-8", "surrogateescape")
        if kind == b"-":
            return ReplyError(rest.decode("utf-8", "surrogateescape"))
        if kind == b":":
            return int(rest)
        if kind == b"_":
            return None
        if kind == b",":
            return float(rest)
        if kind == b"#":
            return rest == b"t"
        if kind in (b"$", b"=", b"!"):
            n = int(rest)
            return None if n < 0 else self._exactly(n)
        if kind in (b"*", b"~", b"%", b">"):
            n = int(rest)
            if n < 0:
                return None
            if kind == b"%":
                return {self.reply(): self.reply() for _ in range(n)}
            return [self.reply() for _ in range(n)]
        raise AssertionError(f"not a RESP reply: {line!r:.200}")

    def cmd(self, text: bytes) -> Any:
        """Send one inline command line and return its reply."""
        self.send(text + b"\r\n")
        return self.reply()

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
