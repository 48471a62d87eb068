"""Server: opens the store, runs the writer and both listeners, owns shutdown.

Strategy / invariants:
- One Server per process and per store. Everything runs on one event loop; the only
  other threads are the writer's (write_batch + fsync), merge's, and the executor that
  opens and closes the store.
- Connections register through admit()/release(); the cap counts binary and HTTP
  connections together.
- Shutdown order (each step bounded by what is left of config.shutdown_timeout):
  1. not ready (/readyz 503), writes refused with SHUTTING_DOWN from now on, listeners
     closed;
  2. wait for every connection's in-flight requests to be answered (new requests are
     still read for half the budget: reads answered, writes refused; then reading
     stops and unread requests are refused by the close);
  3. close the connections, close the writer and wait until it has drained;
  4. db.close() in a thread (it syncs and writes hint files).
  If the budget runs out the store is still closed (acknowledged writes are already
  durable per the sync policy); `stop()` returns False and the CLI exits non-zero.
"""

from __future__ import annotations

import asyncio
import logging
import time
from typing import Any

import bitcask

from ._dispatch import Dispatcher
from ._metrics import Metrics
from ._state import ServerState
from ._writer import Writer
from .binary import BinaryProtocol
from .config import ENGINE_OPTIONS, ConfigError, ServerConfig
from .http import HttpProtocol

__all__ = ["Server"]

log = logging.getLogger("bitcask.server")

Connection = BinaryProtocol | HttpProtocol


