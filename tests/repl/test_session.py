"""One-line error messages and command parsing of a Session (no server needed)."""

from __future__ import annotations

import pytest

from client import (
    CallTimeoutError,
    ConnectError,
    ConnectionLostError,
    InterfaceError,
    KeyTooLargeError,
    ServerError,
)
from repl._commands import COMMANDS
from repl._context import CommandError, ConnectOptions
from repl._format import Value
from repl._parse import ParseError
from repl._session import Session, describe
from repl._table import CLI, SHELL

OPTS = ConnectOptions(port=7001, timeout=2.0)


def _chained(outer: BaseException, cause: BaseException) -> BaseException:
    outer.__cause__ = cause
    return outer


@pytest.mark.parametrize(
    ("exc", "line"),
    [
        pytest.param(KeyTooLargeError(300, "KEY_TOO_LARGE", "key is 70000 bytes"),
                     "KEY_TOO_LARGE key is 70000 bytes", id="server-error-by-code-name"),
        pytest.param(ServerError(500, "INTERNAL", ""), "INTERNAL", id="no-message"),
        pytest.param(ParseError("unbalanced quotes", 4), "unbalanced quotes (at column 5)", id="parse"),
        pytest.param(CommandError("no such file: x"), "no such file: x", id="command"),
        pytest.param(CallTimeoutError("slow"), "no reply from 127.0.0.1:7001 within 2 s", id="timeout"),
        pytest.param(_chained(ConnectError("x"), ConnectionRefusedError(111, "refused")),
                     "cannot connect to 127.0.0.1:7001: connection refused (is the server running?)",
                     id="refused"),
        pytest.param(_chained(ConnectError("x"),
                              OSError(113, "Connect call failed ('10.0.0.2', 7001)")),
                     "cannot connect to 127.0.0.1:7001: no route to host",
                     id="unreachable-system-words"),
        pytest.param(ConnectionLostError("eof"),
                     "connection to 127.0.0.1:7001 lost during the call (it may or may not have "
                     "been applied); the next command reconnects", id="lost"),
    ],
)  # fmt: skip
def test_describe_gives_one_line(exc: BaseException, line: str) -> None:
    assert describe(exc, OPTS) == line
    assert "\n" not in line


def _session(scope: str) -> Session:
    return Session(OPTS, COMMANDS, scope, interactive=False, emit=lambda r: None)


def test_parse_finds_the_command_and_binds_arguments() -> None:
    cmd, args = _session(SHELL).parse('PUT "a key" "\\x00" ttl 1.5')
    assert cmd.name == "put"
    assert args == {"key": b"a key", "value": b"\x00", "ttl": 1.5}


@pytest.mark.parametrize(
    ("scope", "line", "error"),
    [
        pytest.param(SHELL, "health", CommandError, id="cli-only-in-shell"),
        pytest.param(CLI, "quit", CommandError, id="shell-only-in-cli"),
        pytest.param(SHELL, 'get "x', ParseError, id="quote"),
        pytest.param(SHELL, "   ", CommandError, id="empty"),
    ],
)
def test_parse_errors(scope: str, line: str, error: type[Exception]) -> None:
    with pytest.raises(error):
        _session(scope).parse(line)


async def test_local_commands_do_not_connect_or_count_as_a_round_trip() -> None:
    s = _session(SHELL)
    cmd, args = s.parse("help get")
    reply = await s.execute(cmd, args)
    assert reply is not None and "get KEY" in reply.text  # type: ignore[union-attr]
    assert not s.connected and s.last_rtt is None


class _ClosedWhileQueued:
    """A client that another command drops (closes) while this call waits to be
    sent, as in piped mode after a lost connection: the call raises InterfaceError."""

    def __init__(self, session: Session) -> None:
        self.session = session
        self.closed = False
        self.is_connected = True

    async def close(self) -> None:
        self.closed = True

    async def _dropped(self) -> None:
        await self.session.drop()
        raise InterfaceError("the client is closed")

    async def put(self, key: bytes, value: bytes, ttl: float | None = None) -> None:
        await self._dropped()

    async def get(self, key: bytes) -> bytes:
        await self._dropped()
        return b""


class _Fresh:
    closed = False
    is_connected = True
    server_info: dict[str, str] = {}

    async def get(self, key: bytes) -> bytes:
        return b"v"

    async def close(self) -> None:
        pass


async def test_a_call_whose_client_was_dropped_under_it_is_not_sent_not_misuse(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # it printed "(error) InterfaceError: the client is closed" (1 line in 60,000
    # piped puts when the server was killed mid-stream)
    async def fresh(*_: object) -> _Fresh:
        return _Fresh()

    monkeypatch.setattr("repl._session.open_client", fresh)
    s = _session(CLI)
    s._client = _ClosedWhileQueued(s)
    cmd, args = s.parse("put k v")
    with pytest.raises(CommandError) as err:
        await s.execute(cmd, args)
    assert describe(err.value, OPTS) == (
        "not sent: the connection to 127.0.0.1:7001 was lost before this command went "
        "out; the next command reconnects"
    )
    s._client = _ClosedWhileQueued(s)
    cmd, args = s.parse("get k")  # a read is simply sent on a new connection
    assert await s.execute(cmd, args) == Value(b"v")
