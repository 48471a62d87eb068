"""Server: opens the store, runs the writer and both listeners, owns shutdown.

Strategy / invariants:
- One Server per process and per store. Everything runs on one event loop; the only
  other threads are the writer's (write_group + fsync), merge's, and the executor that
  opens and closes the store.
- The Server sequences; each part has its own file: the connection registry, its cap
  and probe reserve (_connections.py), the start-up steps (_startup.py), what the
  probes report (_health.py). The protocols see the Server only as a `Host`
  (_state.py): admit()/admit_probe()/release() and the health questions.
- Start-up: the descriptor limit is raised (soft to hard) and the connection cap fitted
  below it with FD_RESERVE descriptors kept for the store; then the store is opened
  (any failure there is a StoreOpenError: the CLI exits 3, never "cannot listen"); on
  a full disk (ENOSPC creating the new active file) the engine opens it for reads
  and resumes writes by itself once space returns; then the ports are bound. The
  Redis commands' dispatcher is built when the first RESP connection speaks
  (redis_dispatcher()), so a server nobody talks Redis to never imports it.
- Shutdown order (steps 1-4 each bounded by what is left of config.shutdown_timeout):
  0. drain delay (stop(drain=...), SIGTERM: config.drain_seconds): /readyz answers 503
     while everything else is served as before, so a load balancer stops sending new
     work before anything is refused;
  1. writes refused with SHUTTING_DOWN from now on, a running merge abandoned (its
     request answers SHUTTING_DOWN, its output deleted), listeners closed;
  2. wait for every connection's in-flight requests to be answered (new requests are
     still read for half the budget: reads answered, writes refused; then reading
     stops and unread requests are refused by the close, and a connection whose
     peer takes none of its replies, with no write in flight, is not waited for);
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

from ._active_expiry import ActiveExpiry
from ._connections import FD_RESERVE, PROBE_RESERVE, Connections, fit_connections
from ._dispatch import Dispatcher
from ._health import Health
from ._metrics import Metrics
from ._startup import ListenError, StoreOpenError, listen, open_store, raise_fd_limit, tune_gc
from ._state import ServerState
from ._writer import Writer
from .binary import BinaryProtocol
from .config import ENGINE_OPTIONS, ConfigError, ServerConfig
from .http import HttpProtocol

TYPE_CHECKING = False
if TYPE_CHECKING:
    from ._redis import RedisDispatcher

__all__ = ["FD_RESERVE", "PROBE_RESERVE", "ListenError", "Server", "StoreOpenError"]

log = logging.getLogger("bitcask.server")


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
        self._redis: RedisDispatcher | None = None
        self.state: ServerState | None = None  # what the protocols see (set by start)
        self.port = config.port
        self.http_port = config.http_port
        self.stopping = False  # a stop began: /readyz answers 503 (the drain delay)
        self.fd_limit: tuple[int, int] | None = None  # soft limit (before, after) raising
        self.writer_pressured = False
        self.expiry: ActiveExpiry | None = None  # the active expiry task (started by start)
        # the cap is fitted to the descriptors at start
        self.connections = Connections(
            config, self.metrics, lambda: self.db.data_files(), config.max_connections
        )
        self._health: Health | None = None  # once the store is open
        self._loop: asyncio.AbstractEventLoop | None = None
        self._listeners: list[asyncio.AbstractServer] = []
        self._drain_cut: asyncio.Event | None = None
        self._stopped: asyncio.Event | None = None
        self._started = time.monotonic()

    @property
    def max_connections(self) -> int:
        """The connection cap: --max-connections, lowered at start to fit the descriptors."""
        return self.connections.max_connections

    @property
    def draining(self) -> bool:
        """The listeners are closing: every new connection is refused."""
        return self.connections.closed

    @draining.setter
    def draining(self, on: bool) -> None:
        self.connections.closed = on

    # ---- life cycle ----

    async def start(self) -> None:
        """Open the store (recovery runs in a thread), then start listening.

        Raises:
            ConfigError: bad engine options, or descriptors too few for any connection.
            bitcask.BitcaskError: the engine refused the store (e.g. StoreLockedError).
            StoreOpenError: the data directory cannot hold a store (a file, unwritable).
            ListenError: a port cannot be bound.
        """
        loop = self._loop = asyncio.get_running_loop()
        self._stopped = asyncio.Event()
        self._drain_cut = asyncio.Event()
        cfg = self.config
        self.fd_limit = raise_fd_limit()
        self.connections.max_connections = fit_connections(cfg.max_connections, self.fd_limit[1])
        opts: dict[str, Any] = {"sync": cfg.sync}
        for name in ENGINE_OPTIONS:
            if getattr(cfg, name) is not None:
                opts[name] = getattr(cfg, name)
        try:
            options = bitcask.Options(**opts)
        except bitcask.InvalidOptionsError as exc:
            raise ConfigError(str(exc)) from exc
        self.db = await loop.run_in_executor(None, open_store, cfg.data, options)
        self._health = Health(self.db, cfg.data, cfg.fsync_failure_grace)
        tune_gc()
        try:
            self.writer = Writer(
                self.db,
                mode=cfg.resolved_writer,
                metrics=self.metrics,
                max_depth=cfg.writer_queue_max,
                on_pressure=self._writer_pressure,
                linger=cfg.sync == "always",  # one fsync per group: gather the in-flight
            )
            self._dispatcher = Dispatcher(
                self.db,
                self.writer,
                cfg,
                max_key_size=options.max_key_size,
                max_value_size=options.max_value_size,
                server_stats=self.server_stats,
                metrics=self.metrics,
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
                redis=self.redis_dispatcher,
            )
            self.connections.start(loop, state.held)
            binary = await listen(lambda: BinaryProtocol(state), cfg.host, cfg.port, "--port")
            self._listeners.append(binary)
            self.port = binary.sockets[0].getsockname()[1]
            http = await listen(lambda: HttpProtocol(state), cfg.host, cfg.http_port, "--http-port")
            self._listeners.append(http)
            self.http_port = state.http_port = http.sockets[0].getsockname()[1]
        except BaseException:
            self.connections.stop_sweeping()
            for listener in self._listeners:
                listener.close()
            await loop.run_in_executor(None, self.db.close)
            raise
        self.expiry = ActiveExpiry(self.db, self.writer)
        self.expiry.start()

    def redis_dispatcher(self) -> RedisDispatcher:
        """The Redis commands' dispatcher, built when the first RESP connection speaks.

        Importing the Redis side (server/_redis.py and its command classes) costs about
        70 ms of a start-up's 0.3 s of CPU; a server that only the project's own
        clients and HTTP talk to never pays it.
        """
        if self._redis is None:
            from ._redis import RedisDispatcher

            assert self.writer is not None
            self._redis = RedisDispatcher(
                self.db,
                self.writer,
                self.config,
                max_key_size=self.db.options.max_key_size,
                max_value_size=self.db.options.max_value_size,
                info=self.server_stats,
            )
            self._redis.shutting_down = self.dispatcher.shutting_down  # built mid-stop
        return self._redis

    async def wait_stopped(self) -> None:
        """Return once stop() has finished."""
        assert self._stopped is not None
        await self._stopped.wait()

    async def stop(self, drain: float = 0.0) -> bool:
        """Graceful shutdown (see the module docstring). Returns False if it ran out of time.

        Args:
            drain: seconds to go on serving with /readyz answering 503 before the
                listeners close (the CLI passes --drain-seconds on SIGTERM); cut_drain()
                ends that wait early.
        """
        if self.stopping:
            await self.wait_stopped()
            return True
        self.stopping = True
        if drain > 0:
            log.info("draining: /readyz answers 503, serving %.3g s more", drain)
            assert self._drain_cut is not None
            try:
                await asyncio.wait_for(self._drain_cut.wait(), drain)
            except TimeoutError:
                pass
        deadline = time.monotonic() + self.config.shutdown_timeout
        self.draining = True
        self.dispatcher.shutting_down = True
        if self._redis is not None:
            self._redis.shutting_down = True
        # A merge request in flight would hold its connection busy until the merge
        # ends (the whole budget, for a big store): abandon it, it answers SHUTTING_DOWN.
        self.db.stop_merges()
        log.info("shutting down: %d connections open", len(self.connections))
        for listener in self._listeners:
            listener.close()
        self.connections.stop_sweeping()
        # Requests still arriving are served for half the budget (reads answered, writes
        # refused with SHUTTING_DOWN); then reading stops so that a client that never
        # pauses cannot hold the shutdown, and what is in flight finishes.
        half = time.monotonic() + self.config.shutdown_timeout / 2
        if not await self._wait(half, self.connections.quiet):
            self.connections.stop_reading()
        # What is left may wait on a peer that reads nothing (it vanished without a FIN):
        # its reads are dropped with it, its writes are drained with the writer below.
        in_time = await self._wait(deadline, self.connections.settled)
        self.connections.close_all()
        assert self.writer is not None
        if self.expiry is not None:
            await self.expiry.stop()
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

    def cut_drain(self) -> bool:
        """End the drain delay now (or skip it if stop() has not reached it yet).

        Returns:
            False once the listeners are closing: there is no drain left to cut.
        """
        if self.draining or self._drain_cut is None:
            return False
        self._drain_cut.set()
        return True

    async def _wait(self, deadline: float, done: Any) -> bool:
        while not done():
            if time.monotonic() >= deadline:
                return False
            await asyncio.sleep(0.02)
        return True

    @property
    def loop(self) -> asyncio.AbstractEventLoop:
        assert self._loop is not None
        return self._loop

    @property
    def dispatcher(self) -> Dispatcher:
        assert self._dispatcher is not None
        return self._dispatcher

    def _writer_pressure(self, on: bool) -> None:
        self.writer_pressured = on
        self.connections.pause_for_writer(on)

    # ---- the Host the protocols see (server/_state.py) ----

    def admit(self, conn: Any) -> bool:
        """Register a new connection; False: refuse it (server/_connections.py)."""
        return self.connections.admit(conn)

    def admit_probe(self, conn: Any) -> bool:
        """Register an HTTP connection admit() refused, for the probes only."""
        return self.connections.admit_probe(conn)

    def release(self, conn: Any) -> None:
        self.connections.release(conn)

    @property
    def health(self) -> Health:
        assert self._health is not None, "the store is not open yet"
        return self._health

    def readonly_reason(self) -> str | None:
        return None if self._health is None else self._health.readonly_reason()

    def not_live_reason(self) -> str | None:
        return self.health.not_live_reason()

    def disk_health(self) -> dict[str, Any]:
        return self.health.disk_health()

    def not_ready_reason(self) -> str | None:
        if self.stopping:
            return "shutting down"
        return None if self._health is None else self._health.not_ready_reason()

    def key_count(self) -> int:
        return len(self.db)

    def uptime(self) -> float:
        return time.monotonic() - self._started

    def server_stats(self) -> dict[str, Any]:
        snap = self.metrics.snapshot()
        snap["writer_mode"] = self.writer.mode if self.writer else None
        # the cap in force (Connections.cap): INFO's maxclients reads it, as Redis
        # reports its adjusted maxclients
        snap["max_connections"] = self.connections.cap()
        snap["ready"] = self.not_ready_reason() is None
        # the ports actually bound (--port 0 / --http-port 0 pick free ones): INFO's
        # tcp_port reads this, as Redis reports the port it listens on
        snap["port"] = self.port
        snap["http_port"] = self.http_port
        return snap

    def stats(self) -> dict[str, Any]:
        stats = dict(self.db.stats())
        stats["server"] = self.server_stats()
        return stats

    def render_metrics(self) -> str:
        return self.metrics.render(self.db.stats(), ready=self.not_ready_reason() is None)
