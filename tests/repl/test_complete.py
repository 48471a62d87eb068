"""Completion suggestions, from the command table and known keys."""

from __future__ import annotations

import asyncio

import pytest
from prompt_toolkit.completion import CompleteEvent
from prompt_toolkit.document import Document

from repl._commands import COMMANDS
from repl._complete import MAX_KEYS, BitcaskCompleter, KeyCache, key_prefix, suggest
from repl._table import CLI, SHELL

KEYS = [b"user:1", b"user:2", b"user:10", b"order:7", b"a b", b"\xffbin"]


def texts(text: str, keys: list[bytes] | None = None, scope: str = SHELL) -> list[str]:
    return [s.text for s in suggest(text, COMMANDS, scope, KEYS if keys is None else keys)]


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        pytest.param("", sorted(["auth", "delete", "exists", "get", "help", "keys", "merge", "mget", "mput",
                                 "ping", "put", "quit", "scan", "stats", "sync", "ttl",
                                 "set", "incr", "incrfloat", "append", "getdel", "expire",
                                 "persist", "rename", "clear"]), id="all"),
        pytest.param("m", ["merge", "mget", "mput"], id="prefix"),
        pytest.param("MG", ["mget "], id="case-insensitive-and-unique-gets-its-space"),
        pytest.param("ttl", ["ttl "], id="complete-name-gets-its-space"),
        pytest.param("get", ["get", "getdel"], id="complete-name-that-prefixes-another"),
        pytest.param("x", [], id="none"),
    ],
)  # fmt: skip
def test_command_names(text: str, expected: list[str]) -> None:
    assert texts(text) == expected


def test_cli_scope_offers_its_own_commands() -> None:
    assert texts("he", scope=CLI) == ["health", "help"]
    assert "quit" not in texts("", scope=CLI)


def test_keys_by_prefix_sorted_and_quoted_when_needed() -> None:
    assert texts("get user:") == ["user:1", "user:10", "user:2"]
    assert texts("get ") == ['"a b"', "order:7", "user:1", "user:10", "user:2", '"\\xffbin"']
    assert texts('get "a') == ['"a b"']
    assert texts('get "\\xff') == ['"\\xffbin"']


def test_replacement_length_covers_the_typed_word() -> None:
    (s,) = suggest('get "a', COMMANDS, SHELL, KEYS)
    assert s.length == 2 and s.text == '"a b"'
    (s,) = suggest("DEL order", COMMANDS, SHELL, KEYS)
    assert s.length == 5 and s.meta == "key"


def test_value_positions_offer_no_keys_but_keywords() -> None:
    assert texts("put k ") == []
    assert texts("put k v ") == ["TTL"]
    assert texts("put k v t") == ["TTL"]
    assert texts("put k v TTL ") == []
    assert texts("put k v TTL 5 ") == []


def test_repeating_commands_alternate_keys_and_values() -> None:
    assert texts("mput user:1 x us") == ["user:1", "user:10", "user:2"]
    assert texts("mput user:1 ") == []
    assert texts("mget a user:1") == ["user:1", "user:10"]


def test_help_completes_command_names() -> None:
    assert texts("help p") == ["persist", "ping", "put"]


def test_cli_options_complete() -> None:
    assert texts("stat --", scope=CLI) == ["--count", "--interval"]
    assert texts("stat --count 3 ", scope=CLI) == ["--interval"]


def test_unknown_command_offers_nothing() -> None:
    assert texts("frobnicate ") == []


@pytest.mark.parametrize(
    ("text", "prefix"),
    [
        pytest.param("get ", b"", id="empty"),
        pytest.param("get us", b"us", id="typed"),
        pytest.param('get "a\\x00', b"a\x00", id="escaped"),
        pytest.param("scan u", b"u", id="scan-prefix"),
        pytest.param("put k ", None, id="value"),
        pytest.param("ge", None, id="command"),
        pytest.param("ping ", None, id="no-key-arg"),
    ],
)
def test_key_prefix(text: str, prefix: bytes | None) -> None:
    assert key_prefix(text, COMMANDS, SHELL) == prefix


def test_key_cache_is_bounded_and_keeps_the_newest() -> None:
    cache = KeyCache(limit=3)
    cache.add([b"a", b"b", b"c", b"a", b"d"])
    assert list(cache) == [b"c", b"a", b"d"]
    cache.discard(b"a")
    assert len(cache) == 2


def _complete(completer: BitcaskCompleter, text: str) -> list[str]:
    async def run() -> list[str]:
        doc = Document(text, len(text))
        return [c.text async for c in completer.get_completions_async(doc, CompleteEvent())]

    return asyncio.run(run())


def test_the_adapter_merges_server_keys_with_cached_ones() -> None:
    asked: list[bytes] = []

    async def fetch(prefix: bytes) -> list[bytes]:
        asked.append(prefix)
        return [b"srv:1", b"srv:2"]

    cache = KeyCache()
    cache.add([b"seen"])
    completer = BitcaskCompleter(COMMANDS, SHELL, cache, fetch)
    assert _complete(completer, "get s") == ["seen", "srv:1", "srv:2"]
    assert asked == [b"s"]
    assert _complete(completer, "pu") == ["put "]
    assert asked == [b"s"]  # no round trip when no key is being typed
    assert b"srv:1" in list(cache)


def test_the_adapter_survives_a_failing_server() -> None:
    async def fetch(prefix: bytes) -> list[bytes]:
        raise ConnectionError("down")

    cache = KeyCache()
    cache.add([b"kept"])
    assert _complete(BitcaskCompleter(COMMANDS, SHELL, cache, fetch), "get ") == ["kept"]


def test_key_suggestions_are_capped() -> None:
    many = [b"k%04d" % i for i in range(1000)]
    found = texts("get k", many)
    assert len(found) == MAX_KEYS and found[0] == "k0000"
    assert texts("get k09", many) == [f"k09{i:02d}" for i in range(100)]
