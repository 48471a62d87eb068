"""Read an ``strace -f -y`` log into events, for the power-loss ordering tests.

Strategy: a power cut keeps only what was fsynced (fdatasync/fsync) and, for a name
created, renamed or removed, only once its directory was fsynced. Whether the engine
and the server order their system calls that way is a property of the call order
alone, so the tests run a real workload under strace and check the order in its log.
``-y`` makes strace print the path of every descriptor (``5</d/0000000002.data>``),
so the log names the file each call touched without tracking descriptors here.

A call "happens before" another when it returned before the other was entered: with
``-f`` a call of one thread may be split around another thread's (``<unfinished
...>`` ... ``<... call resumed>``), so every event keeps its entry and its return
position in the log (``start``, ``end``).
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

from tests.protocol._redis_server import require_binary

__all__ = ["TRACED", "Event", "Trace", "require_strace", "strace_argv"]

# Every call the checks read: syncs, names, data-file changes, markers, requests, replies.
TRACED = (
    "openat,open,creat,fsync,fdatasync,sync,syncfs,rename,renameat,renameat2,unlink,"
    "unlinkat,mkdir,mkdirat,rmdir,ftruncate,write,pwrite64,writev,sendto,sendmsg,read,"
    "recvfrom,recvmsg"
)

_LINE = re.compile(r"^(\d+)\s+(.*)$")
_CALL = re.compile(r"^(\w+)\((.*)$")
_RESUMED = re.compile(r"^<\.\.\. (\w+) resumed>(.*)$")
_FD = re.compile(r"(?:-?\d+|AT_FDCWD)<([^>]*)>")
_RETURN = re.compile(r"\)\s+=\s")  # strace pads before the '=' of a resumed call
_STR = re.compile(r'"((?:[^"\\]|\\.)*)"')


def require_strace() -> str:
    """Path of strace; skip (or fail under CI=true) naming the Debian package."""
    return require_binary("strace", "strace")


def strace_argv(strace: str, log: Path) -> list[str]:
    """The strace options every test here uses (then the program, or ``-p PID``)."""
    return [strace, "-f", "-qq", "-y", "-s", "64", "-o", str(log), "-e", f"trace={TRACED}"]


@dataclass(frozen=True)
class Event:
    """One completed system call: where it entered and returned in the log."""

    start: int
    end: int
    pid: int
    call: str
    args: str
    result: str

    @property
    def ok(self) -> bool:
        return not self.result.startswith("-1")

    @property
    def fd_path(self) -> str | None:
        """The path of the descriptor in the first argument (``-y``), if any."""
        m = _FD.match(self.args)
        return m.group(1) if m else None

    @property
    def returned_path(self) -> str | None:
        """The path of a descriptor the call returned (openat)."""
        m = _FD.match(self.result)
        return m.group(1) if m else None

    def names(self) -> list[str]:
        """The path arguments, made absolute with their dirfd (rename, unlink, mkdir)."""
        out: list[str] = []
        base: str | None = None
        pos = 0
        while pos < len(self.args):
            fd = _FD.match(self.args, pos)
            s = _STR.match(self.args, pos)
            if fd:
                base, pos = fd.group(1), fd.end()
            elif s:
                name = s.group(1)
                out.append(os.path.join(base, name) if base else name)
                base, pos = None, s.end()
            else:
                pos += 1
        return out

    @property
    def payload(self) -> str:
        """The first string argument (the bytes a write carried, as strace shows them)."""
        m = _STR.search(self.args)
        return m.group(1) if m else ""


class Trace:
    """The events of one strace log, in order of entry."""

    def __init__(self, log: Path) -> None:
        pending: dict[int, tuple[int, str, str]] = {}
        events: list[Event] = []
        for i, line in enumerate(log.read_text(errors="replace").splitlines()):
            m = _LINE.match(line)
            if m is None:
                continue
            pid, rest = int(m.group(1)), m.group(2)
            resumed = _RESUMED.match(rest)
            if resumed:
                if pid not in pending:
                    continue
                start, call, head = pending.pop(pid)
                body = head + resumed.group(2)
            else:
                called = _CALL.match(rest)
                if called is None:  # +++ exited, --- SIGNAL
                    continue
                start, call, body = i, called.group(1), called.group(2)
                if body.endswith("<unfinished ...>"):
                    pending[pid] = (i, call, body[: -len("<unfinished ...>")])
                    continue
            ends = list(_RETURN.finditer(body))
            if not ends:
                continue  # a call the process never returned from (exit)
            cut = ends[-1]
            events.append(
                Event(start, i, pid, call, body[: cut.start()], body[cut.end() :].strip())
            )
        self.events = sorted(events, key=lambda e: e.start)

    def __iter__(self) -> Iterator[Event]:
        return iter(self.events)

    def where(self, pred: Callable[[Event], bool]) -> list[Event]:
        return [e for e in self.events if e.ok and pred(e)]

    def on(self, path: str, *calls: str) -> list[Event]:
        """The successful ``calls`` on a descriptor of ``path``."""
        return [e for e in self.events if e.ok and e.call in calls and e.fd_path == path]

    def synced(self, path: str, after: int, before: int) -> bool:
        """An fsync or fdatasync of ``path`` entered after position ``after`` returned
        before position ``before`` (a directory too: its descriptor's path)."""
        return any(
            e.call in ("fsync", "fdatasync") and e.fd_path == path
            for e in self.where(lambda e: after < e.start and e.end < before)
        )

    def created(self, path: str) -> list[Event]:
        """The opens that created ``path`` (O_CREAT), and mkdirs of it."""
        return self.where(
            lambda e: (e.call in ("openat", "open", "creat") and "O_CREAT" in e.args
                       and e.returned_path == path)
            or (e.call in ("mkdir", "mkdirat") and path in e.names())
        )  # fmt: skip

    def renames(self) -> list[tuple[Event, str, str]]:
        """(event, source, destination) of every rename."""
        out = []
        for e in self.where(lambda e: e.call.startswith("rename")):
            names = e.names()
            out.append((e, names[0], names[1]))
        return out

    def unlinks(self) -> list[tuple[Event, str]]:
        """(event, path) of every unlink and rmdir."""
        return [
            (e, e.names()[0])
            for e in self.where(lambda e: e.call in ("unlink", "unlinkat", "rmdir"))
        ]
