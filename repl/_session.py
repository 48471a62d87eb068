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
import contextlib
import os
import sys
import time
from collections.abc import Awaitable, Callable, Iterable, Sequence
from dataclasses import replace
from typing import TYPE_CHECKING, Any, TextIO

from client import (
    AuthFailedError,
    AuthRequiredError,
    ClientError,
    ConnectError,
    ConnectionLostError,
    EndpointClosedError,
    InterfaceError,
    RedisPortError,
    Refusals,
    ServerError,
    UnsupportedCommandError,
    answers_http,
    answers_resp_after,
    connect,
    connect_resp,
)
from protocol import ProtocolError

from ._context import DEFAULT_PORT, CommandError, ConnectOptions, error_text
from ._format import Reply, terminal_safe
from ._parse import ParseError, tokenize
from ._table import CLI, SHELL, Command, bind, lookup, unknown

if TYPE_CHECKING:
    from ._complete import KeyCache

__all__ = ["Session", "describe"]

REFRESH_EVERY = 5.0  # seconds between key counts for the toolbar when nothing was written
REDIS_HINT = "add --redis (or use a redis:// URL) to talk to it"


_AUTH_HINT = {
    CLI: "pass --auth TOKEN or set BITCASK_AUTH (redis://: the URL's password)",
    SHELL: "type auth TOKEN (or start the shell with --auth TOKEN / BITCASK_AUTH, or a"
    " redis:// URL with a password)",
}


def describe(exc: BaseException, options: ConnectOptions, scope: str = CLI) -> str:
    """The one line printed for a failed command (without the `(error) ` prefix).

    Bytes that are not UTF-8 (carried as surrogates) are shown as `\\xNN`, never as
    `\\udcNN`, and so are control characters: an error's text can come from the
    endpoint, and a terminal must not run escape sequences a server sent. `scope`
    ("cli" or "shell") picks hints that name that front end's way of doing things (a
    flag, or a shell command).
    """
    return terminal_safe(_describe(exc, options, scope))


def _describe(exc: BaseException, options: ConnectOptions, scope: str) -> str:
    if isinstance(exc, AuthRequiredError):
        return f"AUTH_REQUIRED {options.address} requires a token: {_AUTH_HINT[scope]}"
    if isinstance(exc, AuthFailedError):
        hint = "auth TOKEN" if scope == SHELL else "--auth / BITCASK_AUTH"
        return f"AUTH_FAILED {options.address} refused the token (check {hint})"
    if isinstance(exc, ServerError):
        return error_text(exc)
    if isinstance(exc, UnsupportedCommandError | EndpointClosedError):
        return str(exc)  # names the command and the endpoint already
    if isinstance(exc, ParseError):
        return f"{exc} (at column {exc.column + 1})"
    if isinstance(exc, CommandError):
        return str(exc)
    if isinstance(exc, TimeoutError):
        return f"no reply from {options.address} within {options.timeout:g} s"
    if isinstance(exc, ConnectError):
        return f"cannot connect to {options.address}: {_reason(exc, options)}"
    if isinstance(exc, ConnectionLostError) and options.redis and _cause(exc, ProtocolError):
        # a redis:// URL to an HTTP port (or any non-Redis server): it answered, in
        # something else; "lost during the call" sent the user looking at the network
        return (
            f"{options.address} does not speak the Redis protocol ({_innermost(exc)}): "
            f"is it an HTTP port? bitcask-server speaks Redis on its --port (default "
            f"{DEFAULT_PORT}), not on --http-port"
        )
    if isinstance(exc, ConnectionLostError):
        return (
            f"connection to {options.address} lost during the call (it may or may not have "
            "been applied); the next command reconnects"
        )
    if isinstance(exc, OSError):
        return f"{options.address}: {_reason(exc, options)}"
    return f"{type(exc).__name__}: {exc}"


def _reason(exc: BaseException, options: ConnectOptions) -> str:
    """Why connecting failed, from the innermost cause.

    A timeout is the reason wherever it is in the chain: asyncio's own timeout is
    caused by the cancellation it made, which says nothing to a user.
    """
    while exc.__cause__ is not None and exc.__cause__ is not exc:
        if isinstance(exc, TimeoutError):
            break
        exc = exc.__cause__
    if isinstance(exc, ConnectionRefusedError):
        return "connection refused (is the server running?)"
    if isinstance(exc, TimeoutError):
        return f"no answer within {options.timeout:g} s"
    if isinstance(exc, OSError) and exc.errno and exc.errno > 0:
        # the system's words ("no route to host": an ARP that failed across a
        # partition), not asyncio's "Connect call failed ('10.0.0.2', 7379)"
        text = os.strerror(exc.errno)
        return text[:1].lower() + text[1:]
    if isinstance(exc, OSError) and exc.strerror:
        return exc.strerror
    return str(exc) or type(exc).__name__


def _innermost(exc: BaseException) -> BaseException:
    """The first cause of `exc`'s chain (what actually went wrong)."""
    seen: set[int] = set()
    while exc.__cause__ is not None and id(exc) not in seen:
        seen.add(id(exc))
        exc = exc.__cause__
    return exc


def _cause(exc: BaseException, kind: type[BaseException]) -> bool:
    """Whether `kind` is anywhere in the chain of causes of `exc`."""
    seen: set[int] = set()
    cur: BaseException | None = exc
    while cur is not None and id(cur) not in seen:
        if isinstance(cur, kind):
            return True
        seen.add(id(cur))
        cur = cur.__cause__ or cur.__context__
    return False


