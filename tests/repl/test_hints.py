"""Argument hints and "did you mean", as pure functions of the command table."""

from __future__ import annotations

import pytest

from repl._commands import COMMANDS
from repl._hints import hint
from repl._table import CLI, SHELL, unknown


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        pytest.param("put", None, id="command-name-being-typed"),
        pytest.param("put ", "KEY VALUE [TTL SECONDS]", id="all-arguments"),
        pytest.param("put k", " VALUE [TTL SECONDS]", id="after-a-word"),
        pytest.param("put k v ", "[TTL SECONDS]", id="optional-keyword"),
        pytest.param("put k v TTL", " SECONDS", id="keyword-value"),
        pytest.param("put k v TTL 5", None, id="complete"),
        pytest.param("mput ", "KEY VALUE [KEY VALUE ...]", id="repeat"),
        pytest.param("mput a", " VALUE", id="repeat-half-group"),
        pytest.param("mput a 1 ", "[KEY VALUE ...]", id="repeat-more"),
        pytest.param('put "a b" ', "VALUE [TTL SECONDS]", id="quoted"),
        pytest.param("GET ", "KEY", id="case"),
        pytest.param("bogus x", None, id="unknown"),
        pytest.param("", None, id="empty"),
    ],
)  # fmt: skip
def test_hint(text: str, expected: str | None) -> None:
    assert hint(text, COMMANDS, SHELL) == expected


@pytest.mark.parametrize(
    ("name", "scope", "message"),
    [
        pytest.param("gte", SHELL, "unknown command 'gte' (did you mean get?)", id="typo"),
        pytest.param("DLE", SHELL, "unknown command 'DLE' (did you mean delete or del?)", id="alias"),
        pytest.param("helth", CLI, "unknown command 'helth' (did you mean health or help?)",
                     id="two"),
        pytest.param("helth", SHELL, "unknown command 'helth' (did you mean help?)",
                     id="scope"),
        pytest.param("frob", SHELL, "unknown command 'frob' (try: help)", id="none-shell"),
        pytest.param("frob", CLI, "unknown command 'frob' (bitcask help lists them)",
                     id="none-cli"),
    ],
)  # fmt: skip
def test_did_you_mean(name: str, scope: str, message: str) -> None:
    assert str(unknown(COMMANDS, name, scope)) == message
