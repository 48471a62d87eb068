"""Tab completion: a pure function over the command table, plus a thin adapter.

Strategy: `suggest(text_before_cursor, keys)` decides everything and touches no I/O:
the first word completes to command names; later words complete to what the table
says the next argument may be (keys, keywords such as `TTL`, command names for
`help`). Keys come from two places, merged by the caller: the server (`scan` by the
typed prefix, fetched asynchronously by `BitcaskCompleter` only when `key_prefix()`
says a key is being typed) and `KeyCache`, the keys seen in earlier replies.
Inserted keys are quoted with escapes when they need it, so completing a binary key
produces an argument that reads back as the same bytes.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import AsyncGenerator, Awaitable, Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass

from prompt_toolkit.completion import CompleteEvent, Completer, Completion
from prompt_toolkit.document import Document

from ._parse import Token, quote, tokenize
from ._table import Command, Kind, Slot, lookup, names, slots

__all__ = ["BitcaskCompleter", "KeyCache", "Suggestion", "key_prefix", "suggest"]

MAX_KEYS = 200  # keys offered at once; typing more of the prefix narrows them


@dataclass(frozen=True, slots=True)
class Suggestion:
    """Replace the last `length` characters before the cursor with `text`."""

    text: str
    length: int
    display: str
    meta: str


class KeyCache:
    """The most recently seen keys (bounded), for completion without a round trip."""

    def __init__(self, limit: int = 10_000) -> None:
        self.limit = limit
        self._keys: OrderedDict[bytes, None] = OrderedDict()

    def add(self, keys: Iterable[bytes]) -> None:
        for key in keys:
            self._keys[bytes(key)] = None
            self._keys.move_to_end(bytes(key))
        while len(self._keys) > self.limit:
            self._keys.popitem(last=False)

    def discard(self, key: bytes) -> None:
        self._keys.pop(key, None)

    def __iter__(self) -> Iterator[bytes]:
        return iter(list(self._keys))

    def __len__(self) -> int:
        return len(self._keys)


def _split(text: str) -> tuple[list[Token], Token | None]:
    """Complete tokens before the cursor, and the word being typed (None: a new word)."""
    tokens = tokenize(text, strict=False)
    if not tokens or (
        text[-1:] in (" ", "\t") and not (tokens[-1].quoted and not tokens[-1].closed)
    ):
        return tokens, None
    return tokens[:-1], tokens[-1]


def _where(
    text: str, table: Sequence[Command], scope: str
) -> tuple[Command | None, list[Slot], Token | None, bool]:
    """(command, candidate slots for the current word, the current word, first word?)."""
    done, current = _split(text)
    if not done:
        return None, [], current, True
    cmd = lookup(table, done[0].str_value, scope)
    if cmd is None:
        return None, [], current, False
    _, nxt = slots(cmd, [t.str_value for t in done[1:]])
    return cmd, nxt, current, False


def key_prefix(text: str, table: Sequence[Command], scope: str) -> bytes | None:
    """The key prefix being typed, when the word at the cursor is a key; else None.

    Example:
        >>> from repl._commands import COMMANDS
        >>> key_prefix("get us", COMMANDS, "shell"), key_prefix("put k ", COMMANDS, "shell")
        (b'us', None)
    """
    _, candidates, current, _first = _where(text, table, scope)
    if not any(s.arg is not None and s.arg.kind.is_key and not s.keyword for s in candidates):
        return None
    return b"" if current is None else current.value


def suggest(
    text: str, table: Sequence[Command], scope: str, keys: Iterable[bytes] = ()
) -> list[Suggestion]:
    """Completions for the text before the cursor.

    Args:
        text: the line up to the cursor.
        table: the command table.
        scope: "shell" or "cli".
        keys: known keys (server scan results and cached keys); filtered here.

    Returns:
        Suggestions in display order (commands and keywords first, then keys sorted).

    Example:
        >>> from repl._commands import COMMANDS
        >>> [s.text for s in suggest("me", COMMANDS, "shell")]
        ['merge ']
    """
    cmd, candidates, current, first = _where(text, table, scope)
    typed = "" if current is None else current.text
    length = len(typed)
    if first:
        found = [name for name in names(table, scope) if name.startswith(typed.lower())]
        # a unique name comes with its space, so `get<Tab>` does something (`get `,
        # with the argument hint) and the next Tab goes on to the arguments
        end = " " if len(found) == 1 else ""
        return [
            Suggestion(name + end, length, name, _summary(table, name, scope)) for name in found
        ]
    if cmd is None:
        return []
    value = b"" if current is None else current.value
    out: list[Suggestion] = []
    for slot in candidates:
        arg = slot.arg
        if arg is None:
            continue
        if slot.keyword and arg.keyword is not None:
            word = arg.keyword_text
            if word.lower().startswith(typed.lower()):
                out.append(Suggestion(word, length, word, arg.metavar))
        elif arg.kind is Kind.COMMAND:
            text_value = value.decode("utf-8", "replace").lower()
            out += [
                Suggestion(n, length, n, _summary(table, n, scope))
                for n in names(table, scope)
                if n.startswith(text_value)
            ]
        elif arg.kind.is_key:
            matching = sorted({bytes(k) for k in keys if bytes(k).startswith(value)})
            for key in matching[:MAX_KEYS]:
                shown = quote(key)
                out.append(Suggestion(shown, length, shown, arg.name))
    return out


def _summary(table: Sequence[Command], name: str, scope: str) -> str:
    cmd = lookup(table, name, scope)
    return cmd.summary if cmd is not None else ""


KeyFetcher = Callable[[bytes], Awaitable[Iterable[bytes]]]


class BitcaskCompleter(Completer):
    """prompt_toolkit adapter: `suggest()` fed with server keys and cached keys.

    Args:
        table, scope: the command table and "shell".
        cache: keys seen in replies.
        fetch: `await fetch(prefix)` -> keys from the server (may raise: then only
            cached keys are offered).
    """

    def __init__(
        self, table: Sequence[Command], scope: str, cache: KeyCache, fetch: KeyFetcher | None
    ) -> None:
        self.table = table
        self.scope = scope
        self.cache = cache
        self.fetch = fetch

    def _completions(self, text: str, keys: Iterable[bytes]) -> Iterator[Completion]:
        for s in suggest(text, self.table, self.scope, keys):
            yield Completion(
                s.text, start_position=-s.length, display=s.display, display_meta=s.meta
            )

    def get_completions(
        self, document: Document, complete_event: CompleteEvent
    ) -> Iterator[Completion]:
        yield from self._completions(document.text_before_cursor, self.cache)

    async def get_completions_async(
        self, document: Document, complete_event: CompleteEvent
    ) -> AsyncGenerator[Completion, None]:
        text = document.text_before_cursor
        keys: list[bytes] = list(self.cache)
        prefix = key_prefix(text, self.table, self.scope)
        if prefix is not None and self.fetch is not None:
            try:
                fetched = list(await self.fetch(prefix))
            except Exception:  # completion must never break the prompt
                fetched = []
            self.cache.add(fetched)
            keys += fetched
        for completion in self._completions(text, keys):
            yield completion
