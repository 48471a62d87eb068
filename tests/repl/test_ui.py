"""Shell screen pieces without a terminal: history bounds, pager, toolbar, prompt."""

from __future__ import annotations

import stat
from pathlib import Path
from types import SimpleNamespace

from repl._commands import COMMANDS
from repl._context import ConnectOptions
from repl._session import Session
from repl._table import SHELL
from repl._ui import BoundedFileHistory, page, prompt_fragments, should_page, toolbar_fragments


def test_history_keeps_the_newest_entries_and_compacts_the_file(tmp_path: Path) -> None:
    path = tmp_path / "data" / "bitcask" / "shell_history"
    hist = BoundedFileHistory(path, size=10)
    for i in range(25):
        hist.store_string(f"put k{i} v")
    loaded = list(BoundedFileHistory(path, size=10).load_history_strings())
    assert loaded == [f"put k{i} v" for i in range(24, 14, -1)]
    assert path.read_text().count("\n+") + path.read_text().startswith("+") == 10
    assert list(BoundedFileHistory(path, size=10).load_history_strings()) == loaded


def test_multiline_entries_survive_compaction(tmp_path: Path) -> None:
    path = tmp_path / "h"
    hist = BoundedFileHistory(path, size=1)
    for text in ("a", "b", "first\nsecond"):
        hist.store_string(text)
    assert list(BoundedFileHistory(path, size=1).load_history_strings()) == ["first\nsecond"]
    assert list(BoundedFileHistory(path, size=1).load_history_strings()) == ["first\nsecond"]


def test_history_size_zero_stores_nothing(tmp_path: Path) -> None:
    path = tmp_path / "h"
    BoundedFileHistory(path, size=0).store_string("get a")
    assert not path.exists()


def test_should_page_compares_with_the_terminal_height() -> None:
    assert not should_page("a\nb\n", rows=24)
    assert should_page("x\n" * 30, rows=24)


def test_page_runs_the_pager_and_reports_a_missing_one(tmp_path: Path) -> None:
    out = tmp_path / "paged"
    assert page("hello\n", f"tee {out}")
    assert out.read_text() == "hello\n"
    assert not page("hello\n", "no-such-pager-here")
    assert not page("hello\n", "")


def _session() -> Session:
    return Session(
        ConnectOptions(port=7001), COMMANDS, SHELL, interactive=True, emit=lambda r: None
    )


def test_toolbar_when_disconnected_and_connected() -> None:
    s = _session()
    (frag,) = toolbar_fragments(s)
    style, text = frag[0], frag[1]
    assert style == "class:bottom-toolbar.warn"
    assert "127.0.0.1:7001" in text and "not connected" in text
    s._client = SimpleNamespace(is_connected=True, closed=False)  # a connected client
    s.server_version, s.key_count, s.last_rtt = "0.1.0", 1234, 0.00021
    (frag,) = toolbar_fragments(s)
    assert frag[1] == " 127.0.0.1:7001 | bitcask 0.1.0 | 1,234 keys | rtt 0.21 ms "
    assert prompt_fragments(s) == [("class:prompt", "127.0.0.1:7001> ")]


def test_toolbar_shows_a_hostile_server_version_escaped_on_one_line() -> None:
    """The version is the endpoint's word (HELLO, INFO's redis_version): a newline in
    it drew a toolbar of many lines over the screen, and control bytes went out."""
    s = _session()
    s._client = SimpleNamespace(is_connected=True, closed=False)
    s.server_version, s.key_count = "7.0\n\n\n\x1b]0;pwned\x07\x9b2J", 1
    (frag,) = toolbar_fragments(s)
    assert (
        frag[1]
        == " 127.0.0.1:7001 | bitcask 7.0\\x0a\\x0a\\x0a\\x1b]0;pwned\\x07\\x9b2J | 1 key | rtt - "
    )


def test_history_file_is_private(tmp_path: Path) -> None:
    path = tmp_path / "data" / "bitcask" / "shell_history"
    history = BoundedFileHistory(path, size=10)
    history.store_string("put token s3cret")
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert stat.S_IMODE(path.parent.stat().st_mode) == 0o700
    path.chmod(0o644)  # a file left readable by an older version is tightened
    BoundedFileHistory(path, size=10)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600


def test_history_compaction_keeps_the_file_private(tmp_path: Path) -> None:
    path = tmp_path / "shell_history"
    history = BoundedFileHistory(path, size=1)
    for i in range(5):
        history.store_string(f"put k {i}")
    list(BoundedFileHistory(path, size=1).load_history_strings())  # rewrites the file
    assert stat.S_IMODE(path.stat().st_mode) == 0o600


def test_auth_lines_stay_out_of_the_history_file(tmp_path: Path) -> None:
    path = tmp_path / "shell_history"
    history = BoundedFileHistory(path, size=10)
    history.store_string("auth s3cret")
    history.store_string("  AUTH s3cret")
    history.store_string("auth\ts3cret")  # a pasted tab separates words too
    history.store_string("get k")
    assert "s3cret" not in path.read_text() and "get k" in path.read_text()
    history.append_string("auth other")  # what the prompt calls: not kept in memory either
    history.append_string("get j")
    assert list(history.get_strings())[-1] == "get j"
    assert not any("other" in entry for entry in history.get_strings())


def test_a_pasted_block_is_one_history_entry_per_line_without_auth(tmp_path: Path) -> None:
    path = tmp_path / "h"
    history = BoundedFileHistory(path, size=10)
    history.append_string("put a 1\r\nauth s3cret\n\nget a")
    assert list(history.get_strings()) == ["put a 1", "get a"]
    assert "s3cret" not in path.read_text()