class Server:
    """The bitcask service: one store, one writer, a binary and an HTTP listener.

    Args:
        config: the validated configuration.

    Example:
        >>> async def main():                                       # doctest: +SKIP
        ...     server = Server(ServerConfig(data=Path("./data"), port=0, http_port=0))
        ...     await server.start()
        ...     print(server.port, server.http_port)
        ...     await server.stop()
    """

    def __init__(self, config: ServerConfig) -> None:
        self.config = config
        self.metrics = Metrics()
        self.db: Any = None
        self.writer: Writer | None = None
        self._dispatcher: Dispatcher | None = None
        self.state: ServerState | None = None  # what the protocols see (set by start)
        self.port = config.port
        self.http_port = config.http_port
        self.draining = False
        self.writer_pressured = False
        self._loop: asyncio.AbstractEventLoop | None = None
        self._connections: set[Connection] = set()
        self._listeners: list[asyncio.AbstractServer] = []
        self._sweeper: asyncio.TimerHandle | None = None
        self._stopped: asyncio.Event | None = None
        self._started = time.monotonic()

    # ---- life cycle ----

    async def start(self) -> None:
        """Open the store (recovery runs in a thread), then start listening.

        Raises:
            bitcask.BitcaskError: the store cannot be opened (e.g. StoreLockedError).
            OSError: a port cannot be bound.
        """
        loop = self._loop = asyncio.get_running_loop()
        self._stopped = asyncio.Event()
        cfg = self.config
        opts: dict[str, Any] = {"sync": cfg.sync}
        for name in ENGINE_OPTIONS:
            if getattr(cfg, name) is not None:
                opts[name] = getattr(cfg, name)
        try:
            options = bitcask.Options(**opts)
        except bitcask.InvalidOptionsError as exc:
            raise ConfigError(str(exc)) from exc
        cfg.data.mkdir(parents=True, exist_ok=True)
        self.db = await loop.run_in_executor(None, lambda: bitcask.open(cfg.data, options=options))
        try:
            self.writer = Writer(
                self.db,
                mode=cfg.resolved_writer,
                metrics=self.metrics,
                max_depth=cfg.writer_queue_max,
                on_pressure=self._writer_pressure,
            )
            self._dispatcher = Dispatcher(
                self.db,
                self.writer,
                cfg,
                max_key_size=options.max_key_size,
                max_value_size=options.max_value_size,
                server_stats=self.server_stats,
            )
            # The protocols get this small state object, never the Server itself.
            state = self.state = ServerState(
                config=cfg,
                store=self.db,
                metrics=self.metrics,
                writer=self.writer,
                dispatcher=self._dispatcher,
                loop=loop,
                http_port=cfg.http_port,
                host=self,
            )
            binary = await loop.create_server(
                lambda: BinaryProtocol(state), cfg.host, cfg.port, reuse_address=True, backlog=1024
            )
            self._listeners.append(binary)
            self.port = binary.sockets[0].getsockname()[1]
            http = await loop.create_server(
                lambda: HttpProtocol(state),
                cfg.host,
                cfg.http_port,
                reuse_address=True,
                backlog=1024,
            )
            self._listeners.append(http)
            self.http_port = state.http_port = http.sockets[0].getsockname()[1]
        except BaseException:
            for listener in self._listeners:
                listener.close()
            await loop.run_in_executor(None, self.db.close)
            raise
        if cfg.idle_timeout > 0:
            self._sweeper = loop.call_later(self._sweep_period(), self._sweep)

    async def wait_stopped(self) -> None:
        """Return once stop() has finished."""
        assert self._stopped is not None
        await self._stopped.wait()

    async def stop(self) -> bool:
        """Graceful shutdown (see the module docstring). Returns False if it ran out of time."""
        if self.draining:
            await self.wait_stopped()
            return True
        deadline = time.monotonic() + self.config.shutdown_timeout
        self.draining = True
        self.dispatcher.shutting_down = True
        log.info("shutting down: %d connections open", len(self._connections))
        for listener in self._listeners:
            listener.close()
        if self._sweeper is not None:
            self._sweeper.cancel()
        # Requests still arriving are served for half the budget (reads answered, writes
        # refused with SHUTTING_DOWN); then reading stops so that a client that never
        # pauses cannot hold the shutdown, and what is in flight finishes.
        half = time.monotonic() + self.config.shutdown_timeout / 2
        if not await self._wait(half, self._connections_quiet):
            for conn in list(self._connections):
                conn.stop_reading_for_shutdown()
        in_time = await self._wait(deadline, self._connections_quiet)
        for conn in list(self._connections):
            conn.close_for_shutdown()
        assert self.writer is not None
        self.writer.close()
        remaining = max(0.1, deadline - time.monotonic())
        try:
            await asyncio.wait_for(self.writer.wait_idle(), remaining)
        except TimeoutError:
            in_time = False
            log.error("writer did not drain within the shutdown budget")
        await self.writer.run_on_writer_thread(self.db.close)
        await asyncio.get_running_loop().run_in_executor(None, self.writer.shutdown_pool)
        assert self._stopped is not None
        self._stopped.set()
        log.info("stopped (%s)", "clean" if in_time else "forced: budget exceeded")
        return in_time

    async def _wait(self, deadline: float, done: Any) -> bool:
        while not done():
            if time.monotonic() >= deadline:
                return False
            await asyncio.sleep(0.02)
        return True

    def _connections_quiet(self) -> bool:
        return all(conn.busy == 0 for conn in self._connections)

    # ---- connections ----

    @property
    def loop(self) -> asyncio.AbstractEventLoop:
        assert self._loop is not None
        return self._loop

    @property
    def dispatcher(self) -> Dispatcher:
        assert self._dispatcher is not None
        return self._dispatcher

    def admit(self, conn: Connection) -> bool:
        """Register a new connection; False (refuse it) at the cap or while draining."""
        if len(self._connections) >= self.config.max_connections or self.draining:
            self.metrics.connections_refused += 1
            return False
        self._connections.add(conn)
        self.metrics.connections = len(self._connections)
        self.metrics.connections_total += 1
        return True

    def release(self, conn: Connection) -> None:
        self._connections.discard(conn)
        self.metrics.connections = len(self._connections)

    def _writer_pressure(self, on: bool) -> None:
        self.writer_pressured = on
        for conn in self._connections:
            conn.pause_for_writer(on)

    def _sweep_period(self) -> float:
        return min(1.0, max(0.05, self.config.idle_timeout / 4))

    def _sweep(self) -> None:
        """Close binary connections silent for idle_timeout (HTTP has its own timers)."""
        now = self.loop.time()
        limit = self.config.idle_timeout
        for conn in list(self._connections):
            if not isinstance(conn, BinaryProtocol):
                continue
            if conn.active or conn.busy:
                conn.active = False
                conn.last_active = now
            elif now - conn.last_active > limit:
                conn.close_idle()
        self._sweeper = self.loop.call_later(self._sweep_period(), self._sweep)

    # ---- introspection (stats, health, metrics) ----

    def readonly_reason(self) -> str | None:
        reason = getattr(self.db, "readonly_reason", None)
        return str(reason) if reason else None

    def not_ready_reason(self) -> str | None:
        if self.draining:
            return "shutting down"
        reason = self.readonly_reason()
        return f"read-only: {reason}" if reason else None

    def key_count(self) -> int:
        return len(self.db)

    def uptime(self) -> float:
        return time.monotonic() - self._started

    def server_stats(self) -> dict[str, Any]:
        snap = self.metrics.snapshot()
        snap["writer_mode"] = self.writer.mode if self.writer else None
        snap["ready"] = self.not_ready_reason() is None
        return snap

    def stats(self) -> dict[str, Any]:
        stats = dict(self.db.stats())
        stats["server"] = self.server_stats()
        return stats

    def render_metrics(self) -> str:
        return self.metrics.render(self.db.stats(), ready=self.not_ready_reason() is None)
