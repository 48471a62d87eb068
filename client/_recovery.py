"""After a failure on a connection: re-sending idempotent calls, dropping a silent one.

Strategy / invariants:
- `resend`: the connection broke under calls that may be sent again (idempotent
  methods, with retry_idempotent on). They arrive still pending; each is re-sent
  once on the next connection (never a second time: `retry=False` there), within
  its own deadline, which runs on while the client reconnects (`_expire`). The new
  call's outcome is copied into the caller's original future (`_chain`), so the
  caller never learns a re-send happened. If reconnecting fails they fail with
  ConnectError (the reconnection's own) or ConnectionLostError, naming both the
  loss and why they were not re-sent. A call cancelled or timed out meanwhile is
  skipped.
- `SilenceWatch`: calls timed out on a connection. A slow call on a live
  connection must be left alone, a frozen server or a black-holed path must not
  keep the client waiting forever: one `ping` is sent on it (one probe per
  connection at a time), and if nothing at all arrives within the window (the
  probe's reply or any other chunk: `ClientProtocol.received` did not move) the
  connection is aborted, so what is pending fails (or is re-sent, if idempotent)
  and the next call reconnects.
- `Reconnection`: at most one reconnection runs per client; every caller that
  needs a connection joins it (shielded, so a cancelled caller never cancels it).
  It makes up to `reconnect_attempts` attempts with jittered exponential backoff
  (each one the client's own `attempt`); an error that retrying cannot fix (auth,
  protocol version, a Redis port, a closed client) ends it at once, and when
  every attempt failed its ConnectError reaches every waiter (each its own copy:
  one caller's notes never show in another's); the next call starts a new round.
  `stop()` (the client closing) cancels it: its waiters get InterfaceError.
- None of them owns a connection: they act on the `ClientProtocol` handed to them
  and connect through the callables handed to them (the `Client`'s).
"""

from __future__ import annotations

import asyncio
import copy
import functools
import math
from collections.abc import Awaitable, Callable
from typing import Any

from client._config import ClientConfig
from client._protocol import ClientProtocol, Entry
from client.errors import (
    AuthError,
    CallTimeoutError,
    ClientError,
    ConnectError,
    ConnectionLostError,
    InterfaceError,
    RedisPortError,
    ServerError,
    UnsupportedVersionError,
)
from protocol.address import host_port

__all__ = ["PROBE_TIMEOUT", "Reconnection", "SilenceWatch", "cancelling", "own_copy", "resend"]

PROBE_TIMEOUT = 5.0
"""Seconds a silent connection is probed for before it is dropped, when the client
has no timeout of its own (timeout=None)."""


class Reconnection:
    """The one reconnection of a client at a time, shared by all that wait for it.

    Args:
        config: reconnect_attempts, backoff_base, backoff_max, host and port.
        attempt: makes one connection and installs it as the client's.
    """

    def __init__(
        self, config: ClientConfig, attempt: Callable[[], Awaitable[ClientProtocol]]
    ) -> None:
        self._config = config
        self._attempt = attempt
        self._task: asyncio.Task[ClientProtocol] | None = None
        self._stopped = False

    async def join(self) -> ClientProtocol:
        """The new connection: of the reconnection under way, or of one started now."""
        task = self._task
        if task is None:
            task = asyncio.get_running_loop().create_task(self._rounds())
            task.add_done_callback(self._done)
            self._task = task
        try:
            return await asyncio.shield(task)
        except asyncio.CancelledError:
            if self._stopped and task.cancelled() and not cancelling():
                # stop() ended the reconnection (and this caller was not cancelled)
                raise InterfaceError("the client is closed") from None
            raise
        except ClientError as exc:
            # one object for every caller of this round: each gets its own copy, so
            # what one adds to it (the sharded client's notes, a traceback) stays its own
            raise own_copy(exc) from exc.__cause__

    def stop(self) -> None:
        """The client closed: cancel the reconnection under way, start none again."""
        self._stopped = True
        if self._task is not None:
            self._task.cancel()

    def _done(self, task: asyncio.Task[ClientProtocol]) -> None:
        if self._task is task:
            self._task = None
        if not task.cancelled():
            task.exception()  # retrieved here so an unawaited failure is not logged

    async def _rounds(self) -> ClientProtocol:
        cfg = self._config
        last: BaseException | None = None
        for attempt in range(cfg.reconnect_attempts):
            if attempt:
                delay = min(cfg.backoff_max, cfg.backoff_base * 2 ** (attempt - 1))
                import random  # here, not at import: 3M instructions a `bitcask` start

                await asyncio.sleep(delay * random.uniform(0.5, 1.0))
            try:
                return await self._attempt()
            except (AuthError, UnsupportedVersionError, InterfaceError, RedisPortError):
                raise  # retrying cannot help
            except (ConnectError, ServerError) as exc:
                last = exc
        raise ConnectError(
            f"could not reconnect to {host_port(cfg.host, cfg.port)} after {cfg.reconnect_attempts} attempts"
        ) from last


