"""Server: opens the store, runs the writer and both listeners, owns shutdown.

Strategy / invariants:
- One Server per process and per store. Everything runs on one event loop; the only
  other threads are the writer's (write_group + fsync), merge's, and the executor that
  opens and closes the store.
- Connections register through admit()/release(); the cap counts binary and HTTP
  connections together, and admit() also refuses one the descriptors left would not
  hold beside FD_RESERVE and the store's data files (one each, counted per accept).
  An HTTP connection refused so may still take one of PROBE_RESERVE slots
  (admit_probe), where it is served the probes, /metrics and /stats and nothing else.
- Start-up: the descriptor limit is raised (soft to hard) and the connection cap fitted
  below it with FD_RESERVE descriptors kept for the store; then the store is opened
  (any failure there is a StoreOpenError: the CLI exits 3, never "cannot listen"); on
  a full disk (ENOSPC creating the new active file) the engine opens it for reads
  and resumes writes by itself once space returns; then the ports are bound.
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
import errno
import gc
import logging
import os
import resource
import time
from collections.abc import Callable
from typing import Any

import bitcask

from ._active_expiry import ActiveExpiry
from ._dispatch import Dispatcher
from ._flow import set_keepalive
from ._metrics import Metrics
from ._redis import RedisDispatcher
from ._state import ServerState
from ._writer import Writer
from .binary import BinaryProtocol
from .config import ENGINE_OPTIONS, ConfigError, ServerConfig
from .http import HttpProtocol

__all__ = ["FD_RESERVE", "PROBE_RESERVE", "ListenError", "Server", "StoreOpenError"]

log = logging.getLogger("bitcask.server")

Connection = BinaryProtocol | HttpProtocol

# Descriptors kept back from the connection cap: the store's own (LOCK, the active file
# and its reader, a rotation's next file, merge output and hint files), the listeners,
# the event loop, stdio and the executor's transient opens (as Redis reserves 32 + 96).
FD_RESERVE = 64
# HTTP connections admitted past --max-connections, served the probes, /metrics and
# /stats only (a /kv request there is refused): a flood of client connections must not
# fail the liveness probe, or the orchestrator restarts the server it floods. Their
# descriptors come out of FD_RESERVE, as the refused connections' lingers do.
PROBE_RESERVE = 8
# Refused connections are logged at most once per this many seconds (with a count).
REFUSED_LOG_EVERY = 10.0
# Errors that mean "no space": a store that cannot create its active file opens read-only.


# The cyclic GC's generation-0 threshold while a server runs. Every request allocates a
# handful of short-lived containers (decoded lists, its Request, its slot, the writer's
# entry) that refcounting frees, but with 800 requests in flight (50 connections x
# depth 16) the live ones kept tripping the default threshold of 700: py-spy put ~16%
# of the server's CPU in gc_collect_main on the depth-16 put row of bench/server.py.
# Nothing on the request path makes reference cycles, so collecting rarely is enough.
GC_THRESHOLD = (50_000, 20, 100)


def _tune_gc() -> None:
    """Make the cyclic GC cheap for a long-running server (see GC_THRESHOLD).

    The objects alive once the store is open (modules, the keydir's containers) move
    to the permanent generation (gc.freeze), so full collections stop walking them.
    """
    gc.collect()
    gc.freeze()
    if gc.get_threshold()[0] < GC_THRESHOLD[0]:
        gc.set_threshold(*GC_THRESHOLD)


class StoreOpenError(Exception):
    """The store could not be opened (not a file-system directory, unwritable, ...).

    The CLI exits 3 on it. The engine's own errors (StoreLockedError, ...) pass as they are.
    """


class ListenError(OSError):
    """A port could not be bound; the message names the address, the flag and what to do.

    The CLI exits 4 on it. An OSError, as the bind failure it describes.
    """


def _listen_error(flag: str, host: str, port: int, exc: OSError) -> ListenError:
    """One sentence for a failed bind: which address, why, and what to do about it."""
    where = f"{host}:{port}" if ":" not in host else f"[{host}]:{port}"
    if exc.errno == errno.EADDRINUSE:
        hint = (
            f"another program listens there (another bitcask-server? `make run` is one): "
            f"stop it, or pass another {flag}"
        )
        reason = "the address is in use"
    elif exc.errno in (errno.EACCES, errno.EPERM):
        hint = f"ports below 1024 need privileges: pass {flag} 1024 or above"
        reason = "permission denied"
    elif exc.errno == errno.EADDRNOTAVAIL:
        hint = "no interface of this machine has that address: check --host"
        reason = "the address is not on this machine"
    else:
        hint = f"check --host and {flag}"
        reason = exc.strerror or str(exc)
    return ListenError(exc.errno, f"cannot listen on {where} ({flag}): {reason}; {hint}")


async def _listen(
    factory: Callable[[], asyncio.Protocol], host: str, port: int, flag: str
) -> asyncio.Server:
    """A listener on host:port; a bind failure is a ListenError naming `flag`."""
    loop = asyncio.get_running_loop()
    try:
        return await loop.create_server(factory, host, port, reuse_address=True, backlog=1024)
    except OSError as exc:
        raise _listen_error(flag, host, port, exc) from exc


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
        self.draining = False
        self.stopping = False  # a stop began: /readyz answers 503 (the drain delay)
        self.max_connections = config.max_connections  # fitted to the descriptors at start
        self.fd_limit: tuple[int, int] | None = None  # soft limit (before, after) raising
        self._drain_cut: asyncio.Event | None = None
        self.writer_pressured = False
        self._loop: asyncio.AbstractEventLoop | None = None
        self._connections: set[Connection] = set()
        self._probe_only: set[Connection] = set()  # past the cap, in PROBE_RESERVE
        self._listeners: list[asyncio.AbstractServer] = []
        self._sweeper: asyncio.TimerHandle | None = None
        self.expiry: ActiveExpiry | None = None  # the active expiry task (started by start)
        self._stopped: asyncio.Event | None = None
        self._started = time.monotonic()
        self._refused_logged_at = float("-inf")  # refused connections: rate-limited log
        # (st_dev, st_ino) of --data and of its LOCK once the store is open: a directory
        # removed or replaced under the server (a volume unmounted, `rm -rf`) is seen
        self._data_identity: tuple[int, ...] | None = None
        self._data_problem_logged = False
        self._refused_unlogged = 0

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
        self.max_connections = fit_connections(cfg.max_connections, self.fd_limit[1])
        opts: dict[str, Any] = {"sync": cfg.sync}
        for name in ENGINE_OPTIONS:
            if getattr(cfg, name) is not None:
                opts[name] = getattr(cfg, name)
        try:
            options = bitcask.Options(**opts)
        except bitcask.InvalidOptionsError as exc:
            raise ConfigError(str(exc)) from exc
        self.db = await loop.run_in_executor(None, self._open_store, options)
        self._data_identity = self._data_ids()
        _tune_gc()
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
            self._redis = RedisDispatcher(
                self.db,
                self.writer,
                cfg,
                max_key_size=options.max_key_size,
                max_value_size=options.max_value_size,
                info=self.server_stats,
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
                redis=self._redis,
            )
            binary = await _listen(lambda: BinaryProtocol(state), cfg.host, cfg.port, "--port")
            self._listeners.append(binary)
            self.port = binary.sockets[0].getsockname()[1]
            http = await _listen(
                lambda: HttpProtocol(state), cfg.host, cfg.http_port, "--http-port"
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
        self.expiry = ActiveExpiry(self.db, self.writer)
        self.expiry.start()

    def _open_store(self, options: bitcask.Options) -> Any:
        """Open the store (in a thread); reads only while the disk is full (see Strategy)."""
        path = self.config.data
        try:
            # a directory it creates is the owner's only, whatever the umask (under
            # umask 000 it was 0777: anyone could read every value, or plant a symlink
            # where the store writes); an existing one is left as the operator made it
            path.mkdir(mode=0o700, parents=True, exist_ok=True)
        except OSError as exc:
            if exc.errno in (errno.EEXIST, errno.ENOTDIR):
                raise StoreOpenError(_describe(path, exc)) from exc
            reason = exc.strerror or str(exc)
            raise StoreOpenError(f"cannot create the store directory {path}: {reason}") from exc
        try:
            # A full disk at start opens for reads; the engine heals it (bitcask/_health).
            return bitcask.open(path, options=options)
        except OSError as exc:
            if isinstance(exc, bitcask.BitcaskError):
                raise
            raise StoreOpenError(_describe(path, exc)) from exc

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
        # What is left may wait on a peer that reads nothing (it vanished without a FIN):
        # its reads are dropped with it, its writes are drained with the writer below.
        in_time = await self._wait(deadline, self._connections_settled)
        for conn in list(self._connections):
            conn.close_for_shutdown()
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

    def _connections_quiet(self) -> bool:
        return all(conn.busy == 0 for conn in self._connections)

    def _connections_settled(self) -> bool:
        return all(conn.busy == 0 or conn.held_by_peer for conn in self._connections)

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
        """Register a new connection; False (refuse it) at the cap, while draining, or
        when the descriptors left would not also hold FD_RESERVE for the store's own."""
        n = len(self._connections) - len(self._probe_only)
        if n >= self.max_connections or self.draining or n >= self._descriptor_room():
            self.metrics.connections_refused += 1
            if not self.draining:  # a refusal while stopping is expected: not logged
                self._log_refusal(n)
            return False
        self._connections.add(conn)
        if conn.transport is not None:
            set_keepalive(conn.transport, self.config.tcp_keepalive)
        self.metrics.connections = len(self._connections)
        self.metrics.connections_total += 1
        return True

    def admit_probe(self, conn: Connection) -> bool:
        """Register an HTTP connection admit() refused into PROBE_RESERVE, where only
        the probes, /metrics and /stats are served; False: refuse it (the reserve is
        full, or the server is draining). It stays counted as refused."""
        n = len(self._connections)
        if self.draining or len(self._probe_only) >= PROBE_RESERVE:
            return False
        if n >= self._descriptor_room() + PROBE_RESERVE:  # never past the descriptors
            return False
        self._connections.add(conn)
        self._probe_only.add(conn)
        self.metrics.connections = len(self._connections)
        return True

    def _log_refusal(self, n: int) -> None:
        # One WARNING per REFUSED_LOG_EVERY at most, with the count since the last one:
        # a client reconnecting in a loop cannot fill the disk with log lines.
        self._refused_unlogged += 1
        now = time.monotonic()
        if now - self._refused_logged_at < REFUSED_LOG_EVERY:
            return
        why = (
            f"max-connections {self.max_connections} reached"
            if n >= self.max_connections
            else "the descriptor limit leaves no room for another"
        )
        log.warning(
            "connections refused: %s (%d refused since the last such line; "
            "bitcask_connections_refused_total counts them all)",
            why,
            self._refused_unlogged,
        )
        self._refused_logged_at, self._refused_unlogged = now, 0

    def _descriptor_room(self) -> int:
        # Connections the descriptors allow now: the soft limit less FD_RESERVE and
        # the store's data files, one descriptor each and growing with rotations
        # (fit_connections at start knows only the limit). Past it accept() met
        # EMFILE: clients reset or left unanswered, rotations failing for want of one.
        soft = resource.getrlimit(resource.RLIMIT_NOFILE)[0]
        if soft == resource.RLIM_INFINITY:
            return self.max_connections
        return soft - FD_RESERVE - (int(self.db.data_files()) - 1)  # active: in FD_RESERVE

    def release(self, conn: Connection) -> None:
        self._connections.discard(conn)
        self._probe_only.discard(conn)
        self.metrics.connections = len(self._connections)

    def _writer_pressure(self, on: bool) -> None:
        self.writer_pressured = on
        for conn in self._connections:
            conn.pause_for_writer(on)

    def _sweep_period(self) -> float:
        return min(1.0, max(0.05, self.config.idle_timeout / 4))

    def _sweep(self) -> None:
        """Close connections on which no byte moved for idle_timeout (server/_flow.py).

        A binary connection with requests of its own in progress is not idle, unless
        its replies wait for a peer that takes none of them; an HTTP connection with
        nothing left to send is governed by its own timers (keep-alive, header, body).
        """
        now = self.loop.time()
        limit = self.config.idle_timeout
        for conn in list(self._connections):
            working = bool(conn.busy) if isinstance(conn, BinaryProtocol) else True
            if conn.moved(working):
                conn.last_active = now
            elif now - conn.last_active > limit:
                conn.close_idle()
        self._sweeper = self.loop.call_later(self._sweep_period(), self._sweep)

    # ---- introspection (stats, health, metrics) ----

    def readonly_reason(self) -> str | None:
        reason = getattr(self.db, "readonly_reason", None)
        return str(reason) if reason else None

    def not_live_reason(self) -> str | None:
        """Why /livez fails: an fsync failed longer than fsync_failure_grace ago (the
        store refuses writes until a restart, so the orchestrator should restart it)."""
        disk = self.disk_health()
        age = disk.get("seconds")  # monotonic: a wall clock step must not move the grace
        if disk.get("state") != "fsync_failed" or age is None:
            return None
        if age < self.config.fsync_failure_grace:
            return None
        return f"fsync failed {age:.0f} s ago ({disk.get('reason')}); restart to resume writes"

    def disk_health(self) -> dict[str, Any]:
        """The engine's disk state (ok | write_failed | fsync_failed) for /health."""
        return dict(self.db.disk_health())

    def not_ready_reason(self) -> str | None:
        if self.stopping:
            return "shutting down"
        reason = self.readonly_reason()
        return f"read-only: {reason}" if reason else self.data_dir_problem()

    def _data_ids(self) -> tuple[int, ...] | None:
        try:
            ids = [os.stat(self.config.data), os.stat(self.config.data / "LOCK")]
        except OSError:
            return None
        return tuple(n for st in ids for n in (st.st_dev, st.st_ino))

    def data_dir_problem(self) -> str | None:
        """Why --data is no longer the store's directory: removed, emptied or replaced
        while the server runs. Its open files go on serving, but what is written now
        lands in files no restart will find: /readyz fails, and it is logged once."""
        if self._data_identity is None or self._data_ids() == self._data_identity:
            return None
        problem = (
            f"the data directory {self.config.data} was removed or replaced while the "
            "server runs; writes now go to files no restart will find: restart it"
        )
        if not self._data_problem_logged:
            self._data_problem_logged = True
            log.error("%s", problem)
        return problem

    def key_count(self) -> int:
        return len(self.db)

    def uptime(self) -> float:
        return time.monotonic() - self._started

    def server_stats(self) -> dict[str, Any]:
        snap = self.metrics.snapshot()
        snap["writer_mode"] = self.writer.mode if self.writer else None
        # the cap in force: --max-connections lowered to fit the descriptors at start,
        # and below that while the store's data files hold more of them (admit()'s
        # rule); INFO's maxclients reads it, as Redis reports its adjusted maxclients
        snap["max_connections"] = max(0, min(self.max_connections, self._descriptor_room()))
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


# ---- start-up helpers ----


def raise_fd_limit() -> tuple[int, int]:
    """Raise the soft RLIMIT_NOFILE to the hard limit (as Redis and nginx do).

    Returns:
        The soft limit before and after (equal when it could not be raised).
    """
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    target = hard
    if hard == resource.RLIM_INFINITY:
        target = _nr_open()
    if soft != resource.RLIM_INFINITY and (soft >= target):
        return soft, soft
    try:
        resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
    except (OSError, ValueError) as exc:
        log.warning("cannot raise the descriptor limit from %d to %d: %s", soft, target, exc)
        return soft, soft
    return soft, target


def _nr_open() -> int:
    """The kernel's per-process descriptor ceiling (an unlimited hard limit means this)."""
    try:
        with open("/proc/sys/fs/nr_open") as f:
            return int(f.read())
    except (OSError, ValueError):
        return 1 << 20


def fit_connections(wanted: int, fd_soft: int) -> int:
    """The connection cap the descriptors allow: wanted, or less with FD_RESERVE kept back.

    Raises:
        ConfigError: the limit leaves no descriptor for a single connection.

    Example:
        >>> fit_connections(1024, 1024)
        960
    """
    if fd_soft == resource.RLIM_INFINITY or wanted + FD_RESERVE <= fd_soft:
        return wanted
    allowed = fd_soft - FD_RESERVE
    if allowed < 1:
        raise ConfigError(
            f"the descriptor limit ({fd_soft}) leaves no room for connections: "
            f"raise `ulimit -n` above {FD_RESERVE}"
        )
    log.warning(
        "max-connections %d needs %d descriptors, the limit is %d: max-connections lowered to "
        "%d (raise `ulimit -n` or LimitNOFILE= to allow more)",
        wanted,
        wanted + FD_RESERVE,
        fd_soft,
        allowed,
    )
    return allowed


def _describe(path: object, exc: OSError) -> str:
    """A sentence about why `path` cannot hold a store."""
    reason = exc.strerror or str(exc)
    if exc.errno in (errno.EEXIST, errno.ENOTDIR):
        return f"cannot open the store at {path}: not a directory ({reason})"
    if exc.errno in (errno.EACCES, errno.EPERM, errno.EROFS):
        return f"cannot open the store at {path}: the directory is not writable ({reason})"
    if exc.errno == errno.ELOOP and exc.filename:  # O_NOFOLLOW met a planted link
        return (
            f"cannot open the store at {path}: {exc.filename} is a symbolic link, and the "
            "store never writes through one (docs/security.md): replace it with the file"
        )
    return f"cannot open the store at {path}: {reason}"
