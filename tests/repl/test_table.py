"""The command table and what is derived from it: binding, usage, help, exit codes."""

from __future__ import annotations

import pytest

from repl._commands import COMMANDS
from repl._context import UsageError
from repl._format import Bool, Int, Items, Nil, Report, Status, Table, Ttl, Value
from repl._table import CLI, SHELL, Kind, bind, help_text, lookup, names, slots, usage


def cmd(name: str, scope: str = SHELL):  # type: ignore[no-untyped-def]
    found = lookup(COMMANDS, name, scope)
    assert found is not None, name
    return found


def test_names_are_unique_and_lower_case() -> None:
    all_names = [c.name for c in COMMANDS] + [a for c in COMMANDS for a in c.aliases]
    assert len(all_names) == len(set(all_names))
    assert all(n == n.lower() for n in all_names)


def test_shell_offers_the_protocol_commands_plus_auth_help_and_quit() -> None:
    assert set(names(COMMANDS, SHELL)) == {
        "get", "put", "delete", "exists", "mget", "mput", "scan", "keys", "ttl",
        "stats", "merge", "sync", "ping", "auth", "help", "quit",
        "set", "incr", "incrfloat", "append", "getdel", "expire", "persist", "rename", "clear",
    }  # fmt: skip


def test_cli_offers_the_tools_but_not_quit() -> None:
    cli = set(names(COMMANDS, CLI))
    assert {"health", "import", "export", "stat", "latency", "check", "repair", "merge"} <= cli
    assert "quit" not in cli


def test_lookup_is_case_insensitive_and_knows_aliases() -> None:
    assert cmd("GET").name == "get"
    assert cmd("Del").name == "delete"
    assert cmd("exit").name == "quit"
    assert lookup(COMMANDS, "health", SHELL) is None


@pytest.mark.parametrize(
    ("name", "words", "expected"),
    [
        pytest.param("get", [b"k"], {"key": b"k"}, id="get"),
        pytest.param("put", [b"k", b"v"], {"key": b"k", "value": b"v", "ttl": None}, id="put"),
        pytest.param(
            "put",
            [b"k", b"v", b"ttl", b"2.5"],
            {"key": b"k", "value": b"v", "ttl": 2.5},
            id="ttl-lower",
        ),
        pytest.param(
            "put", [b"k", b"v", b"TTL", b"5"], {"key": b"k", "value": b"v", "ttl": 5.0}, id="ttl"
        ),
        pytest.param(
            "put",
            [b"TTL", b"v", b"TTL", b"1"],
            {"key": b"TTL", "value": b"v", "ttl": 1.0},
            id="key-named-ttl-after-use",
        ),
        pytest.param("mget", [b"a", b"b"], {"groups": [(b"a",), (b"b",)]}, id="mget"),
        pytest.param(
            "mput", [b"a", b"1", b"b", b"2"], {"groups": [(b"a", b"1"), (b"b", b"2")]}, id="mput"
        ),
        pytest.param("scan", [], {"prefix": None, "cursor": None, "count": None}, id="scan-bare"),
        pytest.param(
            "scan",
            [b"u:", b"u:5", b"3"],
            {"prefix": b"u:", "cursor": b"u:5", "count": 3},
            id="scan-full",
        ),
        pytest.param("help", [b"put"], {"command": "put"}, id="help"),
    ],
)
def test_bind(name: str, words: list[bytes], expected: dict[str, object]) -> None:
    assert bind(cmd(name), words) == expected


def test_bind_cli_keyword_options() -> None:
    assert bind(cmd("stat", CLI), [b"--count", b"3", b"--interval", b"0.5"]) == {
        "count": 3,
        "interval": 0.5,
    }
    assert bind(cmd("import", CLI), [b"f.jsonl", b"--batch", b"10"]) == {
        "file": "f.jsonl",
        "batch": 10,
    }


