"""Argument hints: the rest of a command's usage, shown grey after the cursor.

Strategy: `hint(text)` is a pure function over the command table (as `suggest()` is
for completion): for `put k` it answers ` VALUE [TTL SECONDS]`, for `put ` it
answers `KEY VALUE [TTL SECONDS]`, as redis-cli does inline. `HintProcessor` draws
it after the last character of the line, only when nothing else claims that space:
no history suggestion (grey too, and accepted with the right arrow, which a hint is
not) and no open completion menu.
"""

from __future__ import annotations

from collections.abc import Sequence

from prompt_toolkit.layout.processors import Processor, Transformation, TransformationInput

from ._parse import tokenize
from ._table import Arg, Command, lookup, slots

__all__ = ["HintProcessor", "hint"]


def _show(arg: Arg) -> str:
    if arg.keyword is not None:
        return f"[{arg.keyword_text} {arg.metavar}]"
    return f"[{arg.metavar}]" if arg.optional else arg.metavar


def _rest(cmd: Command, words: Sequence[str]) -> list[str]:
    if cmd.repeat:
        pos = cmd.positional
        group = " ".join(a.metavar for a in pos)
        done = len(words) % len(pos)
        if done:
            return [a.metavar for a in pos[done:]]
        return [group, f"[{group} ...]"] if not words else [f"[{group} ...]"]
    roles, _ = slots(cmd, words)
    filled = {r.arg.name for r in roles if r.arg is not None}
    rest = [_show(a) for a in cmd.positional if a.name not in filled]
    last = roles[-1] if roles else None
    if last is not None and last.keyword and last.arg is not None:
        rest.insert(0, last.arg.metavar)  # `put k v TTL` waits for SECONDS
    return rest + [_show(a) for a in cmd.args if a.keyword is not None and a.name not in filled]


def hint(text: str, table: Sequence[Command], scope: str) -> str | None:
    """What is still to type for the command on the line, or None.

    Example:
        >>> from repl._commands import COMMANDS
        >>> hint("put k", COMMANDS, "shell"), hint("get ", COMMANDS, "shell")
        (' VALUE [TTL SECONDS]', 'KEY')
    """
    tokens = tokenize(text, strict=False)
    if not tokens or (len(tokens) == 1 and not text[-1:].isspace()):
        return None  # still typing the command name: completion's job
    cmd = lookup(table, tokens[0].str_value, scope)
    if cmd is None:
        return None
    rest = _rest(cmd, [t.str_value for t in tokens[1:]])
    if not rest:
        return None
    joined = " ".join(rest)
    return joined if text[-1:].isspace() else " " + joined


class HintProcessor(Processor):
    """Draws `hint()` in `class:hint` after the end of the input line."""

    def __init__(self, table: Sequence[Command], scope: str) -> None:
        self.table = table
        self.scope = scope

    def apply_transformation(self, ti: TransformationInput) -> Transformation:
        buffer = ti.buffer_control.buffer
        document = buffer.document
        if (
            ti.lineno != document.line_count - 1
            or not document.is_cursor_at_the_end
            or (buffer.suggestion is not None and buffer.suggestion.text)
            or buffer.complete_state is not None
        ):
            return Transformation(ti.fragments)
        text = hint(document.text, self.table, self.scope)
        if not text:
            return Transformation(ti.fragments)
        return Transformation([*ti.fragments, ("class:hint", text)])
