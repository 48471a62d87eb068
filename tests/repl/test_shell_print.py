"""How the interactive shell prints replies: prompt_toolkit's own printer, given the
shell's style, merged it with the built-in one and parsed every rule again on every
call (a new Style per line printed: ~10 ms a line, so a pasted block of 10,000 lines
took minutes at the shell's side alone). The merged style is built once."""

from __future__ import annotations

import io
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from prompt_toolkit.application.current import create_app_session
from prompt_toolkit.data_structures import Size
from prompt_toolkit.input import create_pipe_input
from prompt_toolkit.output.vt100 import Vt100_Output
from prompt_toolkit.styles import Style

from repl._config import ShellConfig
from repl._context import ConnectOptions
from repl._format import Value
from repl._interactive import Shell


@pytest.fixture
def terminal(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Iterator[io.StringIO]:
    """What the shell writes, as a colour terminal of 80x24 would get it."""
    for name in ("NO_COLOR", "TERM"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path))
    screen = io.StringIO()
    output = Vt100_Output(screen, lambda: Size(rows=24, columns=80), term="xterm")
    with create_pipe_input() as keys, create_app_session(input=keys, output=output):
        yield screen


def test_printing_a_reply_parses_no_style(
    terminal: io.StringIO, monkeypatch: pytest.MonkeyPatch
) -> None:
    shell = Shell(ConnectOptions(), ShellConfig(colors={"value": "ansigreen"}))
    built = 0
    init = Style.__init__

    def counted(self: Style, *args: Any, **kwargs: Any) -> None:
        nonlocal built
        built += 1
        init(self, *args, **kwargs)

    monkeypatch.setattr(Style, "__init__", counted)
    for i in range(20):
        shell.print_reply(Value(b"v%d" % i))
    assert built <= 1  # the merge of the two styles, at the first line printed
    text = terminal.getvalue()
    assert all(f'"v{i}"' in text for i in range(20))
    assert "\x1b[0;32m" in text  # still in the configured colour
