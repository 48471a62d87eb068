"""The pieces every Redis command module shares: the session and a step (error
replies: server/_redis_replies.py).

Strategy: a RESP connection's state lives in its `RedisSession` (auth, RESP version,
name, the MULTI queue, watches); every command handler returns a `Step` saying
how it runs (a reply now, ops for the writer and how to shape their results, or a
read run in its turn), so a command runs alike on its own and inside EXEC.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from protocol import ErrorCode, ErrorInfo

from ._session import WatchRef

__all__ = [
    "NOAUTH",
    "NO_LINK",
    "OK",
    "QUEUED",
    "REDIS_VERSION",
    "WATCH_KEY_BYTES",
    "ClientLink",
    "RedisError",
    "RedisSession",
    "Settle",
    "Step",
    "redis_addr",
    "redis_error",
    "run_read",
    "watch_cost",
]

# settle(result, error) of an Async outcome
Settle = Callable[[Any, ErrorInfo | None], None]

REDIS_VERSION = "7.0.0"  # the Redis version whose commands this dialect follows
OK = b"+OK\r\n"
QUEUED = b"+QUEUED\r\n"
NOAUTH = "NOAUTH Authentication required."
WRONGPASS = "WRONGPASS invalid username-password pair or user is disabled."
NOPASS = (
    "ERR AUTH <password> called without any password configured for the default user. "
    "Are you sure your configuration is correct?"
)
HELLO_NOAUTH = (
    "NOAUTH HELLO must be called with the client already authenticated, otherwise the "
    "HELLO AUTH <user> <pass> option can be used to authenticate the client and "
    "select the RESP protocol version at the same time"
)


class RedisError(Exception):
    """A command's error reply; `message` starts with its Redis code."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


def redis_error(message: str) -> ErrorInfo:
    """The ErrorInfo of a Redis error line ("ERR syntax error"): name = its code."""
    return ErrorInfo(int(ErrorCode.INVALID_PARAMS), message.split(" ", 1)[0], message)


class ClientLink:
    """What a session knows of its connection, made by the protocol object that owns
    the transport (server/binary.py) and kept by the session: the addresses and the
    descriptor CLIENT LIST shows, and `close`, which ends the connection as the
    server ends one after a QUIT (binary.py `BinaryProtocol.kill`). The session
    never sees the transport.

    A plain class, made once per connection and never compared or printed: as a
    frozen dataclass its generated methods were 6 exec() compilations at import.
    """

    __slots__ = ("addr", "close", "fd", "laddr")

    def __init__(self, addr: str, laddr: str, fd: int, close: Callable[[], None]) -> None:
        self.addr = addr  # the peer, as Redis prints it: "127.0.0.1:50000", "[::1]:50000"
        self.laddr = laddr  # the local end, the same way
        self.fd = fd
        self.close = close


NO_LINK = ClientLink("", "", -1, lambda: None)  # a session made without a connection (tests)


def redis_addr(sockaddr: Any) -> str:
    """A socket address as Redis 7 prints it in CLIENT LIST (anetFormatAddr): "ip:port",
    an IPv6 ip in brackets; "" when the transport does not know it.

    Example:
        >>> redis_addr(("127.0.0.1", 6379)), redis_addr(("::1", 6379, 0, 0))
        ('127.0.0.1:6379', '[::1]:6379')
    """
    if not isinstance(sockaddr, tuple) or len(sockaddr) < 2:
        return ""
    host, port = sockaddr[0], sockaddr[1]
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


