"""The shell's configuration: the shipped `default.toml` overlaid with the user's file.

Where things live (XDG base directories, with the usual fallbacks):
- config:  $BITCASK_SHELL_CONFIG, else $XDG_CONFIG_HOME/bitcask/shell.toml
           (~/.config/bitcask/shell.toml)
- history: $XDG_DATA_HOME/bitcask/shell_history (~/.local/share/bitcask/shell_history)

The default file is the schema: a user file may only set keys it contains, with
values of the same type, so a typo is reported instead of silently ignored.
"""

from __future__ import annotations

import os
import shutil
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

__all__ = [
    "ConfigError",
    "ShellConfig",
    "config_path",
    "default_config",
    "history_path",
    "load_config",
]


class ConfigError(ValueError):
    """The user's config file cannot be read or has an unknown or mistyped setting."""


@dataclass(frozen=True, slots=True)
class ShellConfig:
    """Settings for the interactive shell (see default.toml for each one)."""

    pager: str = "auto"
    history_size: int = 1000
    auto_suggest: bool = True
    toolbar: bool = True
    completion_keys: int = 50
    timeout: float = 5.0
    colors: Mapping[str, str] = field(default_factory=dict)

    def pager_command(self) -> str | None:
        """The pager to run, or None for no paging."""
        if self.pager != "auto":
            return self.pager or None
        env = os.environ.get("PAGER")
        if env:
            return env
        return "less -FRX" if shutil.which("less") else None


def _home() -> Path:
    return Path(os.environ.get("HOME") or Path.home())


def config_path() -> Path:
    """The user's config file (it need not exist)."""
    explicit = os.environ.get("BITCASK_SHELL_CONFIG")
    if explicit:
        return Path(explicit)
    base = os.environ.get("XDG_CONFIG_HOME") or str(_home() / ".config")
    return Path(base) / "bitcask" / "shell.toml"


def history_path() -> Path:
    """The history file (its directory is created when the shell starts)."""
    base = os.environ.get("XDG_DATA_HOME") or str(_home() / ".local" / "share")
    return Path(base) / "bitcask" / "shell_history"


def default_text() -> str:
    """The shipped, commented default config file."""
    return resources.files("repl").joinpath("default.toml").read_text(encoding="utf-8")


def _merge(defaults: dict[str, Any], user: Mapping[str, Any], where: str) -> dict[str, Any]:
    out = dict(defaults)
    for key, val in user.items():
        if key not in defaults:
            known = ", ".join(sorted(defaults))
            raise ConfigError(f"{where}: unknown setting {key!r} (known: {known})")
        default = defaults[key]
        if isinstance(default, dict):
            if not isinstance(val, dict):
                raise ConfigError(f"{where}: [{key}] must be a table")
            out[key] = _merge(default, val, f"{where} [{key}]")
            continue
        ok = isinstance(val, type(default)) and not (
            isinstance(val, bool) and not isinstance(default, bool)
        )
        if isinstance(default, float) and isinstance(val, int) and not isinstance(val, bool):
            ok, val = True, float(val)
        if not ok:
            raise ConfigError(f"{where}: {key} must be {type(default).__name__}, got {val!r}")
        out[key] = val
    return out


def load_config(path: Path | None = None) -> ShellConfig:
    """The defaults overlaid with the user's file (when it exists).

    Args:
        path: the user's file; default `config_path()`.

    Returns:
        The validated settings.

    Raises:
        ConfigError: the file is not TOML, or sets an unknown key or a wrong type.

    Example:
        >>> load_config(Path("/nonexistent.toml")).history_size
        1000
    """
    defaults = tomllib.loads(default_text())
    path = config_path() if path is None else path
    merged = defaults
    if path.exists():
        try:
            user = tomllib.loads(path.read_text(encoding="utf-8"))
        except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError) as exc:
            raise ConfigError(f"{path}: {exc}") from None
        merged = _merge(defaults, user, str(path))
    return _build(merged, str(path))


def default_config() -> ShellConfig:
    """The shipped defaults alone (when the user's file is broken, and for the CLI)."""
    return _build(tomllib.loads(default_text()), "default.toml")


def _build(merged: dict[str, Any], where: str) -> ShellConfig:
    shell = merged["shell"]
    if shell["history_size"] < 0 or shell["completion_keys"] < 0 or shell["timeout"] <= 0:
        raise ConfigError(f"{where}: history_size/completion_keys must be >= 0, timeout > 0")
    from prompt_toolkit.styles import Style  # only to validate colours: not at start-up

    for name, spec in merged["colors"].items():
        try:
            Style([("x", spec)])
        except ValueError as exc:
            raise ConfigError(f"{where} [colors]: {name} = {spec!r}: {exc}") from None
    return ShellConfig(colors=dict(merged["colors"]), **shell)
