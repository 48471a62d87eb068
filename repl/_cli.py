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

from ._context import CommandError, UsageError
from ._oneshot import EXIT_ERROR, EXIT_OK, RESHARD, TABLE, Printer
from ._options import (
    Parser,
    add_connection_options,
    add_output_options,
    add_version_option,
    options_from,
    raw_output,
)
from ._table import CLI, Args, Command, bind, fit, help_text, terminal_width

__all__ = ["main"]


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
    add_output_options(parser)
    parser.add_argument("command", nargs="?", help="a command (bitcask help lists them)")
    parser.add_argument("args", nargs=argparse.REMAINDER, help="its arguments")
    return parser


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
    printer = Printer(raw_mode=raw_output(args))
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

    return run(options, args.command, words, printer, bind_argv)
