"""Run a real program on a pseudo-terminal and collect everything it sends there."""

from __future__ import annotations

import os
import pty
import select
import signal
import subprocess
import time

from tests.repl.conftest import ROOT, TIMEOUT


def in_pty(
    argv: list[str],
    env: dict[str, str],
    steps: tuple[tuple[bytes, bytes], ...] = (),
    stdin: bytes | None = None,
) -> bytes:
    """Run `argv` on a pseudo-terminal, typing each step's text once its cue has been
    shown (after what the step before it typed); the whole output, as sent.

    With `stdin`, standard input is instead a pipe carrying those bytes (then closed)
    while stdout and stderr stay on the terminal: `bitcask-shell < script` at a terminal.
    """
    master, slave = pty.openpty()
    proc = subprocess.Popen(
        argv,
        stdin=slave if stdin is None else subprocess.PIPE,
        stdout=slave,
        stderr=slave,
        env=env,
        cwd=ROOT,
        start_new_session=True,
    )
    os.close(slave)
    if stdin is not None:
        assert proc.stdin is not None
        proc.stdin.write(stdin)  # scripts here are small: the pipe's buffer holds them
        proc.stdin.close()
    out = b""
    todo, seen = list(steps), 0
    deadline = time.monotonic() + TIMEOUT
    try:
        while time.monotonic() < deadline:
            if todo and todo[0][0] in out[seen:]:
                cue, typed = todo.pop(0)
                seen = out.index(cue, seen) + len(cue)
                os.write(master, typed)
            ready, _, _ = select.select([master], [], [], 0.5)
            if not ready:
                if proc.poll() is not None:
                    break
                continue
            try:
                chunk = os.read(master, 65536)
            except OSError:  # the child closed the terminal
                break
            if not chunk:
                break
            out += chunk
        else:
            raise AssertionError(f"{argv} did not finish; output:\n{out!r}")
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(TIMEOUT)
        os.close(master)
    return out
