"""The colour scheme: config colour names mapped to prompt_toolkit style classes.

The lexer and the reply formatter only name classes (`class:key`, `class:nil`);
this module decides what they look like. With NO_COLOR every class is empty, so the
same fragments print as plain text.
"""

from __future__ import annotations

from collections.abc import Mapping

from prompt_toolkit.output import ColorDepth
from prompt_toolkit.styles import Style

from ._context import env_flag

__all__ = ["build_style", "color_depth", "no_color"]

# config name -> prompt_toolkit class (the toolbar has its own built-in class names)
_CLASSES = {
    "toolbar": "bottom-toolbar",
    "toolbar_warn": "bottom-toolbar.warn",
}


def no_color() -> bool:
    """NO_COLOR is set to something (https://no-color.org)."""
    return env_flag("NO_COLOR")


def build_style(colors: Mapping[str, str], *, plain: bool | None = None) -> Style:
    """A prompt_toolkit Style from the `[colors]` table of the config.

    Args:
        colors: config name -> style string ("bold ansigreen").
        plain: no colours at all (default: when NO_COLOR is set).

    Example:
        >>> build_style({"key": "ansicyan"}).get_attrs_for_style_str("class:key").color
        'ansicyan'
    """
    plain = no_color() if plain is None else plain
    rules: list[tuple[str, str]] = []
    for name, spec in colors.items():
        cls = _CLASSES.get(name, name)
        if plain:
            # keep the toolbar readable as reverse video; drop every colour
            spec = "reverse" if cls == "bottom-toolbar" else "noreverse" if "toolbar" in cls else ""
        if cls == "bottom-toolbar" and not plain:
            spec = f"noreverse {spec}"
        rules.append((cls, spec))
    return Style(rules)


def color_depth() -> ColorDepth | None:
    """Monochrome under NO_COLOR, else let prompt_toolkit detect the terminal."""
    return ColorDepth.DEPTH_1_BIT if no_color() else None
