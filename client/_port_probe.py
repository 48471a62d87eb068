"""What else answers on a port that does not answer bitcask's binary hello.

Strategy: a redis-server never answers the hello. Its inline reader looks for a
newline with strchr(), which stops at the frame's leading zero byte, so the frame
sits in its buffer and a client would wait out its whole timeout: nothing is ever
read on that connection to recognise. It does answer a RESP PING and INFO at once,
so the port is asked in RESP, on a second connection of its own, and only when the
hello is late (`HelloWatch`: unanswered for REDIS_PROBE_AFTER; a local
bitcask-server answers in about a millisecond), so a normal connect costs nothing
more. A bitcask-server answers the RESP probe too (the same port speaks RESP),
but its INFO names `bitcask_version`: a reply with `redis_version` and without it
is a Redis server, never a slow bitcask-server.

Invariants:
- A probe is bounded by its timeout and any failure of its own means "cannot
  tell" (None / False), never an error.
- Only a Redis server for sure (`RespAnswer.REDIS`) cuts the hello's wait short,
  with RedisPortError. A RESP answer that cannot tell (`RespAnswer.RESP`: NOAUTH
  from a Redis with a password, which a bitcask-server with a token answers too;
  twemproxy closing on INFO) only names what answered once the hello timed out.
- After a connect failed otherwise, `answers_resp_after` and `answers_http` ask
  the port what it is (twemproxy closes on the hello; the HTTP port answers
  garbage), for the one line a user reads.
"""

from __future__ import annotations

import asyncio
import contextlib
import enum
from collections.abc import Awaitable
from typing import Any, TypeVar

from client.errors import RedisPortError
from protocol.address import host_port

__all__ = [
    "REDIS_PROBE_AFTER",
    "HelloWatch",
    "RespAnswer",
    "answers_http",
    "answers_resp_after",
    "resp_answer",
]

T = TypeVar("T")

REDIS_PROBE_AFTER = 0.25
"""Seconds a binary hello may go unanswered before the port is asked (in RESP)
whether it is a Redis server: a local bitcask-server answers in about a millisecond."""

# PING, then `INFO server`, in RESP, one after the other: every Redis-protocol server
# answers PING (or refuses it in RESP: NOAUTH); twemproxy answers PING and closes the
# connection on INFO, which it does not proxy (on both at once: it closes, unanswered)
_PING = b"*1\r\n$4\r\nPING\r\n"
_INFO = b"*2\r\n$4\r\nINFO\r\n$6\r\nserver\r\n"
_REPLY_TYPES = frozenset(b"+-:$*_#,%~>!=(|")  # a RESP2/RESP3 reply's first byte
_MAX_INFO = 1 << 16  # INFO server is ~1 KiB; more than this is not one


class RespAnswer(enum.Enum):
    """What a RESP probe learnt about an endpoint."""

    REDIS = "redis"  # a Redis server (INFO with redis_version, no bitcask_version)
    RESP = "resp"  # a RESP answer, no INFO to tell (NOAUTH; twemproxy): not sure
    BITCASK = "bitcask"  # a bitcask-server (its INFO names bitcask_version)


async def resp_answer(host: str, port: int, timeout: float | None) -> RespAnswer | None:
    """Whether host:port answers RESP, and as what; None: no RESP answer (or none yet).

    Args:
        host, port: the endpoint.
        timeout: bounds the connect and each reply (None: unbounded).

    Example:
        >>> asyncio.run(resp_answer("127.0.0.1", 1, 1.0))  # nothing listens on 1
    """
    replies = await _exchange(host, port, timeout, [_PING, _INFO], _MAX_INFO)
    if not replies or replies[0][0] not in _REPLY_TYPES:
        return None
    reply = replies[-1]  # INFO's, or PING's when the endpoint closed on INFO
    if b"bitcask_version:" in reply:
        return RespAnswer.BITCASK
    if b"redis_version:" in reply:
        return RespAnswer.REDIS
    return RespAnswer.RESP


async def answers_http(host: str, port: int, timeout: float | None) -> bool:
    """Whether host:port speaks HTTP: asked after the binary handshake got garbage.

    One short HEAD request on a fresh connection, bounded by the timeout; any
    failure means "not HTTP as far as we can tell".
    """
    request = f"HEAD / HTTP/1.0\r\nHost: {host}\r\n\r\n".encode("ascii")
    replies = await _exchange(host, port, timeout, [request], 0)
    return any(r.startswith(b"HTTP/") for r in replies)


