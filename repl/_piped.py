"""`bitcask-shell` with stdin not a terminal: one command per line, pipelined.

Strategy: lines are parsed as they arrive and commands that are one request
(`Command.single`: get, put, mget, ...) are started at once, up to `WINDOW` in
flight on the one connection, instead of waiting for each answer (the server
answers a connection's requests in order and a later request sees an earlier
one's writes, so the results are those of running the lines one by one). Replies
and errors are printed strictly in input order, each when the oldest command in
flight completes; errors go to stderr (stdout flushed first, so a terminal shows
both in order) and make the exit status 2. Any other command (keys, merge DIR,
auth, help, quit) is a barrier: everything before it completes first, then it
runs alone. So does the first command, and any command while there is no open
connection: connecting happens once, alone, before anything is pipelined.

Order: each command is a task; tasks take their first step in the order they were
created (the event loop's ready queue is FIFO), and on an open connection that
step writes the request (the client's fast path), so requests leave in input
order. (A call that finds the write buffer full waits for space; the client wakes
such waiters in order.)

stdin is read in a thread, in chunks, at most CHUNKS_AHEAD chunks ahead of the
commands (memory stays bounded whatever the input's size): the event loop keeps receiving replies
while the producer of the input thinks, and when no further line is ready the
window is drained and stdout flushed, so a program that writes one line and waits
for its answer (a coprocess) gets it.
"""

from __future__ import annotations

import asyncio
import collections
import os
import sys
import threading
from typing import BinaryIO

from ._commands import COMMANDS
from ._context import ConnectOptions
from ._format import Reply, plain, raw
from ._session import Session, describe
from ._table import SHELL

__all__ = ["WINDOW", "run_piped"]

WINDOW = 1024  # commands in flight at once
CHUNK = 1 << 16
CHUNKS_AHEAD = 16  # 1 MiB of input read ahead at most


class _Input:
    """Lines of a file descriptor, read by a daemon thread in chunks."""

    def __init__(self, fd: int, loop: asyncio.AbstractEventLoop) -> None:
        self._chunks: asyncio.Queue[bytes] = asyncio.Queue()
        self._lines: collections.deque[bytes] = collections.deque()
        # the line being read, in pieces: a line of many chunks (a 64 MiB value) is
        # joined once, not copied again with every chunk
        self._partial: list[bytes] = []
        self._eof = False
        self._loop = loop
        self._fd = fd
        # at most CHUNKS_AHEAD chunks read and not yet parsed: a huge input is not
        # pulled into memory faster than the commands go out
        self._room = threading.Semaphore(CHUNKS_AHEAD)
        threading.Thread(target=self._read, name="stdin", daemon=True).start()

    def _read(self) -> None:
        while True:
            self._room.acquire()
            try:
                data = os.read(self._fd, CHUNK)
            except OSError:
                data = b""
            self._loop.call_soon_threadsafe(self._chunks.put_nowait, data)
            if not data:
                return

    def _take(self, data: bytes) -> None:
        self._room.release()
        if not data:
            self._eof = True
            if self._partial:
                self._lines.append(b"".join(self._partial))
                self._partial = []
            return
        if b"\n" not in data:
            self._partial.append(data)
            return
        parts = data.split(b"\n")
        self._partial.append(parts[0])
        parts[0] = b"".join(self._partial)
        tail = parts.pop()
        self._partial = [tail] if tail else []
        self._lines.extend(parts)

    def ready(self) -> bool:
        """A line (or the end) can be had without waiting."""
        while not self._lines and not self._eof and not self._chunks.empty():
            self._take(self._chunks.get_nowait())
        return bool(self._lines) or self._eof

    async def next(self) -> bytes | None:
        """The next line without its newline, or None at the end."""
        while not self._lines and not self._eof:
            self._take(await self._chunks.get())
        return self._lines.popleft() if self._lines else None


class _Output:
    """Replies to stdout, errors to stderr, in order; remembers whether any failed."""

    def __init__(self, out: BinaryIO, options: ConnectOptions, raw_mode: bool) -> None:
        self.out = out
        self.options = options
        self.failed = False
        # raw bytes for a pipe; for a terminal the formatted form, whose escapes keep a
        # stored key's control bytes (an OSC title change, a clear screen) from running
        self._render = raw if raw_mode else plain

    def reply(self, reply: Reply | None) -> None:
        if reply is not None:
            self.out.write(self._render(reply))

    def error(self, exc: BaseException) -> None:
        self.failed = True
        self.out.flush()
        sys.stderr.write(f"(error) {describe(exc, self.options, SHELL)}\n")
        sys.stderr.flush()


Pending = tuple["asyncio.Future[Reply | None] | None", BaseException | None]


async def run_piped(options: ConnectOptions, raw_mode: bool) -> int:
    """One command per stdin line, replies on stdout, errors on stderr.

    Args:
        options: where to connect.
        raw_mode: replies as raw bytes (for a pipe), else formatted (for a terminal);
            `_options.raw_output` decides, as for `bitcask`.

    Returns:
        2 if any line failed, else 0.
    """
    out = _Output(sys.stdout.buffer, options, raw_mode)

    def emit(reply: Reply) -> None:  # streaming commands print as they go
        out.reply(reply)

    session = Session(options, COMMANDS, SHELL, interactive=False, emit=emit)
    source = _Input(sys.stdin.fileno(), asyncio.get_running_loop())
    window: collections.deque[Pending] = collections.deque()

    async def settle() -> None:
        """Print the oldest command's result."""
        task, error = window.popleft()
        if task is not None:
            try:
                reply = await task
            except Exception as exc:
                error = exc
            else:
                out.reply(reply)  # outside the try: a closed stdout is not a command error
                return
        if error is not None:
            out.error(error)

    async def drain() -> None:
        while window:
            await settle()
        out.out.flush()

    try:
        while True:
            if not source.ready():
                await drain()  # nothing more to send yet: answer (and flush) what was asked
            raw_line = await source.next()
            if raw_line is None:
                break
            line = raw_line.rstrip(b"\r").decode("utf-8", "surrogateescape")
            if not line.strip() or line.lstrip().startswith("#"):
                continue
            try:
                cmd, args = session.parse(line)
            except Exception as exc:
                window.append((None, exc))
                continue
            if cmd.single and session.connected:
                window.append((asyncio.ensure_future(session.execute(cmd, args)), None))
                if len(window) >= WINDOW:
                    await settle()
                continue
            await drain()  # a barrier: it runs alone, after everything before it
            try:
                reply = await session.execute(cmd, args)
            except EOFError:  # quit
                break
            except Exception as exc:
                out.error(exc)
            else:
                out.reply(reply)
        await drain()
    finally:
        for task, _ in window:
            if task is not None:
                task.cancel()
        await session.close()
        out.out.flush()
    return 2 if out.failed else 0
