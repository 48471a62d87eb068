"""Pieces of the interactive shell's screen: history file, pager, toolbar, prompt.

Kept apart from `shell.py` (the loop) so each can be tested without a terminal.
"""

from __future__ import annotations

import os
import shlex
import shutil
import signal
import subprocess
from collections.abc import Iterable
from pathlib import Path
from types import FrameType

from prompt_toolkit.formatted_text import StyleAndTextTuples
from prompt_toolkit.history import FileHistory

from ._format import terminal_safe
from ._session import Session
from ._signals import SESSION_SIGNALS

__all__ = ["BoundedFileHistory", "page", "prompt_fragments", "should_page", "toolbar_fragments"]

Fragments = StyleAndTextTuples


class BoundedFileHistory(FileHistory):
    """A FileHistory that keeps only the newest `size` entries.

    On load, a file grown past twice the size is rewritten with the newest `size`
    entries, so the file stays bounded without rewriting it after every command.
    """

    def __init__(self, filename: Path, size: int) -> None:
        filename.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        # values typed at the prompt (tokens, personal data) are for this user only,
        # as redis-cli does: 0600, and an older file made readable by others is fixed
        if size:
            os.close(os.open(filename, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600))
        if filename.exists():
            os.chmod(filename, 0o600)
        super().__init__(str(filename))
        self.size = size
        self.path = filename
        self.failure: str | None = None  # why writing stopped, until the shell shows it
        self._broken = False

    def load_history_strings(self) -> Iterable[str]:
        newest_first = list(super().load_history_strings())
        kept = newest_first[: self.size]
        if len(newest_first) > 2 * self.size:
            tmp = self.path.with_suffix(".tmp")
            with open(os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600), "wb") as f:
                for entry in reversed(kept):
                    f.write(b"\n# kept\n")
                    f.write("".join(f"+{line}\n" for line in entry.split("\n")).encode())
            os.replace(tmp, self.path)
        return kept

    def append_string(self, string: str) -> None:
        # a paste of many lines is as many commands: each is an entry of its own, so an
        # `auth` line among them is left out like a typed one (not even in memory: it
        # would come back as a grey suggestion on screen)
        for line in string.split("\n"):
            line = line.removesuffix("\r")
            if line.strip() and not is_secret(line):
                super().append_string(line)

    def store_string(self, string: str) -> None:
        if not self.size or self._broken or is_secret(string):
            return
        try:
            super().store_string(string)
        except OSError as exc:
            # the file went away or became unwritable under the shell (disk full, a
            # directory in its place, a read-only remount): prompt_toolkit printed a
            # traceback for every command. One line, once; the session keeps its
            # history in memory.
            self._broken = True
            self.failure = (
                f"history not saved from now on: {exc.filename or self.path}: {exc.strerror or exc}"
            )

    def take_failure(self) -> str | None:
        """The one-line reason writing stopped, once (then None)."""
        failure, self.failure = self.failure, None
        return failure


def is_secret(line: str) -> bool:
    """`auth TOKEN` lines stay out of the history file (redis-cli does the same).

    The command word is found as the shell splits words (a tab separates too, and a
    pasted `auth<TAB>TOKEN` runs as auth), so such a line is secret as well.
    """
    words = line.split(maxsplit=1)
    return len(words) == 2 and words[0].lower() == "auth"


def should_page(text: str, rows: int | None = None, columns: int | None = None) -> bool:
    """Long enough to need the pager: more screen rows than the terminal shows, a line
    wider than the window counting for the rows it wraps to (a 1 MiB value is one
    line of 3.5 million characters: 35,000 rows at 100 columns, not one).

    Example:
        >>> should_page("x" * 2000, rows=24, columns=80), should_page("x" * 2000, 24, 2000)
        (True, False)
    """
    size = shutil.get_terminal_size((80, 24))
    rows, columns = rows or size.lines, max(columns or size.columns, 1)
    room, drawn = rows - 2, 0
    for line in text.split("\n")[:-1] if text.endswith("\n") else text.split("\n"):
        drawn += max(1, -(-len(line) // columns))  # ceil: the rows it wraps to
        if drawn > room:
            return True
    return False


def page(text: str, command: str) -> bool:
    """Show `text` through the pager command; False when the pager cannot run."""
    try:
        argv = shlex.split(command)
        if not argv or shutil.which(argv[0]) is None:
            return False
        env = {**os.environ, "LESSCHARSET": os.environ.get("LESSCHARSET", "utf-8")}
        # Ctrl-C belongs to the pager while it runs (less uses it); the shell must
        # survive it. A Python-level handler, unlike SIG_IGN, is reset by exec. A
        # SIGTERM / SIGHUP ends the session (`_interactive.py`), which waited, with the
        # event loop, for someone to quit the pager: it ends the pager first (the loop
        # still learns of the signal, by its wakeup fd, and stops once the pager is gone).
        pager: subprocess.Popen[bytes] | None = None

        def on_signal(signum: int, _frame: FrameType | None) -> None:
            if signum != signal.SIGINT and pager is not None and pager.poll() is None:
                pager.terminate()

        previous = {s: signal.signal(s, on_signal) for s in (signal.SIGINT, *SESSION_SIGNALS)}
        try:
            pager = subprocess.Popen(argv, stdin=subprocess.PIPE, env=env)
            pager.communicate(text.encode("utf-8", "surrogateescape"))
        finally:
            for signum, handler in previous.items():
                signal.signal(signum, handler)
        return True
    except (OSError, ValueError):
        return False


def _rtt(seconds: float | None) -> str:
    if seconds is None:
        return "-"
    return f"{seconds * 1000:.2f} ms" if seconds < 1 else f"{seconds:.2f} s"


def toolbar_fragments(session: Session) -> Fragments:
    """` 127.0.0.1:7379 | bitcask 0.1.0 | 12 keys | rtt 0.21 ms `, or a warning when down."""
    address = session.options.address
    if not session.connected:
        return [
            (
                "class:bottom-toolbar.warn",
                f" {address} | not connected: the next command reconnects ",
            )
        ]
    kind = "redis" if session.options.redis else "bitcask"  # the protocol spoken
    # the endpoint's own words (HELLO, INFO): one line, nothing a terminal acts on
    shown = terminal_safe(str(session.server_version)) if session.server_version else ""
    version = f"{kind} {shown}" if shown else kind
    n = session.key_count
    keys = "? keys" if n is None else f"{n:,} key" if n == 1 else f"{n:,} keys"
    return [
        ("class:bottom-toolbar", f" {address} | {version} | {keys} | rtt {_rtt(session.last_rtt)} ")
    ]


def prompt_fragments(session: Session) -> Fragments:
    """`127.0.0.1:7379> ` (redis-cli's prompt)."""
    return [("class:prompt", f"{session.options.address}> ")]
