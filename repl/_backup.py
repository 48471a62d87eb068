"""`bitcask backup DIR [--force]`: an online backup of the server's store into DIR.

Strategy: the work is `client.Client.backup` (a snapshot pulled chunk by chunk into a
temporary sibling directory, checked, fsynced, renamed into place); this module adds
the command row, a progress bar with bytes, rate and ETA on a terminal, and the
one-line summary or error. Any failure is a CommandError (exit status 2) and leaves
nothing under DIR's name. The row is registered in cli.py's TABLE (CLI only: the
shell keeps its table small); the client code is imported on first use.
"""

from __future__ import annotations

import os
import time
from typing import Any

from ._context import CommandError, Context, UsageError
from ._format import terminal_safe
from ._progress import Progress, human_bytes
from ._table import CLI, Arg, Command, Kind, lazy

__all__ = ["COMMAND", "backup"]

FORCE = "--force"


class _RateProgress(Progress):
    """The shared bar plus the transfer rate (`12.3 MiB/s`)."""

    def render(self) -> str:
        line = super().render()
        elapsed = time.monotonic() - self.started
        if elapsed > 0 and self.done:
            line += f"  {human_bytes(self.done / elapsed)}/s"
        return line


async def backup(ctx: Context, a: dict[str, Any]) -> None:
    """Pull a consistent snapshot of the server's store into DIR."""
    import asyncio  # here: `bitcask --help` shows this row without loading asyncio

    from client import BackupError

    force = a.get("force")
    if force is not None and force != FORCE:
        raise UsageError(f"backup takes DIR and optionally {FORCE}, got {force!r}")
    dest = a["dir"]
    client = await ctx.client()
    bar = _RateProgress("backup", None, ctx.stderr, enabled=ctx.stderr.isatty(), unit="bytes")
    try:
        rate = a.get("rate")
        report = await client.backup(
            dest,
            force=force == FORCE,
            progress=bar.update,
            rate=None if rate is None else rate * 1_000_000,
        )
    except BackupError as exc:
        bar.finish(ok=False)
        raise CommandError(str(exc)) from exc
    except asyncio.CancelledError:  # Ctrl-C or SIGTERM (_signals.py): say what is left
        bar.finish(ok=False)
        # --force over an older backup: "nothing was kept" read as if that one was gone
        older = " (the backup already there is unchanged)" if _holds_files(dest) else ""
        ctx.stderr.write(
            f"backup to {os.fspath(dest)!r} interrupted: nothing was kept{older} (run it again)\n"
        )
        ctx.stderr.flush()
        raise
    except BaseException:
        bar.finish(ok=False)
        raise
    elapsed = bar.finish()
    rate = report.bytes / elapsed if elapsed > 0 else 0.0
    line = (
        f"backup of {report.manifest.get('keys', '?')} keys: {report.files} files, "
        f"{human_bytes(report.bytes)} to {os.fspath(report.path)} in {elapsed:.2f} s "
        f"({human_bytes(rate)}/s)"
    )
    ctx.stderr.write(terminal_safe(line) + "\n")  # the directory's name may be anything
    ctx.stderr.flush()


def _holds_files(path: str) -> bool:
    try:
        return bool(os.listdir(path))
    except OSError:
        return False


COMMAND = Command(
    "backup", (Arg("dir", Kind.PATH), Arg("force", Kind.PATH, optional=True, meta=FORCE),
               Arg("rate", Kind.FLOAT, optional=True, keyword="--rate", positive=True, meta="MB/S")),
    "Copy a consistent snapshot of the server's store into DIR.",
    "The server seals its active file and pins that cut (writes and merges go on);\n"
    "the files are pulled into a temporary directory next to DIR, each checked\n"
    "against the server's CRC-32, fsynced, and renamed to DIR once complete: a\n"
    "failed backup leaves nothing under DIR's name. DIR must be absent or empty\n"
    "unless --force (its old contents are replaced once the new backup is complete).\n"
    "--rate MB/S caps the transfer (megabytes per second), leaving the server's CPU\n"
    "and disk to other clients.\n"
    "Restore: bitcask-server --data DIR (it opens reading hints only).",
    lazy("._backup", "backup"), scope=frozenset({CLI}), group="tools",
    examples=("backup /backups/2026-11-30", "backup /backups/latest --force --rate 50"),
)  # fmt: skip
