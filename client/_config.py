"""Client configuration: one frozen dataclass, validated once, plus URL parsing.

`connect()`, `Pool` and `connect_sharded()` build a `ClientConfig` from their
keyword arguments (or a `bitcask://` URL) with `make_config` and pass it down;
nothing reads module-level settings.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qs, unquote, urlsplit

from client.errors import InterfaceError
from protocol import DEFAULT_MAX_FRAME
from protocol.address import redact_url

__all__ = ["DEFAULT_PORT", "ClientConfig", "Limits", "make_config", "parse_url"]

DEFAULT_PORT = 7379
DEFAULT_TCP_KEEPALIVE = 60  # seconds: a vanished server is noticed within 2 minutes


@dataclass(frozen=True, slots=True)
class Limits:
    """The server's limits as announced by hello (defaults until then)."""

    max_key_size: int = 64 * 1024
    max_value_size: int = 64 * 1024 * 1024
    max_frame: int = DEFAULT_MAX_FRAME
    max_batch: int = 1_000_000

    @classmethod
    def from_hello(cls, limits: Any) -> Limits:
        """Read `hello.limits`, keeping the default for anything missing or malformed."""
        if not isinstance(limits, dict):
            return cls()
        values: dict[str, int] = {}
        for name in ("max_key_size", "max_value_size", "max_frame", "max_batch"):
            v = limits.get(name)
            if type(v) is int and v > 0:
                values[name] = v
        return cls(**values)


@dataclass(frozen=True, slots=True)
class ClientConfig:
    """Everything a `Client` needs to (re)connect and make calls.

    Attributes:
        host: server address (default 127.0.0.1).
        port: binary protocol port (default 7379).
        auth: the server's token, sent in hello; None when the server has none.
        timeout: default per-call timeout in seconds, also bounding each connect
            attempt (TCP connect + hello); None waits forever.
        reconnect_attempts: connection attempts after a loss before a call fails
            with ConnectError (each later call starts a new round).
        backoff_base: first backoff delay in seconds; doubles per attempt.
        backoff_max: cap of one backoff delay.
        retry_idempotent: re-send idempotent calls (get, exists, mget, scan, ...)
            that were in flight when the connection broke, once, after reconnecting.
        client_name: sent in hello, shows up in server logs.
        tcp_keepalive: seconds of silence before the kernel probes the server
            (SO_KEEPALIVE; dropped after 3 probes a third of that apart); 0 turns
            it off. It is what ends a call without a timeout (timeout=None, or a
            long snapshot_begin) whose server host vanished after taking the request.
    """

    host: str = "127.0.0.1"
    port: int = DEFAULT_PORT
    auth: str | bytes | None = field(default=None, repr=False)  # a secret: not in logs
    timeout: float | None = 5.0
    reconnect_attempts: int = 5
    backoff_base: float = 0.05
    backoff_max: float = 2.0
    retry_idempotent: bool = True
    client_name: str = "bitcask-client"
    tcp_keepalive: int = DEFAULT_TCP_KEEPALIVE

    def __post_init__(self) -> None:
        if not isinstance(self.host, str) or not self.host:
            raise InterfaceError(f"host must be a non-empty str, got {self.host!r}")
        if type(self.port) is not int or not 0 < self.port < 65536:
            raise InterfaceError(f"port must be an int in 1..65535, got {self.port!r}")
        if self.auth is not None and not isinstance(self.auth, str | bytes):
            raise InterfaceError("auth must be a str or bytes token")
        if self.timeout is not None and not (
            isinstance(self.timeout, int | float)
            and self.timeout > 0
            and not math.isnan(self.timeout)
        ):
            raise InterfaceError(f"timeout must be a number > 0 or None, got {self.timeout!r}")
        if type(self.reconnect_attempts) is not int or self.reconnect_attempts < 1:
            raise InterfaceError("reconnect_attempts must be an int >= 1")
        if not (0 < self.backoff_base <= self.backoff_max):
            raise InterfaceError("need 0 < backoff_base <= backoff_max")
        if type(self.tcp_keepalive) is not int or not 0 <= self.tcp_keepalive <= 32767:
            raise InterfaceError(
                f"tcp_keepalive must be an int in 0..32767, got {self.tcp_keepalive!r}"
            )


def parse_url(url: str) -> dict[str, Any]:
    """Read `bitcask://[:token@]host[:port][?timeout=seconds]` into config fields.

    Args:
        url: the URL; the token, if any, goes in the password part.

    Returns:
        A dict of ClientConfig fields (host, port, and auth / timeout if given).

    Raises:
        InterfaceError: not a bitcask:// URL, or a bad port or timeout.

    Example:
        >>> parse_url("bitcask://:s3cret@db.local:7400?timeout=2")
        {'host': 'db.local', 'port': 7400, 'auth': 's3cret', 'timeout': 2.0}
    """
    shown = redact_url(url)  # an error message must not print the token (CI logs)
    try:
        parts = urlsplit(url)
    except ValueError as exc:  # `bitcask://[::1` (an unclosed IPv6 bracket)
        raise InterfaceError(f"not a valid URL: {shown!r}: {exc}") from None
    if parts.scheme != "bitcask":
        raise InterfaceError(f"expected a bitcask://host:port URL, got {shown!r}")
    try:
        port = parts.port
    except ValueError as exc:
        raise InterfaceError(f"bad port in {shown!r}") from exc
    fields: dict[str, Any] = {"host": parts.hostname or "127.0.0.1", "port": port or DEFAULT_PORT}
    if parts.password:
        fields["auth"] = unquote(parts.password)
    for name, values in parse_qs(parts.query).items():
        if name == "timeout":
            try:
                fields["timeout"] = float(values[-1])
            except ValueError as exc:
                raise InterfaceError(f"bad timeout in {shown!r}") from exc
        else:
            raise InterfaceError(f"unknown URL option {name!r} in {shown!r}")
    return fields


def make_config(host: str, port: int | None, **options: Any) -> ClientConfig:
    """A ClientConfig from connect()-style arguments (host may be a bitcask:// URL)."""
    fields: dict[str, Any] = {}
    if host.startswith("bitcask://"):
        fields.update(parse_url(host))
        if port is not None:
            raise InterfaceError("give the port in the URL or as port=, not both")
    else:
        fields["host"] = host
        if port is not None:
            fields["port"] = port
    for name, value in options.items():
        if name == "auth" and value is None:
            continue  # keep a token given in the URL
        fields[name] = value
    try:
        return ClientConfig(**fields)
    except TypeError as exc:
        raise InterfaceError(str(exc)) from None
