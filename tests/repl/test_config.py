"""The config file: shipped defaults, the user's overrides, XDG locations."""

from __future__ import annotations

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
