"""One connection to a server and the execution of command lines against it.

Strategy: `Session` is the `Context` both front ends hand to commands. It connects
lazily (the first command that needs the server), and when a call fails because
the connection is gone it drops the client, so the next command connects afresh:
the shell stays open across server restarts. It also keeps what the toolbar shows
(address, server version, key count, last round-trip time).

Errors are turned into one line by `describe()`, by type and code, never by message
text: server errors show their stable code name (`KEY_TOO_LARGE ...`).
"""

from __future__ import annotations

import asyncio
import sys
import time
from collections.abc import Callable, Iterable, Sequence
from typing import Any, TextIO

from client import ClientError, ConnectError, ConnectionLostError, ServerError, connect

from ._complete import KeyCache
from ._context import CommandError, ConnectOptions
from ._format import Reply
from ._parse import ParseError, tokenize
from ._table import Command, bind, lookup

__all__ = ["Session", "describe"]

REFRESH_EVERY = 5.0  # seconds between key counts for the toolbar when nothing was written


def describe(exc: BaseException, options: ConnectOptions) -> str:
    """The one line printed for a failed command (without the `(error) ` prefix)."""
    if isinstance(exc, ServerError):
        name = getattr(exc, "name", "") or type(exc).__name__
        message = getattr(exc, "message", None)
        message = str(exc) if message is None else message
        return f"{name} {message}".strip()
    if isinstance(exc, ParseError):
        return f"{exc} (at column {exc.column + 1})"
    if isinstance(exc, CommandError):
        return str(exc)
    if isinstance(exc, TimeoutError):
        return f"no reply from {options.address} within {options.timeout:g} s"
    if isinstance(exc, ConnectError):
        return f"cannot connect to {options.address}: {_reason(exc, options)}"
    if isinstance(exc, ConnectionLostError):
        return (
            f"connection to {options.address} lost during the call (it may or may not have "
            "been applied); the next command reconnects"
        )
    if isinstance(exc, OSError):
        return f"{options.address}: {_reason(exc, options)}"
    return f"{type(exc).__name__}: {exc}"


def _reason(exc: BaseException, options: ConnectOptions) -> str:
    """Why connecting failed, from the innermost cause."""
    while exc.__cause__ is not None and exc.__cause__ is not exc:
        exc = exc.__cause__
    if isinstance(exc, ConnectionRefusedError):
        return "connection refused (is the server running?)"
    if isinstance(exc, TimeoutError):
        return f"no answer within {options.timeout:g} s"
    if isinstance(exc, OSError) and exc.strerror:
        return exc.strerror
    return str(exc) or type(exc).__name__


class Session:
    """A lazily connected client plus the state the shell displays.

    Args:
        options: where to connect.
        table: the command table; scope: "shell" or "cli".
        interactive: a person at a terminal.
        emit: prints a reply (used by streaming commands).
        stderr: where progress bars and summaries go.
        cache: keys seen in replies (for completion); None to not keep them.
    """

    def __init__(
        self,
        options: ConnectOptions,
        table: Sequence[Command],
        scope: str,
        *,
        interactive: bool,
        emit: Callable[[Reply], None],
        stderr: TextIO = sys.stderr,
        cache: KeyCache | None = None,
    ) -> None:
        self.options = options
        self.table = table
        self.scope = scope
        self.interactive = interactive
        self.stderr = stderr
        self._emit = emit
        self.cache = cache
        self._client: Any | None = None
        self._connect_time = 0.0
        self._used = False  # the running command asked for the client
        self._refreshed = 0.0  # monotonic time of the last key count
        # what the toolbar shows
        self.server_version: str | None = None
        self.key_count: int | None = None
        self.last_rtt: float | None = None

    # -- Context ----------------------------------------------------------------

    async def client(self) -> Any:
        self._used = True
        if self._client is not None and self._client.closed:
            await self.drop()
        if self._client is None:
            start = time.perf_counter()
            try:
                self._client = await asyncio.wait_for(
                    connect(
                        self.options.host,
                        self.options.port,
                        auth=self.options.auth,
                        timeout=self.options.timeout,
                    ),
                    self.options.timeout + 1.0,
                )
            except ServerError:  # AUTH_FAILED and friends: the server's own words
                raise
            except (ClientError, OSError, TimeoutError) as exc:
                raise CommandError(
                    f"cannot connect to {self.options.address}: {_reason(exc, self.options)}"
                ) from exc
            finally:
                self._connect_time += time.perf_counter() - start
            info = getattr(self._client, "server_info", None) or {}
            self.server_version = info.get("version")
        return self._client

    def emit(self, reply: Reply) -> None:
        self._emit(reply)

    def remember_keys(self, keys: Iterable[bytes]) -> None:
        if self.cache is not None:
            self.cache.add(keys)

    # -- connection -------------------------------------------------------------

    @property
    def connected(self) -> bool:
        """A client exists and its connection is open (as far as anyone knows yet)."""
        return self._client is not None and bool(self._client.is_connected)

    async def drop(self) -> None:
        """Forget the connection (closing it if still open); the next call reconnects."""
        client, self._client = self._client, None
        if client is not None:
            try:
                await asyncio.wait_for(client.close(), 1.0)
            except Exception:  # it is already broken; nothing more to report
                pass

    async def close(self) -> None:
        await self.drop()

    # -- execution --------------------------------------------------------------

    def parse(self, line: str) -> tuple[Command, dict[str, Any]]:
        """The command and typed arguments of a line.

        Raises:
            ParseError: unbalanced quote or bad escape.
            CommandError: unknown command or wrong arguments.
        """
        tokens = tokenize(line)
        if not tokens:
            raise CommandError("empty command")
        cmd = lookup(self.table, tokens[0].str_value, self.scope)
        if cmd is None:
            raise CommandError(f"unknown command '{tokens[0].text}' (try: help)")
        return cmd, bind(cmd, [t.value for t in tokens[1:]])

    async def execute(self, cmd: Command, args: dict[str, Any]) -> Reply | None:
        """Run one command.

        A connection found broken is dropped; an idempotent command that found a
        stale connection (one opened by an earlier command) is sent once more on a
        fresh one, so after a server restart `get` just works. Other commands report
        the loss and the next command reconnects.
        """
        self._connect_time = 0.0
        self._used = False
        stale = self._client is not None
        start = time.perf_counter()
        try:
            reply: Reply | None = await cmd.run(self, args)
        except (ConnectionLostError, ConnectionError):
            await self.drop()
            if not (stale and cmd.idempotent):
                raise
            start = time.perf_counter()
            reply = await cmd.run(self, args)
        elapsed = time.perf_counter() - start - self._connect_time
        if self._used and self._client is not None:  # `help` is not a round trip
            self.last_rtt = elapsed
        return reply

    async def refresh(self, *, force: bool = False) -> None:
        """Update the key count shown in the toolbar (quietly; it is only a display).

        Asks the server only when forced (after a write) or every REFRESH_EVERY
        seconds, so the toolbar does not double the requests a session makes.
        """
        if self._client is None:
            self.key_count = None
            return
        now = time.monotonic()
        if not force and self.key_count is not None and now - self._refreshed < REFRESH_EVERY:
            return
        self._refreshed = now
        try:
            stats = await asyncio.wait_for(self._client.stats(), self.options.timeout)
            keys = stats.get("keys")
            self.key_count = keys if isinstance(keys, int) else None
        except (ClientError, OSError, TimeoutError):
            await self.drop()
            self.key_count = None
