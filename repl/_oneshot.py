"""What the one-shot `bitcask` command line (_cli.py) and its runner (_run.py) share:
the exit statuses, the command table, the `reshard` line, and the printer of replies.
"""

from __future__ import annotations

import sys
from typing import TYPE_CHECKING, Any

from ._backup import COMMAND as BACKUP
from ._commands import COMMANDS
from ._context import plain_text
from ._format import Reply, error_line, plain, raw, styled
from ._table import Command

if TYPE_CHECKING:
    from prompt_toolkit.styles import Style

__all__ = ["EXIT_ERROR", "EXIT_NO", "EXIT_OK", "RESHARD", "TABLE", "Printer"]

EXIT_OK, EXIT_NO, EXIT_ERROR = 0, 1, 2

# The commands `bitcask` offers: the shared table (rows with "cli" in their scope).
# A CLI-only tool kept in its own module registers here with one row, its `run`
# imported on first use so start-up stays small:
#     TABLE = COMMANDS + (Command("reshard", ..., run=lazy("._reshard", "run"), ...),)
TABLE: tuple[Command, ...] = (*COMMANDS, BACKUP)


# `reshard` has its own flags (_reshard.py) and is dispatched before the parser, so
# it is not a row of the table; help and errors still name it
RESHARD = (
    "bitcask reshard --from OLD.yml --to NEW.yml [--dry-run]: move keys to the shards a "
    "new\nnutcracker config names; its own options come after it (bitcask reshard --help)."
)


class Printer:
    """Writes replies to stdout: styled (with colour unless NO_COLOR) or raw bytes.

    prompt_toolkit (for colours) and the config file (for the user's colours) are
    loaded only when something is drawn on a terminal: a piped `bitcask get` pays
    for neither.
    """

    def __init__(self, raw_mode: bool) -> None:
        self.raw_mode = raw_mode
        self._style: Style | None = None

    @property
    def style(self) -> Style:
        if self._style is None:
            from ._style import build_style

            self._style = build_style(_colors())
        return self._style

    def _draw(self, fragments: list[tuple[str, str]], **kwargs: Any) -> None:
        from prompt_toolkit import print_formatted_text
        from prompt_toolkit.formatted_text import FormattedText

        from ._style import color_depth

        print_formatted_text(
            FormattedText(fragments), style=self.style, end="", color_depth=color_depth(), **kwargs
        )

    def reply(self, reply: Reply) -> None:
        if self.raw_mode:
            sys.stdout.buffer.write(raw(reply))
            sys.stdout.buffer.flush()
        elif not sys.stdout.isatty() or plain_text():  # a pipe, NO_COLOR, TERM=dumb
            sys.stdout.buffer.write(plain(reply))  # the layout, no escape sequences
            sys.stdout.buffer.flush()
        else:
            self._draw(styled(reply))

    def error(self, message: str) -> None:
        if sys.stderr.isatty() and not plain_text():
            self._draw(error_line(message), file=sys.stderr)
        else:
            sys.stderr.write(f"(error) {message}\n")
            sys.stderr.flush()


def _colors() -> dict[str, str]:
    """The user's colours (the shell's config file). A bad setting there costs only
    itself, as in the shell; the shell is where its problems are reported (a one-shot
    command does not repeat them on every run)."""
    from ._config import ConfigError, default_config, load_config

    try:
        return dict(load_config().colors)
    except ConfigError as exc:
        return dict((exc.config or default_config()).colors)
