"""Ctrl-C and SIGTERM in the middle of a `bitcask` command: both stop it the same way.

Without this, asyncio.run's Ctrl-C cancelled the command once and raised
KeyboardInterrupt at the second one wherever the main thread was (in the middle of
the command's own cleanup: a temporary file or directory left behind), and SIGTERM
(a scheduler stopping a job, `systemctl stop`, `timeout`) ended the process at once:
no cleanup, no line saying what was left.

Inside `stoppable()` the first SIGINT or SIGTERM cancels the command's task, so its
cleanup runs and its one line says what state things are in; later ones are
ignored until the process exits (the cleanups are bounded: removing a temporary,
stopping a merge at its next record; SIGKILL remains). Leaving the block after such a signal (cancelled, or
having caught the cancellation) raises `Interrupted`, whose `exit_code` is 128 + the signal: 130 after Ctrl-C, 143 after
SIGTERM, as a shell reports a process those signals ended.

`bitcask-shell` uses the same block around its whole session with SIGTERM and SIGHUP
only (its Ctrl-C cancels one command, `_interactive.py`): the prompt or the running
command is cancelled, the terminal given back, the connection closed, exit 143 (129
for a hang-up). `first` runs at the signal, before the cancellation (the shell sends
its output to /dev/null there after a hang-up: the terminal is gone).
"""

from __future__ import annotations

import asyncio
import contextlib
import signal
from collections.abc import Callable, Iterator
from typing import Any

__all__ = ["SESSION_SIGNALS", "Interrupted", "Stop", "stoppable"]

SIGNALS = (signal.SIGINT, signal.SIGTERM)
# what ends a bitcask-shell session (its Ctrl-C cancels one command): `_interactive.py`,
# and the pager, which they end too (`_ui.page`)
SESSION_SIGNALS = (signal.SIGTERM, signal.SIGHUP)


class Interrupted(Exception):
    """The command was stopped by `signum`; its own line is already written."""

    def __init__(self, signum: int) -> None:
        super().__init__(signal.Signals(signum).name)
        self.signum = signum
        self.exit_code = 128 + signum


class Stop:
    """Which signal stopped the command (None: none yet)."""

    def __init__(self) -> None:
        self.signum: int | None = None


@contextlib.contextmanager
def stoppable(
    signals: tuple[int, ...] = SIGNALS, first: Callable[[int], None] | None = None
) -> Iterator[Stop]:
    """Within the running task: SIGINT / SIGTERM (or `signals`) cancel it once; see the
    module doc."""
    stop = Stop()
    task = asyncio.current_task()
    loop = asyncio.get_running_loop()
    previous: dict[int, Callable[..., Any] | int | None] = {}

    def on_signal(signum: int) -> None:
        if stop.signum is None and task is not None:
            stop.signum = signum
            if first is not None:
                first(signum)
            task.cancel()

    if task is not None:
        for signum in signals:
            before = signal.getsignal(signum)
            try:
                loop.add_signal_handler(signum, on_signal, signum)
            except (NotImplementedError, RuntimeError, ValueError):  # not the main thread
                continue
            previous[signum] = before
    try:
        yield stop
        if stop.signum is not None and task is not None:  # the command caught it
            task.uncancel()
            raise Interrupted(stop.signum)
    except asyncio.CancelledError:
        if stop.signum is None or task is None:
            raise
        task.uncancel()
        raise Interrupted(stop.signum) from None
    finally:
        for sig, before in previous.items():
            loop.remove_signal_handler(sig)
            if stop.signum is not None:
                # stopped: the process only closes its connections and exits; a
                # second Ctrl-C then (or while Python finalizes, where it killed the
                # process by SIGINT instead of exiting 130) changes nothing
                signal.signal(sig, signal.SIG_IGN)
            elif before is not None:
                signal.signal(sig, before)  # asyncio.run's own Ctrl-C handler
