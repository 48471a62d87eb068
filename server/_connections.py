"""The connection registry: who is admitted, the cap, the probe reserve, the idle sweep.

Strategy / invariants:
- One Connections per Server; it is the only owner of the set of open connections.
  The protocols register through Server.admit()/admit_probe()/release(), which land
  here; the cap counts binary and HTTP connections together.
- admit() refuses a connection at --max-connections, once admission is closed (the
  shutdown), or when the descriptors left would not hold it beside FD_RESERVE and the
  store's data files (one each, counted per accept: rotations add files while the
  server runs). An HTTP connection refused so may still take one of PROBE_RESERVE
  slots (admit_probe), where it is served the probes, /metrics and /stats only.
- The cap is fitted to the descriptor limit once, at start (fit_connections); the
  descriptor room is checked again at each accept.
- Refusals are logged through a LogThrottle (bitcask/logthrottle.py): at most one
  line per 10 s, with a count, so a client reconnecting in a loop cannot fill a disk
  with log lines.
- The idle sweep (--idle-timeout > 0) closes a connection on which no byte moved for
  that long (what "moved" means is server/_flow.py's rule, for both protocols).
  The same sweep drops a request started over --request-timeout ago and not complete
  (server/_held.py): a sender at one byte a second moves, and was never idle.
- With --auth, a binary/Redis connection that has not authenticated --auth-timeout
  seconds after it was admitted is closed (PostgreSQL's authentication_timeout): a
  client without the token that sent a PING now and then held its slot for good, and
  enough of them kept every token holder out. HTTP authenticates each request, and
  its connections live by their own timers (keep-alive, header, body).
"""

from __future__ import annotations

import asyncio
import logging
import resource
from collections.abc import Callable, Iterator
from typing import Any

from bitcask.logthrottle import LogThrottle

from ._flow import set_keepalive
from ._held import REQUEST_TIMEOUT_LINE, PartialInput
from ._metrics import Metrics
from .binary import BinaryProtocol
from .config import ConfigError, ServerConfig

__all__ = ["FD_RESERVE", "PROBE_RESERVE", "Connections", "fit_connections"]

log = logging.getLogger("bitcask.server")

# Descriptors kept back from the connection cap: the store's own (LOCK, the active file
# and its reader, a rotation's next file, merge output and hint files), the listeners,
# the event loop, stdio and the executor's transient opens (as Redis reserves 32 + 96).
FD_RESERVE = 64
# HTTP connections admitted past --max-connections, served the probes, /metrics and
# /stats only (a /kv request there is refused): a flood of client connections must not
# fail the liveness probe, or the orchestrator restarts the server it floods. Their
# descriptors come out of FD_RESERVE, as the refused connections' lingers do.
PROBE_RESERVE = 8