@pytest.mark.parametrize(
    ("name", "words", "fragment"),
    [
        pytest.param("get", [], "needs KEY", id="missing"),
        pytest.param("get", [b"a", b"b"], "too many arguments", id="extra"),
        pytest.param("put", [b"k", b"v", b"TTL"], "TTL needs SECONDS", id="ttl-no-value"),
        pytest.param("put", [b"k", b"v", b"TTL", b"soon"], "must be a number", id="ttl-nan"),
        pytest.param("put", [b"k", b"v", b"TTL", b"0"], "greater than 0", id="ttl-zero"),
        pytest.param("put", [b"k", b"v", b"TTL", b"inf"], "finite", id="ttl-inf"),
        pytest.param("mput", [b"a", b"1", b"b"], "one or more KEY VALUE", id="odd-pairs"),
        pytest.param("mget", [], "one or more KEY", id="mget-empty"),
        pytest.param("scan", [b"p", b"c", b"x"], "must be an integer", id="count"),
    ],
)
def test_bind_errors_include_usage(name: str, words: list[bytes], fragment: str) -> None:
    with pytest.raises(UsageError) as info:
        bind(cmd(name), words)
    assert fragment in str(info.value)
    assert f"(usage: {usage(cmd(name))})" in str(info.value)


@pytest.mark.parametrize(
    ("name", "text"),
    [
        pytest.param("get", "get KEY", id="get"),
        pytest.param("put", "put KEY VALUE [TTL SECONDS]", id="put"),
        pytest.param("mget", "mget KEY [KEY ...]", id="mget"),
        pytest.param("mput", "mput KEY VALUE [KEY VALUE ...]", id="mput"),
        pytest.param("scan", "scan [PREFIX] [CURSOR] [COUNT]", id="scan"),
    ],
)
def test_usage_is_derived_from_the_arguments(name: str, text: str) -> None:
    assert usage(cmd(name)) == text


def test_help_lists_every_command_in_scope_with_its_summary() -> None:
    text = help_text(COMMANDS, None, SHELL)
    for c in COMMANDS:
        assert (usage(c) in text) == (SHELL in c.scope), c.name
        if SHELL in c.scope:
            assert c.summary in text
    assert "health" not in text


def test_help_for_one_command_shows_usage_details_and_examples() -> None:
    text = help_text(COMMANDS, "DEL", SHELL)
    assert text.splitlines()[0] == "delete KEY"
    assert "Also: del" in text
    assert "    delete user:1" in text
    assert "    bitcask delete user:1" in help_text(COMMANDS, "delete", CLI)


def test_help_for_an_unknown_command_is_a_usage_error() -> None:
    with pytest.raises(UsageError, match="unknown command 'nope'"):
        help_text(COMMANDS, "nope", SHELL)


@pytest.mark.parametrize(
    ("name", "reply", "code"),
    [
        pytest.param("get", Value(b"v"), 0, id="get-found"),
        pytest.param("get", Nil(), 1, id="get-missing"),
        pytest.param("exists", Bool(True), 0, id="exists"),
        pytest.param("exists", Bool(False), 1, id="exists-not"),
        pytest.param("delete", Bool(False), 1, id="delete-missing"),
        pytest.param("ttl", Ttl(None), 0, id="ttl-none"),
        pytest.param("ttl", Ttl(None, missing=True), 1, id="ttl-missing"),
        pytest.param("put", Status("OK"), 0, id="put"),
        pytest.param("mget", Items((Nil(),)), 0, id="mget-all-missing"),
        pytest.param("stats", Table({"keys": 0}), 0, id="stats"),
    ],
)
def test_exit_code_rules(name: str, reply: object, code: int) -> None:
    assert cmd(name).exit_code(reply) == code


def test_check_exit_code_follows_the_report() -> None:
    check = cmd("check", CLI)
    assert check.exit_code(Report("check: OK", {"ok": True})) == 0
    assert check.exit_code(Report("check: PROBLEMS", {"ok": False})) == 1
    assert check.exit_code(Int(0)) == 0


def test_slots_name_each_word_and_the_next() -> None:
    put = cmd("put")
    roles, nxt = slots(put, ["k", "v"])
    assert [r.arg.name if r.arg else None for r in roles] == ["key", "value"]
    assert [(s.arg.name if s.arg else None, s.keyword) for s in nxt] == [("ttl", True)]
    roles, nxt = slots(put, ["k", "v", "ttl"])
    assert roles[-1].keyword and [s.arg.kind for s in nxt if s.arg] == [Kind.FLOAT]
    roles, _ = slots(put, ["k", "v", "ttl", "5", "extra"])
    assert roles[-1].extra
    roles, nxt = slots(cmd("mput"), ["a", "1", "b"])
    assert [r.arg.kind for r in roles if r.arg] == [Kind.KEY, Kind.VALUE, Kind.KEY]
    assert [s.arg.kind for s in nxt if s.arg] == [Kind.VALUE]
