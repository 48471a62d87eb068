"""Syntax highlighting of the input line, derived from the command table.

Strategy: `highlight()` is a pure function from a line to (class, text) fragments
that cover the line exactly (spaces included), so it can be tested without a
terminal; `CommandLexer` only adapts it to prompt_toolkit. The first word is a
command (`class:command`) or not (`class:unknown`); each further word takes the
class of the argument the table says it is (`key`, `value`, `number`, `keyword`),
escapes inside quotes are marked `class:escape`, and anything wrong (a bad escape,
an unclosed quote, a word past the last argument) is marked `class:bad`.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence

from prompt_toolkit.document import Document
from prompt_toolkit.formatted_text import StyleAndTextTuples
from prompt_toolkit.lexers import Lexer

from ._parse import Token, tokenize
from ._table import Command, Kind, Slot, lookup, slots

__all__ = ["CommandLexer", "highlight"]

Fragments = StyleAndTextTuples
_ESCAPE = re.compile(r'\\(x[0-9a-fA-F]{2}|["\\nrt])')


def _arg_class(slot: Slot) -> str:
    if slot.arg is None:
        return "class:bad"
    if slot.keyword:
        return "class:keyword"
    kind = slot.arg.kind
    if kind.is_key:
        return "class:key"
    if kind in (Kind.INT, Kind.FLOAT):
        return "class:number"
    if kind is Kind.COMMAND:
        return "class:command"
    return "class:value"


def _token_fragments(tok: Token, cls: str) -> Fragments:
    if tok.error is not None:
        return [("class:bad", tok.text)]
    if not tok.quoted:
        return [(cls, tok.text)]
    out: Fragments = []
    pos = 0
    for m in _ESCAPE.finditer(tok.text):
        if m.start() > pos:
            out.append((cls, tok.text[pos : m.start()]))
        out.append((f"{cls} class:escape", m.group(0)))
        pos = m.end()
    if pos < len(tok.text):
        out.append((cls, tok.text[pos:]))
    return out


def highlight(line: str, table: Sequence[Command], scope: str) -> Fragments:
    """Fragments covering `line` exactly, classed by what each word is.

    Example:
        >>> from repl._commands import COMMANDS
        >>> highlight("get k", COMMANDS, "shell")
        [('class:command', 'get'), ('', ' '), ('class:key', 'k')]
    """
    tokens = tokenize(line, strict=False)
    if not tokens:
        return [("", line)] if line else []
    cmd = lookup(table, tokens[0].str_value, scope)
    if cmd is None:
        classes = ["class:unknown"] + ["class:value"] * (len(tokens) - 1)
    else:
        roles, _ = slots(cmd, [t.str_value for t in tokens[1:]])
        classes = ["class:command"] + [_arg_class(r) for r in roles]
    out: Fragments = []
    pos = 0
    for tok, cls in zip(tokens, classes, strict=True):
        if tok.start > pos:
            out.append(("", line[pos : tok.start]))
        out.extend(_token_fragments(tok, cls))
        pos = tok.end
    if pos < len(line):
        out.append(("", line[pos:]))
    return out


class CommandLexer(Lexer):
    """prompt_toolkit adapter for `highlight()`."""

    def __init__(self, table: Sequence[Command], scope: str) -> None:
        self.table = table
        self.scope = scope

    def lex_document(self, document: Document) -> Callable[[int], Fragments]:
        lines = document.lines

        def get_line(lineno: int) -> Fragments:
            if lineno >= len(lines):
                return []
            return highlight(lines[lineno], self.table, self.scope)

        return get_line
