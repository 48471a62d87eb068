"""A client shared with another thread, against a real server.

docs/client.md says: a client belongs to the event loop that connected it; a call
from another loop raises InterfaceError before anything is sent. The loop tests in
test_faults.py run the second loop after the first one ended (two asyncio.run in
a row). Here the client's loop is still running, in its own thread, while a
second thread runs a loop of its own and uses the client: the case of an
application that starts a worker thread with `asyncio.run` and hands it the
client it already has.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import os
import signal
import threading
import time
from collections.abc import Awaitable, Callable, Iterator
from typing import Any

import pytest
import uvloop

from client import Client, ConnectionLostError, InterfaceError, connect
from tests.serverproc import ServerProcess

pytestmark = pytest.mark.timeout(60)

BOUND = 15.0  # seconds any single wait may take before it counts as a hang


LoopFactory = Callable[[], asyncio.AbstractEventLoop]
LOOPS: list[LoopFactory] = [asyncio.new_event_loop, uvloop.new_event_loop]
LOOP_IDS = ["asyncio", "uvloop"]


class LoopThread:
    """An event loop running in a thread of its own, with one client connected in it."""

    def __init__(self, new_loop: LoopFactory) -> None:
        self.loop = new_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.thread.start()

    def run(self, awaitable: Awaitable[Any]) -> Any:
        """Await `awaitable` in the thread's loop; its result, here."""
        return self.submit(awaitable).result(BOUND)

    def submit(self, awaitable: Awaitable[Any]) -> concurrent.futures.Future[Any]:
        """Start awaiting `awaitable` in the thread's loop (connect() is no coroutine)."""

        async def wait() -> Any:
            return await awaitable

        return asyncio.run_coroutine_threadsafe(wait(), self.loop)

    def stop(self) -> None:
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(BOUND)
        self.loop.close()


@contextlib.contextmanager
def loop_thread(new_loop: LoopFactory) -> Iterator[LoopThread]:
    owner = LoopThread(new_loop)
    try:
        yield owner
    finally:
        owner.stop()


def in_new_loop(fn: Callable[[], Awaitable[Any]], new_loop: LoopFactory) -> Any:
    """Run `fn()` in a second thread, in a loop of its own (asyncio.run's way); its
    outcome."""
    outcome: list[Any] = []

    async def run() -> Any:
        return await fn()

    def main() -> None:
        try:
            with asyncio.Runner(loop_factory=new_loop) as runner:
                outcome.append(runner.run(run()))
        except BaseException as exc:
            outcome.append(exc)

    thread = threading.Thread(target=main)
    thread.start()
    thread.join(BOUND)
    assert not thread.is_alive(), "the second thread's loop hung"
    return outcome[0]


@pytest.mark.parametrize("new_loop", LOOPS, ids=LOOP_IDS)
def test_a_call_from_another_threads_loop_sends_nothing(
    server: ServerProcess, new_loop: LoopFactory
) -> None:
    # Before: the call passed the loop check (the client's loop *is* running, in the
    # other thread), so the incr was written and applied by the server while its
    # caller got "RuntimeError: Task got Future attached to a different loop": an
    # application retrying on that error counted twice.
    with loop_thread(new_loop) as owner:
        c: Client = owner.run(connect(server.host, server.port))
        owner.run(c.put(b"n", b"0"))

        async def from_the_other_thread() -> None:
            for call in (lambda: c.incr(b"n"), lambda: c.put(b"k", b"v"), c.hello, c.ping):
                with pytest.raises(InterfaceError, match="event loop"):
                    await call()

        assert in_new_loop(from_the_other_thread, new_loop) is None
        # the owner's loop goes on as before: nothing was applied, nothing is pending
        assert owner.run(c.mget([b"n", b"k"])) == [b"0", None]
        assert owner.run(c.incr(b"n")) == 1
        assert c.in_flight == 0
        owner.run(c.close())


@pytest.mark.parametrize("new_loop", LOOPS, ids=LOOP_IDS)
def test_close_from_another_thread_ends_the_owners_calls(
    server: ServerProcess, new_loop: LoopFactory
) -> None:
    # Before: close() from another thread aborted the transport from that thread; the
    # owner's loop, asleep in its selector with no timer (timeout=None), was never
    # woken, and its reader was gone: the call hung for good, even once the server
    # answered again. Now the drop is handed to the owner's loop: its calls end with
    # ConnectionLostError, as after terminate().
    assert server.proc is not None
    with loop_thread(new_loop) as owner:
        c: Client = owner.run(connect(server.host, server.port, timeout=None))
        owner.run(c.put(b"k", b"v"))
        os.kill(server.proc.pid, signal.SIGSTOP)  # the get waits with no timeout
        try:
            waiting = owner.submit(c.get(b"k"))
            deadline = time.monotonic() + BOUND
            while c.in_flight == 0 and time.monotonic() < deadline:
                time.sleep(0.01)  # until the get is written
            assert c.in_flight == 1

            async def close_it() -> bool:
                await c.close()
                return c.closed

            assert in_new_loop(close_it, new_loop) is True
            with pytest.raises(ConnectionLostError):
                waiting.result(BOUND)
        finally:
            os.kill(server.proc.pid, signal.SIGCONT)
        with pytest.raises(InterfaceError, match="closed"):
            owner.run(c.get(b"k"))

    async def check() -> None:
        async with connect(server.host, server.port) as fresh:
            assert await fresh.get(b"k") == b"v"

    asyncio.run(check())
