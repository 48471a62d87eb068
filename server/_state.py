"""What a connection handler gets from the server: a small state object, not the Server.

Strategy: the protocol handlers (binary.py, http.py, _http_routes.py) need the
configuration, the store, the metrics, the writer and the dispatcher, plus a few
server-wide facts that change over time (draining, writer pressure, the connection
registry, readiness for the probes). The first group is plain fields; the second
is behind the `Host` protocol, which the Server implements. Nothing here imports
the Server, so there is no import cycle, and a test can build a ServerState around
a fake Host and drive a protocol with a mock transport.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Protocol

from ._dispatch import Dispatcher
from ._flow import RefusedLingers
from ._held import PartialInput
from ._metrics import Metrics
from ._writer import Writer
from .config import ServerConfig

__all__ = ["Host", "ServerState"]


class Host(Protocol):
    """The server-wide facts that change while connections live (the Server has them)."""

    draining: bool
    writer_pressured: bool

    def admit(self, conn: Any) -> bool:
        """Register a new connection; False means refuse it (cap reached or draining)."""
        ...

    def admit_probe(self, conn: Any) -> bool:
        """Register an HTTP connection admit() refused, served probes only; False:
        refuse it too (the probe reserve is full, or draining)."""
        ...

    def release(self, conn: Any) -> None: ...

    def readonly_reason(self) -> str | None: ...

    def not_ready_reason(self) -> str | None: ...

    def not_live_reason(self) -> str | None: ...

    def disk_health(self) -> dict[str, Any]: ...

    def key_count(self) -> int: ...

    def uptime(self) -> float: ...

    def stats(self) -> dict[str, Any]: ...

    def render_metrics(self) -> str: ...


def _no_redis() -> Any:
    raise RuntimeError("this ServerState was built without the Redis dialect")


@dataclass(eq=False, slots=True)
class ServerState:
    """Everything a protocol handler may use. One per Server, shared by its connections.

    Attributes:
        config: the validated configuration.
        store: the open bitcask store.
        metrics: the server's counters.
        writer: the group-commit writer (every mutation goes through it).
        dispatcher: method -> handler, auth and validation.
        loop: the event loop everything runs on.
        http_port: the HTTP listener's port (named in the refusal of HTTP on the
            binary port); set once that listener is bound.
        host: the server-wide changing facts (see `Host`).
        redis: returns the Redis commands' dispatcher, for connections that speak RESP
            (the Server builds it on the first call: server/app.py).
        lingers: the refused connections lingering now (server/_flow.py).
        held: the bytes held in unfinished requests, all connections (server/_held.py).
    """

    config: ServerConfig
    store: Any
    metrics: Metrics
    writer: Writer
    dispatcher: Dispatcher
    loop: asyncio.AbstractEventLoop
    http_port: int
    host: Host
    redis: Callable[[], Any] = _no_redis  # the RedisDispatcher of RESP connections
    lingers: RefusedLingers = field(default_factory=RefusedLingers)  # refused, lingering
    held: PartialInput = field(init=False)  # bytes in unfinished requests, all connections

    def __post_init__(self) -> None:
        self.held = PartialInput(self.config.partial_input_budget, self.metrics)
