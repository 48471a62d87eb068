"""`bitcask` (entry point: cli.py): one command per invocation, for people at a terminal
and for scripts. This file parses and answers help; running a command against an
endpoint (asyncio, the client, the session) is `_run.py`, loaded only for that.

    bitcask [connection options] [--raw | --no-raw] COMMAND [ARGS...]

The commands are the rows of the command table (`bitcask help`) offered in the CLI:
the protocol's commands plus health, import, export, stat, latency, check, repair and
merge DIR. Arguments are taken literally from argv (bytes exactly as the shell passed
them; no escapes); a VALUE of `-` is read from stdin (binary-safe, up to the server's
max_value_size: one byte more is refused unread), as redis-cli's -x and curl's @-. `bitcask CMD --help` (or -h, right after the command)
explains one command; `bitcask CMD -- --help` passes `--help` as an argument. Output is styled on a terminal and raw when piped (`--raw` /
`--no-raw` force one or the other).

With a redis:// URL or --redis the commands go to any Redis-protocol endpoint
instead (`Session` picks the backend; the commands never ask which); merge, sync
and backup, which have no Redis equivalent, print one error line and exit 2.

Exit status: 0 ok; 1 "no" (get: no such key, exists/delete: false, ttl: no such
key, check: damage found); 2 error (usage, connection, server error); 130 stopped by
Ctrl-C, 143 by SIGTERM (`_signals.py`: the command cleans up and says what is left).
"""

from __future__ import annotations

import argparse
import os
import sys
from typing import TYPE_CHECKING, Any

from ._backup import COMMAND as BACKUP
from ._commands import COMMANDS
from ._context import CommandError, UsageError, plain_text
from ._format import Reply, error_line, raw, styled
from ._options import Parser, add_connection_options, add_version_option, options_from
from ._table import CLI, Args, Command, bind, fit, help_text, terminal_width

if TYPE_CHECKING:
    from prompt_toolkit.styles import Style

__all__ = ["main"]

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


def _overview() -> str:
    """Every command by group, reshard included: `bitcask --help`, `bitcask help`."""
    width = terminal_width(sys.stdout)  # fitted to a terminal; as written into a pipe
    return help_text(TABLE, None, CLI, width) + "\n\n" + fit(RESHARD, width)


def build_parser() -> argparse.ArgumentParser:
    parser = Parser(
        prog="bitcask",
        description="Talk to a bitcask server, one command per invocation.",
        epilog=_overview() + "\n\nExit status: 0 ok, 1 not found / false / damage found, 2 error,\n"
        "130 stopped by Ctrl-C, 143 by SIGTERM (each says what it left).",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    add_version_option(parser)
    add_connection_options(parser)
    out = parser.add_mutually_exclusive_group()
    out.add_argument("--raw", dest="raw", action="store_true", default=None,
                     help="raw output even on a terminal")  # fmt: skip
    out.add_argument("--no-raw", dest="raw", action="store_false",
                     help="formatted output even when piped")  # fmt: skip
    parser.add_argument("command", nargs="?", help="a command (bitcask help lists them)")
    parser.add_argument("args", nargs=argparse.REMAINDER, help="its arguments")
    return parser


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
            text = "".join(t for _, t in styled(reply))  # the layout, no escapes
            sys.stdout.buffer.write(text.encode("utf-8", "surrogateescape"))
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


def _wants_help(argv: list[str], words: list[str]) -> bool:
    """`bitcask CMD --help` / `-h` right after the command, unless written after `--`."""
    if not words or words[0] not in ("-h", "--help"):
        return False
    before = argv[len(argv) - len(words) - 1] if len(argv) > len(words) else ""
    return before != "--"


def bind_argv(cmd: Command, argv: list[bytes]) -> Args:
    """bind(), and when the words it refused hold one of bitcask's own options
    (`bitcask get --port 7400 k`), say that those go before the command."""
    try:
        return bind(cmd, argv)
    except UsageError as exc:
        own = {a.keyword for a in cmd.args if a.keyword}
        options = {o for a in build_parser()._actions for o in a.option_strings}
        words = [w.decode("utf-8", "replace").split("=", 1)[0] for w in argv]
        misplaced = next((w for w in words if w in options - own), None)
        if misplaced is None:
            raise
        raise UsageError(
            f"{exc}; {misplaced} is an option of bitcask: it goes before the command "
            f"(bitcask {misplaced} ... {cmd.name} ...)"
        ) from None


def main(argv: list[str] | None = None) -> int:
    """Entry point of the `bitcask` console script; returns the exit status."""
    if (sys.argv[1:] if argv is None else argv)[:1] == ["reshard"]:  # own flags: _reshard.py
        from ._reshard import main as reshard_main

        return reshard_main((sys.argv[1:] if argv is None else argv)[1:])
    parser = build_parser()
    argv = sys.argv[1:] if argv is None else argv
    args = parser.parse_args(argv)
    if args.command is None:
        parser.print_usage(sys.stderr)
        sys.stderr.write("\n" + _overview() + "\n")
        return EXIT_ERROR
    if args.command.lower() == "help" and [a.lower() for a in args.args] in ([], ["reshard"]):
        sys.stdout.write((RESHARD if args.args else _overview()) + "\n")
        return EXIT_OK
    if _wants_help(argv, args.args):
        try:
            text = help_text(TABLE, args.command, CLI, terminal_width(sys.stdout))
            sys.stdout.write(text + "\n")
        except CommandError as exc:
            sys.stderr.write(f"(error) {exc}\n")
            return EXIT_ERROR
        return EXIT_OK
    printer = Printer(raw_mode=not sys.stdout.isatty() if args.raw is None else args.raw)
    try:
        options = options_from(args)
    except CommandError as exc:
        printer.error(str(exc))
        return EXIT_ERROR
    words = [os.fsencode(a) for a in args.args]
    # Imported only now that a command is to run: asyncio, the client and the session
    # (_run.py) are about two thirds of a one-shot command's imports, which `--help`,
    # `CMD --help`, `--version` and a usage error never use.
    from ._run import run

    return run(options, args.command, words, printer)
