"""bitcask-shell and bitcask at terminals of real sizes (tmux, a pty), against a real
server: what is drawn fits the window it is drawn in.

Before: `help` listed the commands in a 113-column table (usages padded to the width of
`set KEY VALUE [NX|XX] [GET] [KEEPTTL] [TTL SECONDS]`), so at 80 columns every line
wrapped mid-word and at 20 the summaries were shredded.
"""

from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from repl import COMMANDS
from tests.repl.test_shell_tmux import Tmux
from tests.repl.test_terminal_safety import _in_pty
from tests.serverproc import ServerProcess


@pytest.fixture
def tmux(server: ServerProcess, home_env: dict[str, str], tmp_path: Path) -> Iterator[Tmux]:
    t = Tmux(tmp_path / "tmux.sock", home_env, server.port)
    yield t
    t.close()


def _help_lines(screen: str) -> list[str]:
    """The lines `help` printed: from its first heading to its closing sentence."""
    lines = [ln.rstrip() for ln in screen.splitlines()]
    first = lines.index("Keys and values:")
    last = next(i for i in range(first, len(lines)) if "case-" in lines[i])
    return lines[first : last + 2]


@pytest.mark.parametrize("columns", [80, 20])
def test_help_fits_the_window(tmux: Tmux, server: ServerProcess, columns: int) -> None:
    tmux.wait_for(f"127.0.0.1:{server.port}>")
    tmux.run("resize-window", "-x", str(columns), "-y", "200")
    tmux.type("help\r")
    tmux.wait_for("insensitive.")
    drawn = _help_lines(tmux.run("capture-pane", "-p", "-S", "-"))
    joined = _help_lines(tmux.run("capture-pane", "-p", "-J", "-S", "-"))
    assert drawn == joined  # not one line went past the right edge and wrapped
    words = " ".join(drawn).split()
    for cmd in COMMANDS:
        if "shell" in cmd.scope:
            assert " ".join(cmd.summary.split()) in " ".join(words), cmd.name
    if columns == 80:  # aligned summaries beside their usages
        assert "  get KEY                           Get the value of a key." in drawn


def test_cli_help_fits_the_terminal(home_env: dict[str, str]) -> None:
    out = _in_pty(
        [sys.executable, "-m", "repl.cli", "help"],
        {**home_env, "COLUMNS": "60", "NO_COLOR": "1"},
    ).decode()
    lines = out.replace("\r\n", "\n").rstrip("\n").split("\n")
    assert max(len(ln) for ln in lines) <= 60, out
    assert "  get KEY                           Get the value of a key." in lines
    assert lines[-1].endswith("(bitcask reshard --help).")
