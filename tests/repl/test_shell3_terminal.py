"""bitcask-shell and bitcask at terminals of real sizes (tmux, a pty), against a real
server: what is drawn fits the window it is drawn in.

Before: `help` listed the commands in a 113-column table (usages padded to the width of
`set KEY VALUE [NX|XX] [GET] [KEEPTTL] [TTL SECONDS]`), so at 80 columns every line
wrapped mid-word and at 20 the summaries were shredded.
"""

from __future__ import annotations

import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from repl import COMMANDS
from repl._ui import should_page
from tests.repl.conftest import Runner, need_binary
from tests.repl.test_shell_tmux import WAIT, Tmux
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
    # through the line that ends the closing sentence ("case-" may wrap before
    # "insensitive."); not one line more: the prompt comes back there, drawn
    # between one capture and the next at times (one CI failure: '' != the prompt)
    last = next(i for i in range(first, len(lines)) if lines[i].endswith("insensitive."))
    return lines[first : last + 1]


def _settled(tmux: Tmux, columns: int) -> None:
    """Wait until the shell's terminal itself is `columns` wide: tmux reports a new width
    at once and hands it to the terminal (TIOCSWINSZ) after its resize timer."""
    tty = tmux.run("display-message", "-p", "#{pane_tty}").strip()
    deadline = time.monotonic() + 10
    while True:
        size = subprocess.run(
            ["stty", "-F", tty, "size"], capture_output=True, text=True, timeout=5
        ).stdout.split()
        if size[1:] == [str(columns)]:
            return
        assert time.monotonic() < deadline, f"the terminal never became {columns} wide: {size}"
        time.sleep(0.05)


@pytest.mark.parametrize("columns", [80, 20])
def test_help_fits_the_window(tmux: Tmux, server: ServerProcess, columns: int) -> None:
    tmux.wait_for(f"127.0.0.1:{server.port}>")
    tmux.run("resize-window", "-x", str(columns), "-y", "200")
    _settled(tmux, columns)
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


def test_a_value_longer_than_the_screen_goes_through_the_pager(
    server: ServerProcess, home_env: dict[str, str], tmp_path: Path, bitcask_cli: Runner
) -> None:
    """A value is shown on one line (newlines escaped), so the pager's old rule, more
    newlines than rows, never held for one: `get` of a 10,000-line value (110 KB,
    1,100 rows at 100 columns) poured it all into the scrollback, with no pager."""
    need_binary("less", "less")
    big = b"".join(b"line %d\n" % i for i in range(10_000))
    assert bitcask_cli("mput", "big", "-", "small", "v").code == 0
    assert bitcask_cli("put", "big", "-", input=big).code == 0
    t = Tmux(tmp_path / "tmux.sock", {**home_env, "PAGER": "less -FRX"}, server.port)
    try:
        t.wait_for(f"127.0.0.1:{server.port}>")
        t.type("get big\r")
        screen = t.wait_for('"line 0\\nline 1\\nline 2\\n')
        deadline = time.monotonic() + WAIT
        while screen.rstrip("\n").splitlines()[-1] != ":":  # less waits at its prompt
            assert time.monotonic() < deadline, screen
            time.sleep(0.05)
            screen = t.screen()
        assert "line 9999" not in screen
        t.type("q")
        t.wait_line(server.port, ">")
        t.type("get small\r")
        t.wait_for('"v"')
        t.type("mget small small\r")  # short replies are printed, not paged
        t.wait_for('2) "v"')
    finally:
        t.close()


@pytest.mark.parametrize(
    ("text", "rows", "columns", "paged"),
    [
        ("x" * 2000 + "\n", 24, 80, True),  # one line, 25 rows
        ("x" * 2000 + "\n", 24, 2000, False),
        ("a\nb\n", 24, 80, False),
        ("x\n" * 22, 24, 80, False),  # the prompt and the toolbar take the last two
        ("x\n" * 23, 24, 80, True),
    ],
)
def test_should_page_counts_the_rows_a_line_wraps_to(
    text: str, rows: int, columns: int, paged: bool
) -> None:
    assert should_page(text, rows, columns) is paged


def test_a_dumb_terminal_gets_long_output_whole_not_through_less(
    server: ServerProcess, home_env: dict[str, str], tmp_path: Path, bitcask_cli: Runner
) -> None:
    """On TERM=dumb (Emacs's shell) `keys` of 60 keys in a 30-row window ran less, which
    stopped at "WARNING: terminal is not fully functional / Press RETURN to continue"."""
    need_binary("less", "less")
    pairs = [w for i in range(60) for w in (f"d:{i:03d}", "v")]
    assert bitcask_cli("mput", *pairs).code == 0
    env = {k: v for k, v in home_env.items() if k != "PAGER"}
    t = Tmux(tmp_path / "tmux.sock", {**env, "TERM": "dumb"}, server.port)
    try:
        t.wait_for(f"127.0.0.1:{server.port}>")
        t.type("keys d:\r")
        t.wait_for('60) "d:059"')
        t.type("ping\r")  # the prompt is back: no pager is waiting for a key
        screen = t.wait_for("PONG")
    finally:
        t.close()
    assert "not fully functional" not in screen, screen
