"""What a command's implementation may use: the connection, the output, the options.

The command table (`_commands.py`) calls each command as `await run(ctx, args)`.
`Context` is the narrow interface both front ends provide (`shell.py` for the
interactive shell, `cli.py` for one-shot commands), so a command never knows which
one it runs under except through `ctx.interactive`.
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol, TextIO

from protocol.address import host_port

if TYPE_CHECKING:
    from ._format import Reply

__all__ = [
    "CommandError",
    "ConnectOptions",
    "Context",
    "UsageError",
    "dumb_terminal",
    "error_text",
    "plain_text",
]

DEFAULT_HOST = "127.0.0.1"
DEFAULT_PORT = 7379
DEFAULT_HTTP_PORT = 7380


class CommandError(Exception):
    """A command failed in a way the user should read as one line.

    `exit_code` is what `bitcask` exits with (2: error; 1: "no", e.g. unhealthy).
    """

    def __init__(self, message: str, exit_code: int = 2) -> None:
        super().__init__(message)
        self.exit_code = exit_code


class UsageError(CommandError):
    """Wrong arguments for a command; the message includes its usage line."""


@dataclass(frozen=True, slots=True)
class ConnectOptions:
    """Where the server is and how to talk to it (flags > BITCASK_* env > defaults)."""

    host: str = DEFAULT_HOST
    port: int = DEFAULT_PORT
    http_port: int = DEFAULT_HTTP_PORT
    # --http-port / BITCASK_HTTP_PORT given: health asks that port. Otherwise health
    # asks the server on `port` which HTTP port it bound (its stats say), and only
    # for the default pair falls back to 7380 when it cannot ask
    http_port_given: bool = False
    auth: str | None = field(default=None, repr=False)  # a secret: not in tracebacks/logs
    timeout: float = 5.0
    # the Redis protocol (redis:// or --redis) instead of the binary one: any
    # Redis-protocol endpoint, with AUTH [username] password and SELECT db
    redis: bool = False
    username: str | None = None
    db: int = 0

    @property
    def address(self) -> str:
        return host_port(self.host, self.port)

    @property
    def url(self) -> str:
        if self.redis:
            return f"redis://{self.address}" + (f"/{self.db}" if self.db else "")
        return f"bitcask://{self.address}"

    @property
    def health_url(self) -> str:
        return f"http://{host_port(self.host, self.http_port)}/health"


class Context(Protocol):
    """Everything a command implementation may touch."""

    options: ConnectOptions
    scope: str  # "shell" or "cli": which rows of the command table are offered
    interactive: bool  # a person at a terminal (progress bars, live views, pager)
    stderr: TextIO

    async def client(self) -> Any:
        """A connected `client.Client`, connecting (again) if needed."""
        ...

    def emit(self, reply: Reply) -> None:
        """Print a reply now (for commands that stream: stat, latency)."""
        ...

    def remember_keys(self, keys: Iterable[bytes]) -> None:
        """Keys seen in a reply, offered later by key completion."""
        ...

    async def authenticate(self, token: str) -> None:
        """Use `token` from now on: reconnect with it (raises if the server refuses it)."""
        ...


def error_text(exc: BaseException) -> str:
    """`KEY_TOO_LARGE key is 70000 bytes`: a server error's code name and message once.

    Works on anything with the client's `ServerError` attributes (`name`, `message`);
    other exceptions give `TypeName: text`.
    """
    name = getattr(exc, "name", None)
    message = getattr(exc, "message", None)
    if isinstance(name, str) and isinstance(message, str):
        return f"{name} {message}".strip()
    return f"{type(exc).__name__}: {exc}"


def dumb_terminal() -> bool:
    """TERM names a terminal that takes no escape sequences (`dumb`, `unknown`: Emacs's
    shell, a serial console, some CI log viewers), read as prompt_toolkit reads it:
    nothing is drawn there (no bar, no colour, no cursor movement), text only."""
    return os.environ.get("TERM", "") in ("dumb", "unknown")


def plain_text() -> bool:
    """Replies go out as their text alone (NO_COLOR, or a dumb terminal): prompt_toolkit's
    printer wraps even uncoloured text in escape sequences (`\\x1b[0m`, `\\x1b[?7h`)."""
    return env_flag("NO_COLOR") or dumb_terminal()


def env_flag(name: str) -> bool:
    """True when an environment variable is set to a non-empty value (NO_COLOR rule)."""
    return bool(os.environ.get(name))
