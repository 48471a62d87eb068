"""The config file: shipped defaults, the user's overrides, XDG locations."""

from __future__ import annotations

import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

from repl._config import (
    ConfigError,
    config_path,
    default_config,
    default_text,
    history_path,
    load_config,
)  # fmt: skip
from tests.serverproc import ServerProcess


def test_the_shipped_default_is_commented_toml_with_every_setting() -> None:
    text = default_text()
    assert text.count("#") > 20
    data = tomllib.loads(text)
    assert set(data) == {"shell", "colors"}
    cfg = default_config()
    assert cfg.history_size == 1000 and cfg.pager == "auto" and cfg.toolbar
    assert {"command", "key", "value", "error", "toolbar"} <= set(cfg.colors)


def test_user_file_overrides_only_what_it_sets(tmp_path: Path) -> None:
    user = tmp_path / "shell.toml"
    user.write_text('[shell]\nhistory_size = 10\ntimeout = 2\n[colors]\nkey = "ansired"\n')
    cfg = load_config(user)
    assert cfg.history_size == 10 and cfg.timeout == 2.0
    assert cfg.colors["key"] == "ansired"
    assert cfg.colors["command"] == default_config().colors["command"]


@pytest.mark.parametrize(
    ("text", "fragment"),
    [
        pytest.param("[shell]\nhistroy_size = 1\n", "unknown setting 'histroy_size'", id="typo"),
        pytest.param("[shell]\nhistory_size = 'many'\n", "history_size must be int", id="type"),
        pytest.param("[shell]\ntoolbar = 1\n", "toolbar must be bool", id="bool"),
        pytest.param(
            "[shell]\nhistory_size = true\n", "history_size must be int", id="bool-as-int"
        ),
        pytest.param("[shell]\nhistory_size = -1\n", ">= 0", id="negative"),
        pytest.param("shell = 3\n", "[shell] must be a table", id="table"),
        pytest.param("[shell\n", "shell.toml", id="not-toml"),
        pytest.param('[colors]\nkey = "notacolor"\n', "key = 'notacolor'", id="colour"),
    ],
)
def test_bad_settings_are_reported_with_the_file(tmp_path: Path, text: str, fragment: str) -> None:
    user = tmp_path / "shell.toml"
    user.write_text(text)
    with pytest.raises(ConfigError) as info:
        load_config(user)
    assert fragment in str(info.value)


def test_locations_follow_xdg(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.delenv("BITCASK_SHELL_CONFIG", raising=False)
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "cfg"))
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path / "data"))
    assert config_path() == tmp_path / "cfg" / "bitcask" / "shell.toml"
    assert history_path() == tmp_path / "data" / "bitcask" / "shell_history"
    monkeypatch.delenv("XDG_CONFIG_HOME")
    monkeypatch.delenv("XDG_DATA_HOME")
    monkeypatch.setenv("HOME", str(tmp_path))
    assert config_path() == tmp_path / ".config" / "bitcask" / "shell.toml"
    assert history_path() == tmp_path / ".local" / "share" / "bitcask" / "shell_history"
    monkeypatch.setenv("BITCASK_SHELL_CONFIG", str(tmp_path / "x.toml"))
    assert config_path() == tmp_path / "x.toml"


def test_pager_auto_uses_pager_env(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PAGER", "more")
    assert default_config().pager_command() == "more"
    cfg = load_config(Path("/nonexistent.toml"))
    assert cfg.pager == "auto"


def test_empty_pager_disables_paging(tmp_path: Path) -> None:
    user = tmp_path / "shell.toml"
    user.write_text('[shell]\npager = ""\n')
    assert load_config(user).pager_command() is None


def test_every_problem_is_reported_and_the_good_settings_kept(tmp_path: Path) -> None:
    user = tmp_path / "shell.toml"
    user.write_text(
        '[shell]\nhistroy = 1\ntimeout = -1\ntoolbar = false\npager = 3\n[colors]\nkey = "nope"\n'
    )
    with pytest.raises(ConfigError) as info:
        load_config(user)
    problems = info.value.problems
    assert len(problems) == 4
    assert ["histroy" in problems[0], "pager" in problems[1]] == [True, True]
    assert any("timeout must be > 0" in p for p in problems)
    assert any("key = 'nope'" in p for p in problems)
    cfg = info.value.config
    assert cfg is not None and not info.value.unreadable
    assert cfg.toolbar is False  # the good setting is kept
    assert cfg.timeout == 5.0 and cfg.pager == "auto"  # the bad ones keep their defaults
    assert cfg.colors["key"] == default_config().colors["key"]


def test_a_named_file_must_exist(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as info:
        load_config(tmp_path / "missing.toml", required=True)
    assert info.value.config is None and "no such file" in str(info.value)
    assert load_config(tmp_path / "missing.toml").history_size == 1000  # the XDG default


def test_piped_mode_reports_config_problems_and_a_missing_file(
    server: ServerProcess, home_env: dict[str, str], tmp_path: Path
) -> None:
    def shell(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "repl", "--port", str(server.port), *args],
            input="ping\n", capture_output=True, text=True, env=home_env, timeout=60,
        )  # fmt: skip

    r = shell("--config", str(tmp_path / "nope.toml"))
    assert r.returncode == 2 and r.stdout == ""
    assert "config: " in r.stderr and "nope.toml: no such file" in r.stderr
    bad = tmp_path / "bad.toml"
    bad.write_text("[shell]\nhistroy = 1\ntimeout = 0\n")
    r = shell("--config", str(bad))
    assert r.returncode == 0 and r.stdout == "PONG\n"
    lines = r.stderr.splitlines()
    assert len(lines) == 3
    assert "unknown setting 'histroy'" in lines[0] and "timeout must be > 0" in lines[1]
    assert "2 problems" in lines[2]


def test_the_shipped_colours_are_valid_styles() -> None:
    from repl._style import build_style

    colors = default_config().colors
    assert build_style(colors).get_attrs_for_style_str("class:key").color == "ansicyan"
    assert colors["hint"]  # the argument hints have a colour of their own
