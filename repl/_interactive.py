"""The interactive shell: prompt_toolkit's prompt, the loop, printing replies.

Kept apart from `shell.py` (arguments, config, the choice of mode) so that piped
mode, which draws nothing, never imports prompt_toolkit's application machinery.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import os
import signal
import sys
from collections.abc import Coroutine
from typing import Any

from prompt_toolkit import PromptSession
from prompt_toolkit.application.current import get_app_session
from prompt_toolkit.auto_suggest import AutoSuggestFromHistory, ConditionalAutoSuggest
from prompt_toolkit.buffer import Buffer
from prompt_toolkit.filters import has_completions, is_done
from prompt_toolkit.formatted_text import FormattedText
from prompt_toolkit.history import History, InMemoryHistory
from prompt_toolkit.layout.processors import ConditionalProcessor
from prompt_toolkit.renderer import print_formatted_text as render_fragments
from prompt_toolkit.styles import BaseStyle, Style, default_ui_style, merge_styles

from ._commands import COMMANDS
from ._complete import BitcaskCompleter, KeyCache
from ._config import ShellConfig, history_path
from ._context import ConnectOptions, plain_text
from ._format import Reply, error_line, styled
from ._hints import HintProcessor
from ._lexer import CommandLexer
from ._session import Session, describe
from ._signals import SESSION_SIGNALS, Interrupted, Stop, stoppable
from ._style import build_style, color_depth
from ._table import SHELL
from ._transfer import scan_page
from ._ui import BoundedFileHistory, page, prompt_fragments, should_page, toolbar_fragments

__all__ = ["Shell"]


def command_lines(text: str) -> list[str]:
    r"""The commands of what the prompt accepted: one per line (a paste of many lines
    runs them in order, as redis-cli and the shell's own pipe do), blank ones skipped.

    Example:
        >>> command_lines("put a 1\r\n\nget a\n")
        ['put a 1', 'get a']
    """
    return [ln for ln in (part.removesuffix("\r") for part in text.split("\n")) if ln.strip()]


def _quiet_if_hung_up() -> None:
    """Stdout and stderr, when their terminal has hung up (a write fails with EIO), go
    to /dev/null: what is still written (the terminal's reset, the last line, Python's
    exit-time flush) then vanishes instead of ending the shell in an EIO traceback. A
    `kill -HUP` from elsewhere, the terminal still there, is shown as any stop is."""
    for fd in (sys.stdout.fileno(), sys.stderr.fileno()):
        try:
            os.write(fd, b"")  # nothing, on a live terminal; EIO on a hung-up one
        except OSError:
            devnull = os.open(os.devnull, os.O_WRONLY)
            os.dup2(devnull, fd)
            os.close(devnull)


def _hide_suggestion(buffer: Buffer) -> None:
    """A completion menu opened: drop the grey history suggestion drawn beside it."""
    if buffer.complete_state is not None:
        buffer.suggestion = None


class Shell:
    """The interactive loop: prompt, run, print, refresh the toolbar."""

    def __init__(self, options: ConnectOptions, config: ShellConfig) -> None:
        self.config = config
        self.style: Style = build_style(config.colors)
        # what replies are printed with, merged once: prompt_toolkit's
        # print_formatted_text merged and parsed every rule again for every call
        # (~10 ms a line: a pasted block of 10,000 lines took minutes)
        self.print_style: BaseStyle = merge_styles([default_ui_style(), self.style])
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
            # hints while typing only: an accepted line is left as it was typed
            input_processors=[ConditionalProcessor(HintProcessor(COMMANDS, SHELL), ~is_done)],
            completer=BitcaskCompleter(COMMANDS, SHELL, self.cache, self.fetch_keys),
            complete_while_typing=False,
            lexer=CommandLexer(COMMANDS, SHELL),
            style=self.style,
            include_default_pygments_style=False,
            bottom_toolbar=(lambda: toolbar_fragments(self.session)) if config.toolbar else None,
            color_depth=color_depth(),
        )
        self.prompt.default_buffer.on_completions_changed += _hide_suggestion
        self.interrupted = False  # Ctrl-C during the lines of a paste: skip the rest
        self.stop = Stop()  # the SIGTERM / SIGHUP that ends the session, once one came
        self.wrote = False  # a line of the block may have changed the key count
        self.silent = False  # the block's last command timed out: no toolbar round trip

    def open_history(self) -> History:
        """The persistent history, or one in memory when its directory is unusable."""
        path = history_path()
        if path is None:
            self.print_error("history not saved: no home directory (set HOME or XDG_DATA_HOME)")
            return InMemoryHistory()
        try:
            return BoundedFileHistory(path, self.config.history_size)
        except OSError as exc:  # the file, or a directory on its path, is unusable
            what = str(exc.filename or path)
            verb = "" if what == str(path) else "cannot create "  # its directory
            self.print_error(f"history not saved: {verb}{what}: {exc.strerror or exc}")
            return InMemoryHistory()

    def report_history_failure(self) -> None:
        """The history file stopped taking writes while the line was accepted: say so."""
        history = self.prompt.history
        failure = history.take_failure() if isinstance(history, BoundedFileHistory) else None
        if failure:
            self.print_error(failure)

    async def fetch_keys(self, prefix: bytes) -> list[bytes]:
        """Keys from the server for completion: one scan page with the typed prefix."""
        if not self.session.connected or not self.config.completion_keys:
            return []
        client = await self.session.client()
        _, keys = await scan_page(client, prefix, None, self.config.completion_keys)
        return keys

    def print_fragments(self, frags: list[tuple[str, str]]) -> None:
        if plain_text():  # NO_COLOR, TERM=dumb: the text, without a single escape
            sys.stdout.write("".join(text for _, text in frags))
            sys.stdout.flush()
            return
        # never while the prompt is up (replies come between prompts), so straight to
        # the terminal rather than above a running application
        output = get_app_session().output
        render_fragments(output, FormattedText(frags), self.print_style, color_depth=color_depth())
        output.flush()

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
            loop.add_signal_handler(signal.SIGINT, self._held_sigint)

    def _held_sigint(self) -> None:
        """A Ctrl-C between commands: nothing to cancel, but a pasted block stops."""
        self.interrupted = True

    def hold_sigint(self) -> None:
        """Between commands (printing, the toolbar, the prompt starting) a SIGINT does
        nothing: with Python's default handler a Ctrl-C there left the shell (exit 130).
        At the prompt Ctrl-C is a key; during a command `interruptible` cancels it."""
        with contextlib.suppress(NotImplementedError, RuntimeError):
            asyncio.get_running_loop().add_signal_handler(signal.SIGINT, self._held_sigint)

    @property
    def stopping(self) -> bool:
        """A SIGTERM or SIGHUP came: the session ends, whatever was running."""
        return self.stop.signum is not None

    def _on_stop(self, signum: int) -> None:
        """At the SIGTERM / SIGHUP, before the cancellation."""
        if signum == signal.SIGHUP:
            _quiet_if_hung_up()

    async def run(self) -> int:
        """The session; its exit status: 0, or 143 / 129 after a SIGTERM / SIGHUP."""
        options = self.session.options
        greeting = (
            f"bitcask-shell: connecting to {options.address}. "
            "Type help for commands, Ctrl-D to quit.\n"
        )
        self.print_fragments([("", greeting)])
        stopped: Interrupted | None = None
        try:
            with stoppable(SESSION_SIGNALS, self._on_stop) as self.stop:
                await self.connect_quietly()
                self.hold_sigint()
                await self.loop()
        except Interrupted as exc:
            stopped = exc
        except Exception as exc:
            if self.stop.signum is not None:
                # the cancellation's own cleanup failed (a hung-up terminal refusing the
                # reset of its modes): the stop is still what happened
                stopped = Interrupted(self.stop.signum)
            elif isinstance(exc, OSError) and exc.errno == errno.EIO:
                # the terminal went away without a SIGHUP reaching us (one ignored by
                # whoever started the shell: nohup, `trap '' HUP`): a hang-up all the same
                _quiet_if_hung_up()
                stopped = Interrupted(signal.SIGHUP)
            else:
                raise
        finally:
            with contextlib.suppress(NotImplementedError, RuntimeError):
                asyncio.get_running_loop().remove_signal_handler(signal.SIGINT)
            if self.stopping:  # a Ctrl-C now would not make it stop any sooner
                signal.signal(signal.SIGINT, signal.SIG_IGN)
            try:
                await self.session.close()
            except asyncio.CancelledError:
                # A cancellation that reached the cleanup once stopping (seen once in
                # CI: a terminal killed under the shell, a traceback instead of 129):
                # the process is ending, and its connections close with it.
                if not self.stopping:
                    raise
        if stopped is None:
            return 0
        _quiet_if_hung_up()  # a SIGHUP may come before the terminal is really gone
        name = signal.Signals(stopped.signum).name
        self.print_error(f"stopped by {name}; the connection to {options.address} is closed")
        return stopped.exit_code

    async def loop(self) -> None:
        """Prompt, run, until Ctrl-D, `quit` or a SIGTERM / SIGHUP."""
        while not self.stopping:
            try:
                line = await self.prompt.prompt_async(
                    lambda: prompt_fragments(self.session), handle_sigint=False
                )
            except KeyboardInterrupt:
                continue
            except EOFError:
                break
            self.report_history_failure()
            if not await self.block(line):
                break

    async def block(self, text: str) -> bool:
        """Run the lines the prompt accepted, in order; False when the shell should exit.

        A bracketed paste of many lines arrives as one text: each line is a command,
        echoed after the prompt as redis-cli shows a paste (run together, `put a 1` and
        `get a` were one `put` of four words). A failed line prints its error and the
        rest still run; Ctrl-C stops the rest. The toolbar's key count is asked for once,
        after the block (it is not drawn in between): it doubled the round trips of a paste.
        """
        lines = command_lines(text)
        self.interrupted = False
        self.wrote = False
        for line in lines:
            if self.stopping:
                return False
            if self.interrupted:
                self.print_error(f"interrupted: the {len(lines)} pasted lines stopped here")
                return True
            if len(lines) > 1:
                address = self.session.options.address
                self.print_fragments([("class:prompt", f"{address}> "), ("", line + "\n")])
            if not await self.one(line):
                return False
        await self.refresh()
        return True

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
            doubt = self.session.in_doubt(cmd)
            if self.stopping:  # SIGTERM / SIGHUP: the session ends (run() says so)
                if doubt:
                    self.print_error(f"interrupted: {doubt}")
                raise
            self.print_error(f"interrupted: {doubt}" if doubt else "interrupted")
            self.interrupted = True
            await self.session.drop()  # a reply may still be on its way: start clean
            return True
        except Exception as exc:
            self.print_error(describe(exc, self.session.options, SHELL))
            if isinstance(exc, TimeoutError):  # the server is not answering: do not wait
                self.silent = True  # one more timeout for the toolbar's key count
                return True
        else:
            if reply is not None:
                self.print_reply(reply, paged=cmd.paged)
            if cmd.name == "delete" and "key" in args:
                self.cache.discard(args["key"])
        self.silent = False
        self.wrote = self.wrote or not cmd.idempotent
        return True

    async def refresh(self) -> None:
        """The toolbar's key count, after a block (not after a timeout: do not wait)."""
        if self.silent:
            return
        try:  # a round trip too: Ctrl-C cancels it, not the shell
            await self.interruptible(self.session.refresh(force=self.wrote))
        except (KeyboardInterrupt, asyncio.CancelledError):
            if self.stopping:
                raise
            self.session.key_count = None
            await self.session.drop()  # its reply may still be on its way: start clean
