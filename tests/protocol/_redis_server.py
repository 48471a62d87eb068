"""A real redis-server on a free loopback port, for the differential tests of the RESP dialect.

`redis_server()` skips the test when the binary is missing (naming the Debian package),
but fails it under CI=true, where the package is installed. Every wait is bounded.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import socket
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.serverproc import free_port

START_TIMEOUT = 10.0
IO_TIMEOUT = 10.0


def require_binary(name: str, package: str) -> str:
    """Path of `name`; skip (or fail under CI=true) naming the package when absent."""
    path = shutil.which(name)
    if path is None:
        reason = f"{name} not installed (Debian package {package})"
        if os.environ.get("CI") == "true":
            pytest.fail(reason + ", required under CI=true")
        pytest.skip(reason)
    return path


@contextlib.contextmanager
def redis_server(workdir: Path, *extra: str) -> Iterator[int]:
    """Run `redis-server --port <free> --save '' --appendonly no` on 127.0.0.1, plus
    `extra` arguments (`"--requirepass", "t"`); yield its port."""
    binary = require_binary("redis-server", "redis-server")
    port = free_port()
    log = (workdir / f"redis-{port}.log").open("wb")
    proc = subprocess.Popen(
        [
            binary, "--port", str(port), "--bind", "127.0.0.1", "--save", "",
            "--appendonly", "no", "--dir", str(workdir), *extra,
        ],
        stdout=log,
        stderr=subprocess.STDOUT,
    )  # fmt: skip
    try:
        deadline = time.monotonic() + START_TIMEOUT
        while True:
            if proc.poll() is not None:
                raise RuntimeError(f"redis-server exited with {proc.returncode}")
            try:
                with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                    break
            except OSError:
                if time.monotonic() > deadline:
                    raise TimeoutError("redis-server did not listen") from None
                time.sleep(0.05)
        yield port
    finally:
        proc.kill()
        proc.wait(timeout=IO_TIMEOUT)
        log.close()


def exchange(port: int, data: bytes) -> bytes:
    """Send `data`, half-close, and return every byte the server sent until it closed."""
    with socket.create_connection(("127.0.0.1", port), timeout=IO_TIMEOUT) as s:
        s.sendall(data)
        s.shutdown(socket.SHUT_WR)
        chunks = []
        while True:
            chunk = s.recv(65536)
            if not chunk:
                break
            chunks.append(chunk)
    return b"".join(chunks)


def split_replies(data: bytes) -> list[bytes]:
    """Cut a RESP2 reply stream into its top-level replies (raw bytes each)."""
    out: list[bytes] = []
    pos = 0
    while pos < len(data):
        end = _reply_end(data, pos)
        out.append(data[pos:end])
        pos = end
    return out


def _reply_end(data: bytes, pos: int) -> int:
    nl = data.index(b"\r\n", pos)
    kind = data[pos : pos + 1]
    if kind in (b"+", b"-", b":", b"_", b",", b"#"):
        return nl + 2
    n = int(data[pos + 1 : nl])
    if kind in (b"$", b"=", b"!"):
        return nl + 2 if n < 0 else nl + 2 + n + 2
    if kind in (b"*", b"~", b"%"):
        at = nl + 2
        for _ in range(max(n, 0) * (2 if kind == b"%" else 1)):
            at = _reply_end(data, at)
        return at
    raise ValueError(f"unexpected reply type {kind!r}")


class RedisConnection:
    """One blocking connection to a real Redis for command-by-command comparisons."""

    def __init__(self, port: int) -> None:
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=IO_TIMEOUT)
        self.buf = b""

    def call(self, argv: list[bytes]) -> bytes:
        """Send one multibulk command and return its raw reply."""
        out = b"*%d\r\n" % len(argv) + b"".join(b"$%d\r\n%b\r\n" % (len(a), a) for a in argv)
        self.sock.sendall(out)
        while True:
            try:
                end = _reply_end(self.buf, 0)
            except (ValueError, IndexError):
                end = -1
            if end > 0 and end <= len(self.buf):
                reply, self.buf = self.buf[:end], self.buf[end:]
                return reply
            chunk = self.sock.recv(65536)
            if not chunk:
                raise ConnectionError("redis closed the connection")
            self.buf += chunk

    def close(self) -> None:
        self.sock.close()


def parse_reply(data: bytes) -> object:
    """One complete RESP2/RESP3 reply as Python values (errors as `Exception`)."""
    value, end = _parse(data, 0)
    if end != len(data):
        raise ValueError("trailing bytes after the reply")
    return value


def _parse(data: bytes, pos: int) -> tuple[object, int]:
    nl = data.index(b"\r\n", pos)
    kind, line = data[pos : pos + 1], data[pos + 1 : nl]
    if kind == b"+":
        return line, nl + 2
    if kind == b"-":
        return Exception(line.decode("latin-1")), nl + 2
    if kind == b":":
        return int(line), nl + 2
    if kind == b"_":
        return None, nl + 2
    if kind in (b"$", b"=", b"!"):
        n = int(line)
        if n < 0:
            return None, nl + 2
        return data[nl + 2 : nl + 2 + n], nl + 2 + n + 2
    n = int(line)
    if n < 0:
        return None, nl + 2
    items: list[object] = []
    at = nl + 2
    for _ in range(n * (2 if kind == b"%" else 1)):
        item, at = _parse(data, at)
        items.append(item)
    if kind == b"%":
        return dict(zip(items[::2], items[1::2], strict=True)), at
    return items, at
