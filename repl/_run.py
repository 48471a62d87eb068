"""One `bitcask` command against an endpoint: the part of the command line that needs
asyncio, the client and the session. `_cli.main` imports it once the arguments name a
command to run, so that `bitcask --help`, `bitcask CMD --help`, `--version` and a
usage error start without loading them.
"""

from __future__ import annotations

import asyncio
import os
import sys
from collections.abc import Callable

from client import ValueTooLargeError

from ._context import CommandError, ConnectOptions
from ._oneshot import EXIT_ERROR, EXIT_OK, RESHARD, TABLE, Printer
from ._session import Session, describe
from ._signals import Interrupted, stoppable
from ._table import CLI, Args, Command, Kind, lookup, unknown

__all__ = ["run", "run_one"]


Bind = Callable[[Command, list[bytes]], Args]
"""argv to a command's arguments (_cli.bind_argv, which knows bitcask's own options)."""


def run(options: ConnectOptions, name: str, argv: list[bytes], printer: Printer, bind: Bind) -> int:
    """Run one command in its own event loop; returns the exit status."""
    try:
        return asyncio.run(run_one(options, name, argv, printer, bind))
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:  # `bitcask keys | head`: the reader left; not an error
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())  # so the exit-time flush stays quiet
        return EXIT_OK


STDIN = b"-"


async def _stdin_values(session: Session, cmd: Command, args: Args) -> Args:
    """A VALUE argument given as `-` is read from stdin, bytes exactly (redis-cli -x),
    at most the server's max_value_size + 1 bytes: one more is refused as a value over
    it would be (`cat /dev/zero | bitcask put k -` read until memory ran out)."""
    if cmd.repeat:
        return args
    for arg in cmd.positional:
        if arg.kind is Kind.VALUE and args.get(arg.name) == STDIN:
            client = await session.client()  # its limits: hello's (Redis: 512 MiB)
            limit = client.limits.max_value_size
            value = sys.stdin.buffer.read(limit + 1)  # a pipe: until that many, or EOF
            if len(value) > limit:
                raise ValueTooLargeError.local(
                    f"value of more than {limit} bytes (stdin) exceeds the server's "
                    f"max_value_size {limit}"
                )
            return {**args, arg.name: value}
    return args


async def run_one(
    options: ConnectOptions, name: str, argv: list[bytes], printer: Printer, bind: Bind
) -> int:
    """Run one command; returns the exit status."""
    session = Session(options, TABLE, CLI, interactive=sys.stdout.isatty(), emit=printer.reply)
    try:
        cmd = lookup(TABLE, name, CLI)
        if cmd is None and name.lower() == "reshard":
            raise CommandError("reshard must be the first word: " + RESHARD.replace("\n", " "))
        if cmd is None:
            raise unknown(TABLE, name, CLI)
        args = await _stdin_values(session, cmd, bind(cmd, argv))
        with stoppable():  # Ctrl-C 130, SIGTERM 143: the command cleans up first
            try:
                reply = await session.execute(cmd, args)
            except asyncio.CancelledError:  # and a line if a change is in doubt
                doubt = session.in_doubt(cmd)
                if doubt:
                    printer.error(f"interrupted: {doubt}")
                raise
        if reply is not None:
            printer.reply(reply)
        return cmd.exit_code(reply)
    except Interrupted as exc:  # the command's own line said what is left
        return exc.exit_code
    except CommandError as exc:
        printer.error(describe(exc, options))
        return exc.exit_code
    except BrokenPipeError:
        raise
    except Exception as exc:  # one line for anything else: server, connection, parse
        printer.error(describe(exc, options))
        return EXIT_ERROR
    finally:
        await session.close()
