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

from ._context import dumb_terminal

__all__ = [
    "ConfigError",
    "ShellConfig",
    "config_path",
    "default_config",
    "history_path",
    "load_config",
]


class ConfigError(ValueError):
    """The user's config file cannot be read or has unknown or mistyped settings.

    Attributes:
        problems: every problem found, one line each (naming the file).
        config: the settings to go on with (each valid one of the file kept, each
            bad one at its default), or None when the file had to exist and does not.
        unreadable: the file could not be parsed at all (config is the defaults).
    """

    def __init__(
        self, problems: list[str], config: ShellConfig | None, *, unreadable: bool = False
    ) -> None:
        super().__init__("; ".join(problems))
        self.problems = problems
        self.config = config
        self.unreadable = unreadable  # not even parsed: nothing of it is used


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
        """The pager to run, or None for no paging.

        "auto" on a terminal that takes no escape sequences (TERM=dumb: Emacs's shell)
        pages with $PAGER only: less there stopped every long reply at "WARNING:
        terminal is not fully functional / Press RETURN to continue".
        """
        if self.pager != "auto":
            return self.pager or None
        env = os.environ.get("PAGER")
        if env:
            return env
        if dumb_terminal():
            return None
        return "less -FRX" if shutil.which("less") else None


def _home() -> Path | None:
    """$HOME, else the user database's home; None when neither names one (a uid with no
    passwd entry and no HOME: `env -i`, a container run with a random uid)."""
    try:
        return Path(os.environ.get("HOME") or Path.home())
    except (RuntimeError, KeyError):  # Path.home(): "Could not determine home directory."
        return None


def _xdg(variable: str, *fallback: str) -> Path | None:
    base = os.environ.get(variable)
    if base:
        return Path(base)
    home = _home()
    return None if home is None else home.joinpath(*fallback)


def config_path() -> Path | None:
    """The user's config file (it need not exist); None when there is no home to find
    it in (then only --config / BITCASK_SHELL_CONFIG name one)."""
    explicit = os.environ.get("BITCASK_SHELL_CONFIG")
    if explicit:
        return Path(explicit)
    base = _xdg("XDG_CONFIG_HOME", ".config")
    return None if base is None else base / "bitcask" / "shell.toml"


def history_path() -> Path | None:
    """The history file (its directory is created when the shell starts); None when
    there is no home directory and no XDG_DATA_HOME (the history is then kept in memory)."""
    base = _xdg("XDG_DATA_HOME", ".local", "share")
    return None if base is None else base / "bitcask" / "shell_history"


def default_text() -> str:
    """The shipped, commented default config file."""
    return resources.files("repl").joinpath("default.toml").read_text(encoding="utf-8")


def _merge(
    defaults: dict[str, Any], user: Mapping[str, Any], where: str, problems: list[str]
) -> dict[str, Any]:
    """The defaults overlaid with every valid user setting; each bad one is a problem."""
    out = dict(defaults)
    for key, val in user.items():
        if key not in defaults:
            known = ", ".join(sorted(defaults))
            problems.append(f"{where}: unknown setting {key!r} (known: {known})")
            continue
        default = defaults[key]
        if isinstance(default, dict):
            if not isinstance(val, dict):
                problems.append(f"{where}: [{key}] must be a table")
                continue
            out[key] = _merge(default, val, f"{where} [{key}]", problems)
            continue
        ok = isinstance(val, type(default)) and not (
            isinstance(val, bool) and not isinstance(default, bool)
        )
        if isinstance(default, float) and isinstance(val, int) and not isinstance(val, bool):
            ok, val = True, float(val)
        if not ok:
            problems.append(f"{where}: {key} must be {type(default).__name__}, got {val!r}")
            continue
        out[key] = val
    return out


def load_config(path: Path | None = None, *, required: bool = False) -> ShellConfig:
    """The defaults overlaid with the user's file (when it exists).

    Args:
        path: the user's file; default `config_path()`.
        required: the file must exist (it was named with --config).

    Returns:
        The validated settings.

    Raises:
        ConfigError: the file is missing (when required) or not TOML, or sets
            unknown keys or wrong types. Every problem is listed in `problems`,
            and `config` holds the settings with each valid one of the file kept
            and each bad one at its default.

    Example:
        >>> load_config(Path("/nonexistent.toml")).history_size
        1000
    """
    defaults = tomllib.loads(default_text())
    path = config_path() if path is None else path
    merged = defaults
    problems: list[str] = []
    if path is not None and (path.exists() or required):
        try:
            user = tomllib.loads(path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            raise ConfigError([f"{path}: no such file"], None) from None
        except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError) as exc:
            reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else exc
            raise ConfigError(
                [f"{path}: {reason}; none of it is used"], default_config(), unreadable=True
            ) from None
        merged = _merge(defaults, user, str(path), problems)
        colors = user.get("colors")
        if isinstance(colors, dict):
            _check_colors(merged["colors"], set(colors), defaults["colors"], str(path), problems)
    config = _build(merged, str(path or "default.toml"), problems)
    if problems:
        raise ConfigError(problems, config)
    return config


def default_config() -> ShellConfig:
    """The shipped defaults alone (when the user's file is broken, and for the CLI)."""
    return _build(tomllib.loads(default_text()), "default.toml", [])


def _build(merged: dict[str, Any], where: str, problems: list[str]) -> ShellConfig:
    defaults = tomllib.loads(default_text())
    shell = dict(merged["shell"])
    for name, bad in (
        ("history_size", shell["history_size"] < 0),
        ("completion_keys", shell["completion_keys"] < 0),
        ("timeout", shell["timeout"] <= 0),
    ):
        if bad:
            rule = "> 0" if name == "timeout" else ">= 0"
            problems.append(f"{where}: {name} must be {rule}, got {shell[name]!r}")
            shell[name] = defaults["shell"][name]
    return ShellConfig(colors=dict(merged["colors"]), **shell)


def _check_colors(
    colors: dict[str, str],
    names: set[str],
    defaults: Mapping[str, str],
    where: str,
    problems: list[str],
) -> None:
    """Validate the colours the user set (in place: a bad one gets its default back).

    Only those: the shipped ones are known good (a test builds them), and piped mode,
    which loads the config for its timeout, then never imports prompt_toolkit.
    """
    from prompt_toolkit.styles import Style

    for name in sorted(names & set(colors)):
        try:
            Style([("x", colors[name])])
        except ValueError as exc:
            problems.append(f"{where} [colors]: {name} = {colors[name]!r}: {exc}")
            colors[name] = defaults[name]
