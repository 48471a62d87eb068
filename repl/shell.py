"""`bitcask-shell`: the interactive shell (prompt_toolkit), or a line-by-line pipe.

    bitcask-shell [--host H] [--port P] [--url bitcask://...] [--auth TOKEN] [--config F]

On a terminal: a prompt with completion (commands, arguments, keys from the server),
highlighting, fish-style suggestions from a persistent history, and a bottom toolbar
(server address, version, key count, last round trip). A failed command prints one
`(error) ...` line and the shell stays open; a lost connection is re-established by
the next command. Long output (keys, stats) goes through the pager.

With stdin not a terminal (`printf 'put a 1\\nget a\\n' | bitcask-shell`): one command
per line, pipelined (`_piped.py`), raw results on stdout in input order, errors on
stderr, no prompt and no colours; exit status 2 if any line failed, else 0.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import signal
import sys
from collections.abc import Coroutine
from dataclasses import replace
from pathlib import Path
from typing import Any

from prompt_toolkit import PromptSession, print_formatted_text
from prompt_toolkit.auto_suggest import AutoSuggestFromHistory, ConditionalAutoSuggest
from prompt_toolkit.buffer import Buffer
from prompt_toolkit.filters import has_completions
from prompt_toolkit.formatted_text import FormattedText
from prompt_toolkit.history import History, InMemoryHistory
from prompt_toolkit.styles import Style

from ._commands import COMMANDS
from ._complete import BitcaskCompleter, KeyCache
from ._config import ConfigError, ShellConfig, history_path, load_config
from ._context import CommandError, ConnectOptions
from ._format import Reply, error_line, styled
from ._hints import HintProcessor
from ._lexer import CommandLexer
from ._options import add_connection_options, add_version_option, options_from
from ._piped import run_piped
from ._session import Session, describe
from ._style import build_style, color_depth
from ._table import SHELL
from ._transfer import scan_page
from ._ui import BoundedFileHistory, page, prompt_fragments, should_page, toolbar_fragments

__all__ = ["main"]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="bitcask-shell",
        description="Interactive shell for a bitcask server (type help inside).",
    )
    add_version_option(parser)
    add_connection_options(parser)
    parser.add_argument("--config", type=Path, help="config file (default: XDG config dir)")
    return parser


# --------------------------------------------------------------------------- interactive


def _hide_suggestion(buffer: Buffer) -> None:
    """A completion menu opened: drop the grey history suggestion drawn beside it."""
    if buffer.complete_state is not None:
        buffer.suggestion = None


class Shell:
    """The interactive loop: prompt, run, print, refresh the toolbar."""

    def __init__(self, options: ConnectOptions, config: ShellConfig) -> None:
        self.config = config
        self.style: Style = build_style(config.colors)
        self.cache = KeyCache()
        self.session = Session(
            options, COMMANDS, SHELL, interactive=True, emit=self.print_reply, cache=self.cache
        )
        self.prompt: PromptSession[str] = PromptSession(
            history=self.open_history(),
            # no grey history suggestion while the completion menu is open: the two
            # would be drawn over each other
            auto_suggest=(
                ConditionalAutoSuggest(AutoSuggestFromHistory(), ~has_completions)
                if config.auto_suggest
                else None
            ),
            input_processors=[HintProcessor(COMMANDS, SHELL)],
            completer=BitcaskCompleter(COMMANDS, SHELL, self.cache, self.fetch_keys),
            complete_while_typing=False,
            lexer=CommandLexer(COMMANDS, SHELL),
            style=self.style,
            include_default_pygments_style=False,
            bottom_toolbar=(lambda: toolbar_fragments(self.session)) if config.toolbar else None,
            color_depth=color_depth(),
        )
        self.prompt.default_buffer.on_completions_changed += _hide_suggestion

    def open_history(self) -> History:
        """The persistent history, or one in memory when its directory is unusable."""
        path = history_path()
        try:
            return BoundedFileHistory(path, self.config.history_size)
        except OSError as exc:
            self.print_error(f"history not saved: cannot create {path.parent}: {exc.strerror}")
            return InMemoryHistory()

    async def fetch_keys(self, prefix: bytes) -> list[bytes]:
        """Keys from the server for completion: one scan page with the typed prefix."""
        if not self.session.connected or not self.config.completion_keys:
            return []
        client = await self.session.client()
        _, keys = await scan_page(client, prefix, None, self.config.completion_keys)
        return keys

    def print_fragments(self, frags: list[tuple[str, str]]) -> None:
        print_formatted_text(
            FormattedText(frags), style=self.style, end="", color_depth=color_depth()
        )

    def print_reply(self, reply: Reply, paged: bool = False) -> None:
        frags = styled(reply)
        pager = self.config.pager_command()
        if paged and pager:
            text = "".join(text for _, text in frags)
            if should_page(text) and page(text, pager):
                return
        self.print_fragments(frags)

    def print_error(self, message: str) -> None:
        self.print_fragments(error_line(message))

    async def connect_quietly(self) -> None:
        try:
            await self.session.client()
            await self.session.refresh()
        except Exception as exc:
            self.print_error(describe(exc, self.session.options, SHELL))

    async def interruptible(self, coro: Coroutine[Any, Any, Reply | None]) -> Reply | None:
        """Run a command so that Ctrl-C cancels it instead of leaving the shell.

        While the prompt is up, prompt_toolkit reads Ctrl-C as a key; while a command
        runs, the terminal sends SIGINT, which here cancels only that command.
        """
        task = asyncio.ensure_future(coro)
        loop = asyncio.get_running_loop()
        try:
            loop.add_signal_handler(signal.SIGINT, task.cancel)
        except (NotImplementedError, RuntimeError):  # not the main thread / platform
            return await task
        try:
            return await task
        finally:
            loop.remove_signal_handler(signal.SIGINT)

    async def run(self) -> int:
        options = self.session.options
        greeting = (
            f"bitcask-shell: connecting to {options.address}. "
            "Type help for commands, Ctrl-D to quit.\n"
        )
        self.print_fragments([("", greeting)])
        await self.connect_quietly()
        try:
            while True:
                try:
                    line = await self.prompt.prompt_async(lambda: prompt_fragments(self.session))
                except KeyboardInterrupt:
                    continue
                except EOFError:
                    break
                if not line.strip():
                    continue
                if not await self.one(line):
                    break
        finally:
            await self.session.close()
        return 0

    async def one(self, line: str) -> bool:
        """Run one line; False when the shell should exit."""
        try:
            cmd, args = self.session.parse(line)
        except Exception as exc:  # a typo costs one error line and no round trip
            self.print_error(describe(exc, self.session.options, SHELL))
            return True
        try:
            reply = await self.interruptible(self.session.execute(cmd, args))
        except EOFError:
            return False
        except (KeyboardInterrupt, asyncio.CancelledError):
            self.print_error("interrupted")
            await self.session.drop()  # a reply may still be on its way: start clean
            return True
        except Exception as exc:
            self.print_error(describe(exc, self.session.options, SHELL))
        else:
            if reply is not None:
                self.print_reply(reply, paged=cmd.paged)
            if cmd.name == "delete" and "key" in args:
                self.cache.discard(args["key"])
        await self.session.refresh(force=not cmd.idempotent)
        return True


def _config(path: Path | None) -> ShellConfig | None:
    """The settings, every problem of the file reported on stderr; None: cannot go on.

    A bad setting costs only itself (it keeps its default; the rest of the file is
    used), in piped mode as at a terminal. A file named with --config must exist.
    """
    try:
        return load_config(path, required=path is not None)
    except ConfigError as exc:
        for problem in exc.problems:
            sys.stderr.write(f"(error) config: {problem}\n")
        if exc.config is None:
            return None
        if not exc.unreadable:
            n = len(exc.problems)
            sys.stderr.write(
                f"(error) config: {n} problem{'s' if n > 1 else ''}: using the defaults for "
                "those settings and the rest of the file as written\n"
            )
        sys.stderr.flush()
        return exc.config


def main(argv: list[str] | None = None) -> int:
    """Entry point of the `bitcask-shell` console script; returns the exit status."""
    args = build_parser().parse_args(argv)
    try:
        options = options_from(args)
    except CommandError as exc:
        sys.stderr.write(f"(error) {exc}\n")
        return 2
    config = _config(args.config)
    if config is None:
        return 2
    if args.timeout is None and not os.environ.get("BITCASK_TIMEOUT"):
        options = replace(options, timeout=config.timeout)
    if not sys.stdin.isatty():
        try:
            return asyncio.run(run_piped(options))
        except KeyboardInterrupt:
            return 130
        except BrokenPipeError:  # the reader of our output left
            os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
            return 0
    try:
        return asyncio.run(Shell(options, config).run())
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
