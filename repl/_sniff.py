"""What else answers on a port that did not answer bitcask's binary hello.

Strategy: asked only when the binary handshake went wrong (garbage back, or nothing
yet), on a fresh connection of its own, bounded by the options' timeout; any failure
means "cannot tell", never an error of its own. The answers feed the one line a user
reads: "that is the HTTP port", "that is a Redis server: add --redis".

A redis-server never answers the hello: its inline reader looks for a newline with
strchr(), which stops at the frame's leading zero byte, so the frame sits in its
buffer and the client waits out its whole timeout. It does answer a RESP INFO at once;
a bitcask-server answers one too (the same port speaks RESP), but its INFO names
`bitcask_version`, so a reply without it is a Redis server and not a slow bitcask.
"""

from __future__ import annotations

import asyncio
import contextlib
import enum
from collections.abc import Awaitable
from typing import Any, TypeVar

from ._context import ConnectOptions

__all__ = ["Dialect", "RedisServerError", "Sniffer", "answers_http", "resp_dialect"]

T = TypeVar("T")

# seconds a binary hello may go unanswered before the port is asked (in RESP) whether
# it is a Redis server: a local bitcask-server answers in about a millisecond
REDIS_PROBE_AFTER = 0.25

# PING, then `INFO server`, in RESP, one after the other: every Redis-protocol server
# answers PING (or refuses it in RESP: NOAUTH); twemproxy answers PING and closes the
# connection on INFO, which it does not proxy (on both at once: it closes, unanswered)
_PING = b"*1\r\n$4\r\nPING\r\n"
_INFO = b"*2\r\n$4\r\nINFO\r\n$6\r\nserver\r\n"
_REPLY_TYPES = frozenset(b"+-:$*_#,%~>!=(|")  # a RESP2/RESP3 reply's first byte
_MAX_INFO = 1 << 16  # INFO server is ~1 KiB; more than this is not one


class Dialect(enum.Enum):
    """What a RESP probe learnt about an endpoint."""

    REDIS = "redis"  # a Redis server (INFO with redis_version, no bitcask_version)
    RESP = "resp"  # a RESP answer, no INFO to tell (NOAUTH; twemproxy): not sure
    BITCASK = "bitcask"  # a bitcask-server (its INFO names bitcask_version)


async def _read_reply_head(reader: asyncio.StreamReader, timeout: float, body: int) -> bytes:
    """A reply's first line, and a bulk string's body when it is at most `body` bytes."""
    head = await asyncio.wait_for(reader.readline(), timeout)
    if head.startswith(b"$") and body:
        size = int(head[1:].strip() or b"-1")
        if 0 <= size <= body:
            head += await asyncio.wait_for(reader.readexactly(size + 2), timeout)
    return head


async def _exchange(options: ConnectOptions, requests: list[bytes], body: int) -> list[bytes]:
    """Send each request on one fresh connection, in turn after the previous reply;
    the replies got (fewer when the peer went quiet or closed)."""
    replies: list[bytes] = []
    try:
        reader, writer = await asyncio.wait_for(
            asyncio.open_connection(options.host, options.port), options.timeout
        )
    except (OSError, TimeoutError):
        return replies
    try:
        for request in requests:
            writer.write(request)
            reply = await _read_reply_head(reader, options.timeout, body)
            if not reply:
                break
            replies.append(reply)
    except (OSError, TimeoutError, ValueError, asyncio.IncompleteReadError):
        pass  # ValueError: a line past the reader's limit, or a bad bulk length
    finally:
        writer.close()
    return replies


async def answers_http(options: ConnectOptions) -> bool:
    """Whether host:port speaks HTTP: asked after the binary handshake got garbage.

    One short HEAD request on a fresh connection, bounded by the timeout; any
    failure means "not HTTP as far as we can tell".
    """
    request = f"HEAD / HTTP/1.0\r\nHost: {options.host}\r\n\r\n".encode("ascii")
    return any(r.startswith(b"HTTP/") for r in await _exchange(options, [request], 0))


async def resp_dialect(options: ConnectOptions) -> Dialect | None:
    """Whether host:port answers RESP, and as what; None: no RESP answer (or none yet).

    Example:
        >>> asyncio.run(resp_dialect(ConnectOptions(port=1)))  # nothing listens on 1
    """
    replies = await _exchange(options, [_PING, _INFO], _MAX_INFO)
    if not replies or replies[0][0] not in _REPLY_TYPES:
        return None
    reply = replies[-1]  # INFO's, or PING's when the endpoint closed on INFO
    if b"bitcask_version:" in reply:
        return Dialect.BITCASK
    if b"redis_version:" in reply:
        return Dialect.REDIS
    return Dialect.RESP


class RedisServerError(Exception):
    """The port answered the RESP probe as a Redis server, the binary hello not at all."""


class Sniffer:
    """Watches one binary connect to `options`' host:port for a Redis server.

    `connect(opening)` awaits the connect; one that is not done within
    REDIS_PROBE_AFTER gets a RESP probe on a second connection: a Redis server answers
    that at once while it never answers the hello, so RedisServerError is raised then
    instead of after the whole timeout. A bitcask-server that is merely slow says so
    in its reply, and the hello is waited for as before. After a failure,
    `speaks_resp(exc)` says whether the port answers RESP at all (NOAUTH, twemproxy).
    """

    def __init__(self, options: ConnectOptions) -> None:
        self.options = options
        self.dialect: Dialect | None = None  # what the probe learnt, if one ran
        self._probed = False  # a probe was started (finished or not)

    async def connect(self, opening: Awaitable[T]) -> T:
        task = asyncio.ensure_future(opening)
        probe: asyncio.Future[Dialect | None] | None = None
        try:
            done, _ = await asyncio.wait({task}, timeout=REDIS_PROBE_AFTER)
            if not done:
                probe = asyncio.ensure_future(resp_dialect(self.options))
                self._probed = True
                either: list[asyncio.Future[Any]] = [task, probe]
                first, _ = await asyncio.wait(either, return_when=asyncio.FIRST_COMPLETED)
                if task not in first and probe.result() is Dialect.REDIS:
                    self.dialect = Dialect.REDIS
                    raise RedisServerError(self.options.address)
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
                self.dialect = probe.result()

    async def speaks_resp(self, exc: BaseException) -> bool:
        """After a failed hello: whether the port answers the Redis protocol (the probe
        `connect` ran, or one now when the endpoint closed on the hello, as twemproxy
        does). Not asked again after a probe that did not finish (a silent host would
        cost a second timeout), after a timeout, nor when no connection was made at all
        (refused, unreachable): there is no peer to ask."""
        inner = exc
        while inner.__cause__ is not None and inner.__cause__ is not inner:
            inner = inner.__cause__
        if self._probed or isinstance(exc, TimeoutError) or isinstance(inner, TimeoutError):
            return self.dialect in (Dialect.RESP, Dialect.REDIS)
        if isinstance(inner, OSError) and inner.errno:
            return False
        if self.dialect is None:
            self._probed = True
            self.dialect = await resp_dialect(self.options)
        return self.dialect in (Dialect.RESP, Dialect.REDIS)
