"""The binary port's asyncio.Protocol with a mock transport (no sockets), as uvicorn tests its own.

A real store, writer and dispatcher sit behind it (a ServerState around a fake Host),
so what is checked is the glue: ordering, back-pressure (pause/resume), closing,
the refusal at the connection cap.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from time import perf_counter
from typing import Any

import msgpack
import pytest

import bitcask
from protocol import TOO_MANY_CONNECTIONS_LINE, Request
from server._dispatch import Dispatcher
from server._metrics import Metrics
from server._redis import RedisDispatcher
from server._state import ServerState
from server._writer import Writer
from server.binary import BinaryProtocol
from server.config import ServerConfig
from tests.server.wire import frame, request


class MockTransport:
    def __init__(self) -> None:
        self.buffer = bytearray()
        self.closed = False
        self.eof_written = False
        self.read_paused = False

    @property
    def done(self) -> bool:
        """The server sends nothing more: closed, or half-closed (a lingering close)."""
        return self.closed or self.eof_written

    def write(self, data: bytes) -> None:
        assert not self.done, "write after close"
        self.buffer += data

    def can_write_eof(self) -> bool:
        return True

    def write_eof(self) -> None:
        self.eof_written = True

    def close(self) -> None:
        self.closed = True

    def abort(self) -> None:
        self.closed = True

    def is_closing(self) -> bool:
        return self.closed

    def pause_reading(self) -> None:
        self.read_paused = True

    def resume_reading(self) -> None:
        self.read_paused = False

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        return default

    def frames(self) -> list[list[Any]]:
        out: list[list[Any]] = []
        data = bytes(self.buffer)
        while data:
            n = int.from_bytes(data[:4], "big")
            out.append(msgpack.unpackb(data[4 : 4 + n], raw=False))
            data = data[4 + n :]
        return out


class FakeHost:
    def __init__(self, cap: int = 10) -> None:
        self.draining = False
        self.writer_pressured = False
        self.cap = cap
        self.conns: set[Any] = set()

    def admit(self, conn: Any) -> bool:
        if len(self.conns) >= self.cap:
            return False
        self.conns.add(conn)
        return True

    def admit_probe(self, conn: Any) -> bool:
        return False

    def release(self, conn: Any) -> None:
        self.conns.discard(conn)

    def readonly_reason(self) -> str | None:
        return None

    def not_ready_reason(self) -> str | None:
        return None

    def key_count(self) -> int:
        return 0

    def uptime(self) -> float:
        return 0.0

    def stats(self) -> dict[str, Any]:
        return {}

    def render_metrics(self) -> str:
        return ""


Factory = Callable[..., tuple[BinaryProtocol, MockTransport]]


@pytest.fixture
async def setup(tmp_path: Path) -> AsyncIterator[tuple[Factory, Any, FakeHost]]:
    db = bitcask.open(tmp_path / "db", sync="never")
    metrics = Metrics()
    writer = Writer(db, mode="loop", metrics=metrics)
    host = FakeHost()

    def make(**fields: Any) -> tuple[BinaryProtocol, MockTransport]:
        cfg = ServerConfig(data=tmp_path / "db", port=0, http_port=0, **fields)
        dispatcher = Dispatcher(
            db,
            writer,
            cfg,
            max_key_size=db.options.max_key_size,
            max_value_size=db.options.max_value_size,
            server_stats=dict,
        )
        redis = RedisDispatcher(
            db,
            writer,
            cfg,
            max_key_size=db.options.max_key_size,
            max_value_size=db.options.max_value_size,
            info=dict,
        )
        state = ServerState(
            config=cfg,
            store=db,
            metrics=metrics,
            writer=writer,
            dispatcher=dispatcher,
            loop=asyncio.get_running_loop(),
            http_port=7380,
            host=host,
            redis=lambda: redis,
        )
        proto = BinaryProtocol(state)
        transport = MockTransport()
        proto.connection_made(transport)  # type: ignore[arg-type]
        return proto, transport

    yield make, db, host
    await asyncio.wait_for(writer.wait_idle(), 5)
    db.close()


async def settle(db: Any = None) -> None:
    for _ in range(5):  # the writer's group ("loop" mode) and the flush after it
        await asyncio.sleep(0)


async def test_replies_in_request_order_with_read_your_writes(setup: Any) -> None:
    make, db, _ = setup
    proto, transport = make()
    proto.data_received(
        request(1, "put", [b"k", b"1"])
        + request(2, "get", [b"k"])
        + request(3, "put", [b"k", b"2"])
        + request(4, "get", [b"k"])
    )
    await settle(db)
    assert transport.frames() == [
        [1, 1, None, True],
        [1, 2, None, b"1"],
        [1, 3, None, True],
        [1, 4, None, b"2"],
    ]


async def test_reading_pauses_above_max_inflight_and_resumes(setup: Any) -> None:
    make, db, _ = setup
    proto, transport = make(max_inflight=2)
    proto.data_received(b"".join(request(i, "put", [b"p%d" % i, b"v"]) for i in range(1, 7)))
    assert transport.read_paused, "a backlog pauses reading"
    for _ in range(20):
        await settle(db)
    assert [f[1] for f in transport.frames()] == [1, 2, 3, 4, 5, 6]
    assert not transport.read_paused
    assert proto.busy == 0


async def test_transport_write_buffer_pauses_reading(setup: Any) -> None:
    make, _, _ = setup
    proto, transport = make()
    proto.pause_writing()
    assert transport.read_paused
    proto.resume_writing()
    assert not transport.read_paused


async def test_fatal_frame_answers_what_came_before_then_closes(setup: Any) -> None:
    make, db, _ = setup
    proto, transport = make()
    proto.data_received(
        request(1, "put", [b"before", b"v"])
        + frame([0, 7, "ping", {}])
        + request(8, "put", [b"after", b"v"])
    )
    await settle(db)
    replies = transport.frames()
    assert replies[0] == [1, 1, None, True]
    assert replies[1][:2] == [1, 7] and replies[1][2][1] == "PROTOCOL_ERROR"
    assert len(replies) == 2
    assert transport.done
    proto.data_received(request(9, "put", [b"later", b"v"]))  # ignored: the stream is over
    await settle(db)
    assert db.get(b"after") is None and db.get(b"later") is None


async def test_text_quit_closes_and_runs_nothing_after(setup: Any) -> None:
    # text is the Redis protocol (inline commands here): QUIT is terminal
    make, db, _ = setup
    proto, transport = make()
    proto.data_received(b"SET k1 v\r\nPING\r\nQUIT\r\nSET k2 v\r\n")
    await settle(db)
    assert bytes(transport.buffer) == b"+OK\r\n+PONG\r\n+OK\r\n"
    assert transport.done
    assert db.get(b"k1") == b"v" and db.get(b"k2") is None


async def test_an_unbalanced_quote_answers_then_closes(setup: Any) -> None:
    make, db, _ = setup
    proto, transport = make()
    proto.data_received(b'SET k1 v\r\nSET k2 "v\r\nSET k3 v\r\n')
    await settle(db)
    assert bytes(transport.buffer) == (
        b"+OK\r\n-ERR Protocol error: unbalanced quotes in request\r\n"
    )
    assert transport.done
    assert db.get(b"k1") == b"v" and db.get(b"k2") is None and db.get(b"k3") is None


async def test_refused_at_once_at_the_cap(setup: Any) -> None:
    make, _, host = setup
    host.cap = 0
    proto, transport = make()
    assert bytes(transport.buffer) == TOO_MANY_CONNECTIONS_LINE
    assert transport.done  # closed, or half-closed while it lingers (then input is dropped)
    proto.data_received(request(1, "ping"))
    assert bytes(transport.buffer) == TOO_MANY_CONNECTIONS_LINE
    slots = proto._state.lingers  # the server's count of lingering refusals
    assert slots.count == (0 if transport.closed else 1)
    proto.connection_lost(None)  # gives the lingering refusal's place back
    assert slots.count == 0


async def test_connection_lost_releases_and_drops_output(setup: Any) -> None:
    make, db, host = setup
    proto, transport = make()
    assert proto in host.conns
    proto.data_received(request(1, "put", [b"gone", b"v"]))
    proto.connection_lost(None)
    await settle(db)
    assert proto not in host.conns
    assert db.get(b"gone") == b"v"  # a write already submitted still completes
    assert transport.buffer == b""  # but its reply goes nowhere


async def test_half_close_still_gets_its_replies(setup: Any) -> None:
    make, db, _ = setup
    proto, transport = make()
    proto.data_received(request(1, "put", [b"half", b"v"]))
    assert proto.eof_received() is True  # keep the transport open for the replies
    await settle(db)
    assert transport.frames() == [[1, 1, None, True]]
    assert transport.closed, "the peer half-closed already: nothing to linger for"


async def test_a_fatal_error_lingers_then_closes(
    setup: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Closing with the rest of a cut-off request unread would make the kernel send a
    # reset, which can destroy the error reply: half-close, discard, then close.
    monkeypatch.setattr("server._flow.LINGER_SECONDS", 0.05)
    make, db, _ = setup
    proto, transport = make()
    proto.data_received(b'SET k1 v\r\nSET k2 "v\r\n')
    await settle(db)
    assert transport.eof_written and not transport.closed and not transport.read_paused
    proto.data_received(b"SET k3 v\r\n" * 1000)  # still arriving: read and dropped
    await asyncio.sleep(0.2)
    assert transport.closed
    assert bytes(transport.buffer).endswith(b"unbalanced quotes in request\r\n")
    assert db.get(b"k1") == b"v" and db.get(b"k3") is None
    proto.connection_lost(None)


async def test_writer_pressure_holds_events_until_released(setup: Any) -> None:
    make, db, host = setup
    proto, transport = make()
    host.writer_pressured = True
    proto.pause_for_writer(True)  # no write of its own in flight: not paused
    assert not transport.read_paused
    # its first write goes to the writer; what follows it waits in the backlog
    proto.data_received(
        request(1, "put", [b"first", b"v"])
        + request(2, "put", [b"held", b"v"])
        + request(3, "get", [b"held"])
    )
    assert transport.buffer == b"" and transport.read_paused
    assert proto.busy == 3
    # another connection with nothing in flight is answered meanwhile (a health check)
    probe, probe_transport = make()
    probe.data_received(request(9, "ping", []))
    assert probe_transport.frames() == [[1, 9, None, "PONG"]]
    host.writer_pressured = False
    proto.pause_for_writer(False)
    for _ in range(4):
        await settle()
    assert transport.frames() == [[1, 1, None, True], [1, 2, None, True], [1, 3, None, b"v"]]
    assert not transport.read_paused
    assert db.get(b"held") == b"v"


async def test_read_fast_path_and_queued_reads_answer_identically(setup: Any) -> None:
    # Pipeline.feed answers a read with nothing pending on the spot (its fast path);
    # behind a write in flight the same read takes a slot and waits its turn. Same
    # requests, same answers (hits, misses, an oversized key, a huge value, errors
    # from the store), and every one is counted in the metrics either way.
    make, db, _ = setup
    db.put(b"hit", b"v" * 100)
    db.put(b"big", b"b" * (1 << 16))
    reads = [
        ("get", [b"hit"]),
        ("get", [b"miss"]),
        ("get", [b"k" * (db.options.max_key_size + 1)]),
        ("exists", [b"hit"]),
        ("get", [b"big"]),
        ("mget", [[b"hit", b"miss"]]),
        ("get", ["not bytes"]),
        ("ttl", [b"hit"]),
    ]
    frames = b"".join(request(i + 1, m, p) for i, (m, p) in enumerate(reads))

    fast, t_fast = make()
    fast.data_received(frames)
    await settle()
    queued, t_queued = make()
    queued.data_received(request(100, "put", [b"other", b"x"]) + frames)
    await settle()

    got_fast = t_fast.frames()
    got_queued = t_queued.frames()
    assert got_queued[0] == [1, 100, None, True]
    assert got_fast == got_queued[1:]
    assert len(got_fast) == len(reads)
    assert [f[1] for f in got_fast] == list(range(1, len(reads) + 1))
    counted = fast._state.metrics.requests
    assert counted == {"get": 2 * 5, "exists": 2, "mget": 2, "ttl": 2, "put": 1}


async def test_write_fast_path_and_general_path_answer_identically(setup: Any) -> None:
    # Pipeline.feed hands a write with nothing waiting straight to the writer (its
    # fast path); Pipeline.request takes the general path (_place -> _start). Same
    # requests on fresh keys, same answers (successes, validation errors answered at
    # once, an op's own error from the engine), and every one counted either way.
    make, db, _ = setup
    too_long = b"k" * (db.options.max_key_size + 1)

    def writes(prefix: bytes) -> list[tuple[str, list[Any]]]:
        return [
            ("put", [prefix + b"a", b"1"]),
            ("put", [prefix + b"b", b"v", {"ttl": 100}]),
            ("put", [too_long, b"v"]),
            ("put", [prefix + b"a"]),  # INVALID_PARAMS: a value is missing
            ("incr", [prefix + b"a", 2]),
            ("incr", [prefix + b"b"]),  # NOT_A_NUMBER: the op's own error
            ("append", [prefix + b"a", b"0"]),
            ("delete", [prefix + b"a"]),
            ("delete", [prefix + b"a"]),
            ("mput", [[[prefix + b"c", b"1"], [prefix + b"d", b"2"]]]),
            ("get_delete", [prefix + b"c"]),
        ]

    fast, t_fast = make()
    fast.data_received(b"".join(request(i + 1, m, p) for i, (m, p) in enumerate(writes(b"fast:"))))
    await settle()

    general, t_general = make()
    general.data_received(request(100, "ping", []))  # the dialect, hence its render
    pipeline = general._pipeline
    assert pipeline is not None
    for i, (method, params) in enumerate(writes(b"general:")):
        req = Request(i + 1, method, params)
        pipeline.request(method, params, general._conn.render, req, perf_counter())
    pipeline.flush()
    await settle()

    got_fast = t_fast.frames()
    got_general = t_general.frames()
    assert got_general[0] == [1, 100, None, "PONG"]
    assert got_fast == got_general[1:]
    assert [f[1] for f in got_fast] == list(range(1, 12))
    assert [f[2][1] if f[2] else None for f in got_fast] == [
        None, None, "KEY_TOO_LARGE", "INVALID_PARAMS", None, "NOT_A_NUMBER",
        None, None, None, None, None,
    ]  # fmt: skip
    counted = fast._state.metrics.requests
    assert counted["put"] == 2 * 4 and counted["incr"] == 2 * 2 and counted["delete"] == 2 * 2