class RedisSession:
    """One RESP connection's state: auth, RESP version, name, MULTI queue, watches."""

    __slots__ = (
        "authenticated",
        "closed",
        "cmd",
        "created",
        "dirty",
        "id",
        "killed",
        "last",
        "lib_name",
        "lib_ver",
        "link",
        "multi",
        "multi_bytes",
        "name",
        "no_evict",
        "no_touch",
        "proto",
        "watch_bytes",
        "watched",
        "watches",
    )

    def __init__(self, client_id: int, authenticated: bool, link: ClientLink = NO_LINK) -> None:
        self.id = client_id
        self.authenticated = authenticated
        self.link = link
        self.killed = False  # by CLIENT KILL: nothing it sends from now on runs
        self.proto = 2
        self.name = b""
        self.lib_name = b""
        self.lib_ver = b""
        self.multi: list[list[bytes]] | None = None  # queued argvs while in MULTI
        self.multi_bytes = 0  # what `multi` holds (queued_bytes), reset by MULTI
        self.dirty = False  # a queued command was refused: EXEC answers EXECABORT
        self.watches: list[WatchRef] = []  # by WATCH, in order (server/_session.py)
        # the keys of `watches`: WATCH of a key already watched adds nothing, as in Redis
        # (watchForKey); 100,000 WATCHes of one key held 100,000 watches (+26 MB) and
        # the EXEC after them joined their keys in 221 s on the writer's thread
        self.watched: set[bytes] = set()
        self.watch_bytes = 0  # what `watched` costs (watch_cost), bounded by --max-multi-bytes
        self.closed = False  # the connection ended: a WATCH still queued takes nothing
        self.created = self.last = time.monotonic()  # connected; last command (CLIENT LIST)
        self.no_evict = self.no_touch = False  # CLIENT NO-EVICT / NO-TOUCH: flags only
        self.cmd = "NULL"  # the latest command's name, as CLIENT LIST's cmd= ("client|list")

    def describe(self) -> str:
        """This connection's CLIENT LIST / CLIENT INFO line (no newline): Redis 7.2's
        fields that this server can fill truthfully, in Redis's order and spelling.
        Missing: the buffer and memory figures (qbuf ... tot-mem) and events."""
        now = time.monotonic()
        multi = -1 if self.multi is None else len(self.multi)
        flags = "x" * (self.multi is not None) + "e" * self.no_evict + "T" * self.no_touch
        return (
            f"id={self.id} addr={self.link.addr} laddr={self.link.laddr} fd={self.link.fd} "
            f"name={self.name.decode('latin-1')} age={int(now - self.created)} "
            f"idle={int(now - self.last)} flags={flags or 'N'} db=0 "
            f"sub=0 psub=0 ssub=0 multi={multi} cmd={self.cmd} user=default redir=-1 "
            f"resp={self.proto} lib-name={self.lib_name.decode('latin-1')} "
            f"lib-ver={self.lib_ver.decode('latin-1')}"
        )

    def unwatched(self, keys: list[bytes]) -> list[bytes]:
        """The keys of ``keys`` this connection does not watch yet, once each."""
        return [k for k in dict.fromkeys(keys) if k not in self.watched]

    def watch_keys(self, new: list[bytes]) -> tuple[WatchRef, list[bytes]] | None:
        """A new watch for ``new`` (from `unwatched`; the engine watch is taken later,
        server/_session.py); None when it is empty."""
        if not new:
            return None
        self.watched.update(new)
        self.watch_bytes += watch_cost(new)
        ref = WatchRef()
        self.watches.append(ref)
        return ref, new

    def take_watches(self) -> list[WatchRef]:
        """Every watch, in order, handed to the caller (EXEC), which releases them;
        the connection watches nothing from now on."""
        watches, self.watches, self.watched = self.watches, [], set()
        self.watch_bytes = 0
        return watches

    def unwatch(self) -> None:
        """Release every watch (UNWATCH, EXEC, DISCARD, RESET, the connection's end)."""
        for w in self.take_watches():
            w.release()

    def kill(self) -> None:
        """CLIENT KILL: log out (the dispatcher's fast path needs a login; its general
        path drops a killed session's commands) and close the connection once the
        replies already due are out (the one running now included)."""
        self.killed = True
        self.authenticated = False
        self.link.close()

    def close(self) -> None:
        """The connection ended: nothing of it may stay counted."""
        self.closed = True
        self.unwatch()
        self.multi = None


WATCH_KEY_BYTES = 160
"""What one watched key costs besides its bytes: the session's set entry and the
engine's counters and watch (1,000,000 WATCHed keys took 175 MB of RSS)."""


def watch_cost(keys: list[bytes]) -> int:
    """The bytes watching ``keys`` counts against --max-multi-bytes."""
    return sum(map(len, keys)) + WATCH_KEY_BYTES * len(keys)


class Step:
    """One command's execution: `reply` now, or `ops` then `shape(results)`, or `read()`."""

    __slots__ = ("nbytes", "ops", "read", "reply", "shape")

    def __init__(
        self,
        reply: bytes | None = None,
        ops: list[Any] | None = None,
        shape: Callable[[list[Any]], bytes] | None = None,
        read: Callable[[], bytes] | None = None,
        nbytes: int = 0,
    ) -> None:
        self.reply = reply
        self.ops = ops
        self.shape = shape
        self.read = read
        self.nbytes = nbytes


def run_read(fn: Callable[[], bytes]) -> bytes:
    return fn()