async def answers_resp_after(
    exc: BaseException, host: str, port: int, timeout: float | None
) -> bool:
    """After a binary connect to host:port failed with `exc`: whether the port answers
    the Redis protocol. RedisPortError says so itself. Not asked after a timeout (the
    client asked already if the hello was late, and a silent host would cost a second
    timeout), nor when no connection was made at all (refused, unreachable): there is
    no peer to ask. Asked otherwise (twemproxy closes the connection on the hello)."""
    if isinstance(exc, RedisPortError):
        return True
    # A timeout anywhere in the chain, not only at its ends: the client's is
    # ConnectError <- TimeoutError <- CancelledError, and a silent peer was probed
    # for a second whole timeout.
    inner: BaseException = exc
    for _ in range(16):  # a chain is a few links; bounded against a cycle
        if isinstance(inner, TimeoutError):
            return False
        if inner.__cause__ is None:
            break
        inner = inner.__cause__
    if isinstance(inner, OSError) and inner.errno:
        return False
    return await resp_answer(host, port, timeout) in (RespAnswer.RESP, RespAnswer.REDIS)


class HelloWatch:
    """Watches one binary hello to host:port for a Redis server.

    `wait(hello)` awaits the hello; one not answered within REDIS_PROBE_AFTER gets a
    RESP probe on a second connection: a Redis server answers that at once while it
    never answers the hello, so RedisPortError is raised then instead of after the
    whole timeout. Any other probe outcome leaves the hello waited for as before;
    `answer` keeps it, for the caller's message if the hello then times out.
    """

    def __init__(self, host: str, port: int, timeout: float | None) -> None:
        self.host = host
        self.port = port
        self.timeout = timeout
        self.answer: RespAnswer | None = None  # what the probe learnt, if one finished

    async def wait(self, hello: Awaitable[T]) -> T:
        task = asyncio.ensure_future(hello)
        probe: asyncio.Future[RespAnswer | None] | None = None
        try:
            done, _ = await asyncio.wait({task}, timeout=REDIS_PROBE_AFTER)
            if not done:
                probe = asyncio.ensure_future(resp_answer(self.host, self.port, self.timeout))
                either: list[asyncio.Future[Any]] = [task, probe]
                first, _ = await asyncio.wait(either, return_when=asyncio.FIRST_COMPLETED)
                if task not in first and probe.result() is RespAnswer.REDIS:
                    self.answer = RespAnswer.REDIS
                    raise RedisPortError.redis(host_port(self.host, self.port))
            return await task
        except BaseException:
            task.cancel()
            with contextlib.suppress(BaseException):
                await task
            raise
        finally:
            if probe is not None and not probe.done():
                probe.cancel()
            elif probe is not None and not probe.cancelled():
                self.answer = probe.result()


async def _read_reply_head(reader: asyncio.StreamReader, timeout: float | None, body: int) -> bytes:
    """A reply's first line, and a bulk string's body when it is at most `body` bytes."""
    head = await asyncio.wait_for(reader.readline(), timeout)
    if head.startswith(b"$") and body:
        size = int(head[1:].strip() or b"-1")
        if 0 <= size <= body:
            head += await asyncio.wait_for(reader.readexactly(size + 2), timeout)
    return head


async def _exchange(
    host: str, port: int, timeout: float | None, requests: list[bytes], body: int
) -> list[bytes]:
    """Send each request on one fresh connection, in turn after the previous reply;
    the replies got (fewer when the peer went quiet or closed)."""
    replies: list[bytes] = []
    try:
        reader, writer = await asyncio.wait_for(asyncio.open_connection(host, port), timeout)
    except (OSError, TimeoutError):
        return replies
    try:
        for request in requests:
            writer.write(request)
            reply = await _read_reply_head(reader, timeout, body)
            if not reply:
                break
            replies.append(reply)
    except (OSError, TimeoutError, ValueError, asyncio.IncompleteReadError):
        pass  # ValueError: a line past the reader's limit, or a bad bulk length
    finally:
        writer.close()
    return replies