def open_client(options: ConnectOptions, refusals: Refusals) -> Awaitable[Any]:
    """Connect the backend the options name: the binary `client.Client`, or the
    `client.RespClient` for a Redis-protocol endpoint. Both have the same call
    methods, so the commands never ask which one they drive."""
    if options.redis:
        return connect_resp(
            options.host,
            options.port,
            password=options.auth,
            username=options.username,
            db=options.db,
            timeout=options.timeout,
            refusals=refusals,
        )
    # the token's own bytes: argv, the environment and a typed `auth` line decode
    # with surrogateescape, so a token that is not UTF-8 stays what the server holds
    # (its --auth is read the same way) instead of a UnicodeEncodeError in the client
    token = None if options.auth is None else os.fsencode(options.auth)
    return connect(options.host, options.port, auth=token, timeout=options.timeout)


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
        self._connecting = asyncio.Lock()
        self._connect_time = 0.0
        self._used = False  # the running command asked for the client
        self._drops = 0  # connections dropped so far (a call's client may be closed under it)
        # Redis-protocol commands this endpoint closed the connection on (twemproxy
        # does so for the ones it does not proxy), counted across reconnects
        self._refusals = Refusals()
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
            # one connect at a time: pipelined commands (piped mode) that all find no
            # connection wait for the first one's, in order, instead of each opening one
            async with self._connecting:
                if self._client is None:
                    await self._connect()
        return self._client

    async def _connect(self) -> None:
        start = time.perf_counter()
        opening = asyncio.wait_for(
            open_client(self.options, self._refusals), self.options.timeout + 1.0
        )
        host, port, timeout = self.options.host, self.options.port, self.options.timeout
        try:
            self._client = await opening
        except ServerError:  # AUTH_FAILED and friends: the server's own words
            raise
        except (ClientError, OSError, TimeoutError) as exc:
            if (
                isinstance(exc, RedisPortError) and exc.redis_server
            ):  # at once, not after the timeout
                raise CommandError(
                    f"cannot connect to {self.options.address}: it is a Redis server (it "
                    f"answers the Redis protocol, not bitcask's): {REDIS_HINT}"
                ) from exc
            reason = _reason(exc, self.options)
            if (
                _cause(exc, ProtocolError)
                and not self.options.redis
                and await answers_http(host, port, timeout)
            ):
                reason = (
                    "that port answered HTTP (it is the HTTP port, for health and "
                    f"metrics); the binary port is --port (default {DEFAULT_PORT}), "
                    "the HTTP one --http-port"
                )
            elif not self.options.redis and await answers_resp_after(exc, host, port, timeout):
                reason += f"; it answers the Redis protocol: {REDIS_HINT}"
            raise CommandError(f"cannot connect to {self.options.address}: {reason}") from exc
        finally:
            self._connect_time += time.perf_counter() - start
        info = getattr(self._client, "server_info", None) or {}
        self.server_version = info.get("version")

    def in_doubt(self, cmd: Command) -> str | None:
        """After `cmd` was interrupted (Ctrl-C): what may have happened anyway, when it
        changes the store and reached the server; None for a read (nothing to say) and
        for the tools, which say how far they got in their own words. A command that
        never asked for the server (`merge DIR`, offline) left nothing there: the
        shell, connected all along, said of an interrupted `merge DIR` that "the merge
        goes on in HOST:PORT (the server finishes it)"."""
        if not self.connected or not self._used or cmd.idempotent:
            return None
        if cmd.group not in ("keys", "server"):
            return None
        address = self.options.address
        if cmd.name == "merge":
            return f"the merge goes on in {address} (the server finishes it)"
        return (
            f"{cmd.name} was sent to {address} and may or may not have been applied; "
            "check before running it again"
        )

    def emit(self, reply: Reply) -> None:
        self._emit(reply)

    def remember_keys(self, keys: Iterable[bytes]) -> None:
        if self.cache is not None:
            self.cache.add(keys)

    async def authenticate(self, token: str) -> None:
        """`auth TOKEN`: reconnect with the token; on refusal the old one stays in use."""
        previous = self.options
        await self.drop()
        self.options = replace(self.options, auth=token)
        try:
            await self.client()
        except BaseException:
            await self.drop()
            self.options = previous
            raise

    # -- connection -------------------------------------------------------------

    @property
    def connected(self) -> bool:
        """A client exists and its connection is open (as far as anyone knows yet)."""
        return self._client is not None and bool(self._client.is_connected)

    async def drop(self) -> None:
        """Forget the connection (closing it if still open); the next call reconnects."""
        client, self._client = self._client, None
        if client is not None:
            self._drops += 1
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
            raise unknown(self.table, tokens[0].text, self.scope)
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
        drops = self._drops
        start = time.perf_counter()
        try:
            reply: Reply | None = await cmd.run(self, args)
        except InterfaceError as exc:
            if self._drops == drops:  # a misuse, not a lost connection
                raise
            # another command found the connection broken and closed the client while
            # this one waited to be sent (piped mode): it never went out
            if not cmd.idempotent:
                raise CommandError(
                    f"not sent: the connection to {self.options.address} was lost before "
                    "this command went out; the next command reconnects"
                ) from exc
            start = time.perf_counter()
            reply = await cmd.run(self, args)
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
            version = (getattr(self._client, "server_info", None) or {}).get("version")
            self.server_version = version or self.server_version
        except UnsupportedCommandError:  # an endpoint without stats/INFO: nothing to show
            self.key_count = None
        except EndpointClosedError:  # twemproxy closes on INFO: learned; connect again
            await self.drop()
            self.key_count = None
            with contextlib.suppress(ClientError, CommandError, OSError, TimeoutError):
                await self.client()
        except (ClientError, OSError, TimeoutError):
            await self.drop()
            self.key_count = None