class Connections:
    """The open connections of one server, and the rules that admit them.

    Args:
        config: the server's configuration (--max-connections, --idle-timeout, ...).
        metrics: the counters of connections accepted, refused and open.
        data_files: how many data files the store holds now (each takes a descriptor).
        max_connections: the cap, already fitted to the descriptor limit.
    """

    def __init__(
        self,
        config: ServerConfig,
        metrics: Metrics,
        data_files: Callable[[], int],
        max_connections: int,
    ) -> None:
        self._config = config
        self._metrics = metrics
        self._data_files = data_files
        self.max_connections = max_connections
        self.closed = False  # admission closed (the shutdown): every new one is refused
        self._open: set[Any] = set()
        self._probe_only: set[Any] = set()  # past the cap, in PROBE_RESERVE
        self._throttle = LogThrottle(log)
        self._sweeper: asyncio.TimerHandle | None = None
        self._loop: asyncio.AbstractEventLoop | None = None  # set by start()
        self._held: PartialInput | None = None  # the server's partial input (start())
        # unauthenticated connections -> their --auth-timeout timer
        self._auth_deadlines: dict[Any, asyncio.TimerHandle] = {}
        self._auth_timeout = config.auth_timeout if config.auth is not None else 0.0

    def __len__(self) -> int:
        return len(self._open)

    def __iter__(self) -> Iterator[Any]:
        """A snapshot of the open connections (one may close while it is walked)."""
        return iter(list(self._open))

    # ---- admission ----

    def admit(self, conn: Any) -> bool:
        """Register a new connection; False (refuse it) at the cap, once closed, or when
        the descriptors left would not also hold FD_RESERVE for the store's own."""
        n = len(self._open) - len(self._probe_only)
        if n >= self.max_connections or self.closed or n >= self.descriptor_room():
            self._metrics.connections_refused += 1
            if not self.closed:  # a refusal while stopping is expected: not logged
                self._log_refusal(n)
            return False
        self._open.add(conn)
        if conn.transport is not None:
            set_keepalive(conn.transport, self._config.tcp_keepalive)
        self._metrics.connections = len(self._open)
        self._metrics.connections_total += 1
        if self._auth_timeout > 0 and self._loop is not None and isinstance(conn, BinaryProtocol):
            self._auth_deadlines[conn] = self._loop.call_later(
                self._auth_timeout, self._auth_expired, conn
            )
        return True

    def admit_probe(self, conn: Any) -> bool:
        """Register an HTTP connection admit() refused into PROBE_RESERVE, where only
        the probes, /metrics and /stats are served; False: refuse it (the reserve is
        full, or admission is closed). It stays counted as refused."""
        if self.closed or len(self._probe_only) >= PROBE_RESERVE:
            return False
        if len(self._open) >= self.descriptor_room() + PROBE_RESERVE:  # never past the fds
            return False
        self._open.add(conn)
        self._probe_only.add(conn)
        self._metrics.connections = len(self._open)
        return True

    def release(self, conn: Any) -> None:
        self._open.discard(conn)
        self._probe_only.discard(conn)
        self._metrics.connections = len(self._open)
        deadline = self._auth_deadlines.pop(conn, None)
        if deadline is not None:
            deadline.cancel()

    def _auth_expired(self, conn: BinaryProtocol) -> None:
        self._auth_deadlines.pop(conn, None)
        if conn.authenticated:
            return
        self._metrics.auth_timeouts += 1
        log.debug("closed a connection not authenticated within %.3g s", self._auth_timeout)
        conn.close_idle()

    def descriptor_room(self) -> int:
        """Connections the descriptors allow now: the soft limit less FD_RESERVE and
        the store's data files (fit_connections at start knows only the limit). Past
        it accept() met EMFILE: clients reset or left unanswered, rotations failing."""
        soft = resource.getrlimit(resource.RLIMIT_NOFILE)[0]
        if soft == resource.RLIM_INFINITY:
            return self.max_connections
        return soft - FD_RESERVE - (int(self._data_files()) - 1)  # active: in FD_RESERVE

    def cap(self) -> int:
        """The cap in force: --max-connections as fitted at start, and below that while
        the store's data files hold more descriptors (admit()'s rule)."""
        return max(0, min(self.max_connections, self.descriptor_room()))

    def _log_refusal(self, n: int) -> None:
        why = (
            f"max-connections {self.max_connections} reached"
            if n >= self.max_connections
            else "the descriptor limit leaves no room for another"
        )
        self._throttle.log(
            "refused",
            logging.WARNING,
            "connections refused: %s; bitcask_connections_refused_total counts them all",
            why,
        )

    # ---- what every connection is told ----

    def pause_for_writer(self, on: bool) -> None:
        for conn in self._open:
            conn.pause_for_writer(on)

    def quiet(self) -> bool:
        """Every connection has answered every request it received."""
        return all(conn.busy == 0 for conn in self._open)

    def settled(self) -> bool:
        """As quiet(), but a connection whose peer takes none of its replies counts."""
        return all(conn.busy == 0 or conn.held_by_peer for conn in self._open)

    def stop_reading(self) -> None:
        for conn in self:
            conn.stop_reading_for_shutdown()

    def close_all(self) -> None:
        for conn in self:
            conn.close_for_shutdown()

    # ---- the timers: the idle sweep, the pre-AUTH deadline ----

    def start(self, loop: asyncio.AbstractEventLoop, held: PartialInput | None = None) -> None:
        """Run the timers on `loop` from now on (before the listeners open): the sweep
        (the idle timeout and --request-timeout; not when both are 0) and each new
        connection's auth deadline. `held`: the server's partial input, whose
        unfinished requests the sweep holds to --request-timeout."""
        self._loop = loop
        self._held = held
        if self._sweep_limits():
            self._sweeper = loop.call_later(self._sweep_period(), self._sweep, loop)

    def _sweep_limits(self) -> list[float]:
        cfg = self._config
        deadline = cfg.request_timeout if self._held is not None else 0.0
        return [t for t in (cfg.idle_timeout, deadline) if t > 0]

    def stop_sweeping(self) -> None:
        if self._sweeper is not None:
            self._sweeper.cancel()
            self._sweeper = None

    def _sweep_period(self) -> float:
        return min(1.0, max(0.05, min(self._sweep_limits()) / 4))

    def _sweep(self, loop: asyncio.AbstractEventLoop) -> None:
        """Close connections on which no byte moved for idle_timeout (server/_flow.py).

        A binary connection with requests of its own in progress is not idle, unless
        its replies wait for a peer that takes none of them; an HTTP connection with
        nothing left to send is governed by its own timers (keep-alive, header, body).
        """
        now = loop.time()
        limit = self._config.idle_timeout
        for conn in self if limit > 0 else ():
            working = bool(conn.busy) if isinstance(conn, BinaryProtocol) else True
            if conn.moved(working):
                conn.last_active = now
            elif now - conn.last_active > limit:
                self._metrics.idle_timeouts += 1
                conn.close_idle()
        deadline = self._config.request_timeout
        if self._held is not None and deadline > 0:
            for conn in self._held.expired(now, deadline):  # started, never finished
                self._held.release(conn)
                self._metrics.request_timeouts += 1
                conn.refuse_input(REQUEST_TIMEOUT_LINE)
        self._sweeper = loop.call_later(self._sweep_period(), self._sweep, loop)


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
