"""A progress bar on stderr for long commands (import, export, check, repair, merge).

Strategy: one line redrawn in place with a carriage return, at most ten times a
second, only when the stream is a terminal; when it is not (scripts, tests), the bar
draws nothing and only the command's summary line is printed. Without a known total
it shows a spinner, the count so far and the elapsed time.
"""

from __future__ import annotations

import time
from typing import TextIO

from ._context import dumb_terminal

__all__ = ["Progress", "human_bytes"]

_SPIN = "|/-\\"


def human_bytes(n: float) -> str:
    """`1.5 MiB` style sizes.

    Example:
        >>> human_bytes(1536)
        '1.5 KiB'
    """
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if abs(n) < 1024 or unit == "TiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    raise AssertionError("unreachable")


def _duration(seconds: float) -> str:
    """`45s`, `3m05s`, `2h10m`.

    Example:
        >>> _duration(185)
        '3m05s'
    """
    s = int(seconds + 0.5)
    if s < 60:
        return f"{s}s"
    if s < 3600:
        return f"{s // 60}m{s % 60:02d}s"
    return f"{s // 3600}h{s % 3600 // 60:02d}m"


class Progress:
    """A redrawn `label [#####-----]  45%  4500/10000  1.2s  ETA 1s` line.

    Args:
        label: what is being done ("import").
        total: the amount at 100 %, or None when unknown.
        stream: where to draw (stderr).
        enabled: draw at all (default: when the stream is a terminal).
        unit: "bytes" shows sizes instead of counts.

    Example:
        >>> import io
        >>> p = Progress("copy", 10, io.StringIO(), enabled=False)
        >>> p.advance(4); p.done
        4
    """

    WIDTH = 30
    INTERVAL = 0.1

    def __init__(
        self,
        label: str,
        total: int | None,
        stream: TextIO,
        *,
        enabled: bool | None = None,
        unit: str = "",
    ) -> None:
        self.label = label
        self.total = total
        self.stream = stream
        # a dumb terminal shows a redrawn line as a heap of lines and escapes
        self.enabled = (stream.isatty() if enabled is None else enabled) and not dumb_terminal()
        self.unit = unit
        self.done = 0
        self.started = time.monotonic()
        self._drawn_at = 0.0
        self._spin = 0

    def _amount(self, n: int) -> str:
        return human_bytes(n) if self.unit == "bytes" else f"{n:,}"

    def render(self) -> str:
        """The bar as text (without the carriage return)."""
        elapsed = time.monotonic() - self.started
        if self.total:
            frac = min(1.0, self.done / self.total)
            filled = int(frac * self.WIDTH)
            bar = "#" * filled + "-" * (self.WIDTH - filled)
            amount = f"{self._amount(self.done)}/{self._amount(self.total)}"
            line = f"{self.label} [{bar}] {frac * 100:3.0f}%  {amount}  {elapsed:.1f}s"
            if 0 < self.done < self.total and elapsed > 0:
                left = (self.total - self.done) * elapsed / self.done
                line += f"  ETA {_duration(left)}"
            return line
        self._spin = (self._spin + 1) % len(_SPIN)
        return f"{self.label} {_SPIN[self._spin]} {self._amount(self.done)}  {elapsed:.1f}s"

    def update(self, done: int, total: int | None = None) -> None:
        """Set the amount done (and the total, when it becomes known)."""
        self.done = done
        if total is not None:
            self.total = total
        now = time.monotonic()
        if self.enabled and now - self._drawn_at >= self.INTERVAL:
            self._drawn_at = now
            self.stream.write("\r" + self.render() + "\x1b[K")
            self.stream.flush()

    def advance(self, n: int = 1) -> None:
        self.update(self.done + n)

    def finish(self, *, ok: bool = True) -> float:
        """Draw the final state and end the line, or (`ok=False`, the command failed)
        erase the bar so the error that follows starts on a clean line.

        Returns the elapsed seconds.
        """
        if self.enabled:
            self._drawn_at = 0.0
            self.stream.write("\r" + self.render() + "\x1b[K\n" if ok else "\r\x1b[K")
            self.stream.flush()
            self.enabled = False  # finished once: a second call draws nothing
        return time.monotonic() - self.started
