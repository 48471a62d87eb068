"""The dispatcher's rules for the read-modify-write methods, as for put: auth first,
then the params and the limits, then the read-only state and shutdown; every refusal
is answered before anything joins a group commit."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

import bitcask
from server._dispatch import Dispatcher
from server._metrics import Metrics
from server._outcome import Done, Write
from server._writer import Writer
from server.config import ServerConfig

MAX_KEY = 16
MAX_VALUE = 32

CALLS: list[Any] = [
    pytest.param("set", [b"k", b"v", {"nx": True}], id="set"),
    pytest.param("incr", [b"k"], id="incr"),
    pytest.param("incr_float", [b"k", 1.5], id="incr-float"),
    pytest.param("append", [b"k", b"v"], id="append"),
    pytest.param("get_delete", [b"k"], id="get-delete"),
    pytest.param("expire", [b"k", {"ttl": 5}], id="expire"),
    pytest.param("persist", [b"k"], id="persist"),
    pytest.param("rename", [b"k", b"k2"], id="rename"),
    pytest.param("clear", [], id="clear"),
    pytest.param("commit", [[["incr", b"k"]]], id="commit"),
]


class ReadOnlyStore:
    """The real store, with a read-only reason set (as after a failed write)."""

    def __init__(self, db: bitcask.Bitcask) -> None:
        self._db = db
        self.readonly_reason = ""

    def __getattr__(self, name: str) -> Any:
        return getattr(self._db, name)


@pytest.fixture
async def setup(tmp_path: Path) -> AsyncIterator[tuple[Dispatcher, ReadOnlyStore]]:
    db = bitcask.open(tmp_path / "db", sync="never", max_key_size=MAX_KEY, max_value_size=MAX_VALUE)
    store = ReadOnlyStore(db)
    writer = Writer(db, mode="loop", metrics=Metrics())
    cfg = ServerConfig(data=tmp_path / "db", port=0, http_port=0, auth="tok")
    d = Dispatcher(
        store, writer, cfg, max_key_size=MAX_KEY, max_value_size=MAX_VALUE, server_stats=dict
    )
    yield d, store
    await asyncio.wait_for(writer.wait_idle(), 5)
    db.close()


def _error(outcome: Any) -> str | None:
    assert type(outcome) is Done
    return None if outcome.error is None else outcome.error.name


@pytest.mark.parametrize(("method", "params"), CALLS)
async def test_auth_then_read_only_then_shutdown(
    setup: tuple[Dispatcher, ReadOnlyStore], method: str, params: list[Any]
) -> None:
    d, store = setup
    session = d.new_session()
    assert _error(d.call(session, method, params)) == "AUTH_REQUIRED"
    session.authenticated = True
    assert type(d.call(session, method, params)) is Write
    store.readonly_reason = "disk full"
    assert _error(d.call(session, method, params)) == "READ_ONLY"
    store.readonly_reason = ""
    d.shutting_down = True
    assert _error(d.call(session, method, params)) == "SHUTTING_DOWN"


@pytest.mark.parametrize(
    ("method", "params", "name"),
    [
        pytest.param("set", [b"k" * 17, b"v"], "KEY_TOO_LARGE", id="set-key"),
        pytest.param("set", [b"k", b"v" * 33], "VALUE_TOO_LARGE", id="set-value"),
        pytest.param("append", [b"k", b"v" * 33], "VALUE_TOO_LARGE", id="append-suffix"),
        pytest.param("rename", [b"k", b"k" * 17], "KEY_TOO_LARGE", id="rename-dst"),
        pytest.param("commit", [[["put", b"k", b"v" * 33]]], "VALUE_TOO_LARGE", id="commit-put"),
        pytest.param("commit", [[["incr", b"k"]] * 10_001], "BATCH_TOO_LARGE", id="commit-many"),
        pytest.param("watch", [[b"k"] * 10_001], "BATCH_TOO_LARGE", id="watch-many"),
    ],
)
async def test_limits(
    setup: tuple[Dispatcher, ReadOnlyStore], method: str, params: list[Any], name: str
) -> None:
    d, _ = setup
    session = d.new_session()
    session.authenticated = True
    assert _error(d.call(session, method, params)) == name


async def test_a_connection_holds_at_most_64_watches(
    setup: tuple[Dispatcher, ReadOnlyStore],
) -> None:
    d, _ = setup
    session = d.new_session()
    session.authenticated = True
    for _ in range(64):
        outcome = d.call(session, "watch", [[b"k"]])
        outcome.fn(outcome.arg)  # type: ignore[union-attr]
    assert _error(d.call(session, "watch", [[b"k"]])) == "BATCH_TOO_LARGE"
    d.end_session(session)
    assert session.watches == {}