async def resend(
    entries: list[Entry],
    cause: BaseException,
    reconnect: Callable[[], Awaitable[ClientProtocol]],
) -> None:
    """Re-send the still-pending idempotent calls `entries`, lost to `cause`, once on
    the connection `reconnect()` gives; each caller's future gets the outcome."""
    loop = asyncio.get_running_loop()
    # each call keeps its own deadline while the client reconnects
    timers = [loop.call_at(dl, _expire, fut) for fut, dl, _ in entries if dl < math.inf]
    try:
        try:
            proto = await reconnect()
        except BaseException as exc:
            kind = ConnectError if isinstance(exc, ConnectError) else ConnectionLostError
            for fut, _, _ in entries:
                if not fut.done():
                    err = kind(f"connection lost ({cause}) and not re-sent: {exc}")
                    err.__cause__ = exc
                    fut.set_exception(err)
            if not isinstance(exc, Exception):
                raise
            return
        for fut, deadline, call in entries:
            if fut.done() or call is None:
                continue  # cancelled, or timed out while reconnecting
            try:
                again = proto.request(call[0], call[1], deadline, False)  # only once
            except ClientError as exc:
                fut.set_exception(exc)
                continue
            again.add_done_callback(functools.partial(_chain, fut))
    finally:
        for timer in timers:
            timer.cancel()


class SilenceWatch:
    """Tells a silent connection from a slow call on a live one, after calls timed out.

    Args:
        address: "host:port", for the reason the connection is dropped.
        window: seconds to wait for anything at all after the ping (the client's
            timeout, or PROBE_TIMEOUT when it has none).
    """

    def __init__(self, address: str, window: float | None) -> None:
        self.address = address
        self.window = PROBE_TIMEOUT if window is None else window
        self._probing: ClientProtocol | None = None  # a connection pinged after a timeout

    def timed_out(self, proto: ClientProtocol) -> None:
        """Calls timed out on `proto`: ping on it, unless a probe already runs there."""
        if proto.closed or self._probing is proto:
            return
        try:
            probe = proto.request("ping", [], proto.time() + self.window)
        except ClientError:
            return
        self._probing = proto
        probe.add_done_callback(functools.partial(self._probed, proto, proto.received))

    def _probed(self, proto: ClientProtocol, heard: int, probe: asyncio.Future[Any]) -> None:
        if self._probing is proto:
            self._probing = None
        if probe.cancelled():
            return
        exc = probe.exception()
        if isinstance(exc, CallTimeoutError) and proto.received == heard:
            # nothing at all came back since the probe was sent: presumed dead
            proto.abort(
                TimeoutError(
                    f"{self.address} sent nothing for {self.window:g} s after a call "
                    "timed out: connection dropped"
                )
            )


def own_copy(exc: ClientError) -> ClientError:
    """A copy of `exc` (its type, message, attributes and notes) for one of the callers
    that waited on one shared outcome (a reconnection, a pool's start)."""
    try:
        mine = copy.copy(exc)
    except Exception:  # an error type that cannot be rebuilt: shared, as before
        return exc
    notes = getattr(exc, "__notes__", None)
    if notes is not None:
        mine.__notes__ = list(notes)
    return mine


def cancelling() -> bool:
    """True if the running task itself was asked to cancel (not only what it awaits)."""
    task = asyncio.current_task()
    return task is not None and task.cancelling() > 0


def _expire(fut: asyncio.Future[Any]) -> None:
    if not fut.done():
        fut.set_exception(CallTimeoutError("call timed out while reconnecting"))


def _chain(old: asyncio.Future[Any], new: asyncio.Future[Any]) -> None:
    """Copy the outcome of a re-sent call into the caller's original future."""
    if new.cancelled():
        if not old.done():
            old.cancel()
        return
    exc = new.exception()  # retrieved even when `old` is gone, so nothing is logged
    if old.done():
        return
    if exc is not None:
        old.set_exception(exc)
    else:
        old.set_result(new.result())
