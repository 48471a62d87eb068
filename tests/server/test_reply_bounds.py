"""One reply bound for every reply that carries many values or keys, both dialects.

A real server with --max-reply-bytes 3000000 (the binary port's bound is the smaller
of it and --max-frame). The binary `mget` was bounded by count alone: one 1 MiB key
named 300 times read 300 MiB before the frame limit refused the reply (1,000 names
of a 64 MiB value: 64 GB, the server killed by the OOM killer). It is now sized from
the keydir first (server/_reply_bounds.values_over, MGET's rule) and refused with
FRAME_TOO_LARGE before any value is read. KEYS, SCAN with a large COUNT and EXEC's
combined reply are bounded by the same rule, and a binary scan page ends early at
it; other clients, a writer and a reader, are served throughout.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator

import pytest

from tests.server.wire import Conn, Inline, ReplyError
from tests.serverproc import ServerProcess

LIMIT = 3_000_000
MIB = 1 << 20


def _cmd(*args: bytes) -> bytes:
    return b"*%d\r\n" % len(args) + b"".join(b"$%d\r\n%s\r\n" % (len(a), a) for a in args)


@pytest.fixture(scope="module")
def srv(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    data = tmp_path_factory.mktemp("reply-bounds") / "data"
    proc = ServerProcess(data=data, sync="never", extra=["--max-reply-bytes", str(LIMIT)])
    proc.start()
    with Conn(proc.port) as c:
        c.call("put", b"big", b"x" * MIB)
        c.call("mput", [[b"k%04d" % i + b"." * 2000, b"v"] for i in range(2000)])
    yield proc
    proc.kill()


class _Neighbours:
    """A writer and a reader on their own connections while the test runs."""

    def __init__(self, port: int) -> None:
        self.port = port
        self.stop = threading.Event()
        self.errors: list[str] = []
        self.rounds = 0
        self.thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        with Conn(self.port) as w, Conn(self.port) as r:
            i = 0
            while not self.stop.is_set() and i < 5000:
                value = b"n%d" % i
                w.call("put", b"neighbour", value)
                got = r.call("get", b"neighbour")
                if got != value:
                    self.errors.append(f"round {i}: {got!r} != {value!r}")
                i += 1
            self.rounds = i

    def __enter__(self) -> _Neighbours:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop.set()
        self.thread.join(30)
        assert not self.thread.is_alive()
        assert not self.errors, self.errors[:3]
        assert self.rounds > 0


def test_binary_mget_is_sized_before_any_value_is_read(srv: ServerProcess) -> None:
    with _Neighbours(srv.port), Conn(srv.port, timeout=30) as c:
        base = srv.peak_rss_bytes()
        err = c.error("mget", [b"big"] * 300)
        assert err.name == "FRAME_TOO_LARGE"
        assert err.message.startswith(
            f"reply of {300 * MIB} bytes of values exceeds max-reply-bytes {LIMIT} "
        ), err.message
        assert srv.peak_rss_bytes() - base < 64 * MIB  # it read 300 MiB
        assert c.call("mget", [b"big", b"big", b"nope"]) == [b"x" * MIB] * 2 + [None]
        assert c.call("get", b"big") == b"x" * MIB  # one key: max_value_size alone


def test_binary_scan_page_of_large_keys_ends_early(srv: ServerProcess) -> None:
    # 2,000 keys of 2,005 bytes: a page of count 2000 would be 4 MB of keys, over the
    # bound; it ends early with a cursor (as SCAN's COUNT is a hint), never an error
    with Conn(srv.port, timeout=30) as c:
        seen: list[bytes] = []
        cursor = None
        for _ in range(10):
            cursor, keys = c.call("scan", {"prefix": b"k", "count": 2000, "cursor": cursor})
            assert 0 < len(keys) < 2000 and sum(map(len, keys)) + 5 * len(keys) <= LIMIT
            seen += keys
            if cursor is None:
                break
            assert cursor == keys[-1]
        assert seen == [b"k%04d" % i + b"." * 2000 for i in range(2000)]
        cursor, keys = c.call("scan", {"prefix": b"k", "count": 100})
        assert len(keys) == 100 and cursor == keys[-1]


def test_resp_keys_and_scan_are_bounded(srv: ServerProcess) -> None:
    with _Neighbours(srv.port), Inline(srv.port, timeout=30) as r:
        r.send(_cmd(b"KEYS", b"k*"))
        err = r.reply()
        assert isinstance(err, ReplyError)
        assert err.startswith("ERR reply of 4010000 bytes of keys exceeds max-reply-bytes"), err
        r.send(_cmd(b"SCAN", b"0", b"MATCH", b"k*", b"COUNT", b"5000"))
        err = r.reply()
        assert isinstance(err, ReplyError) and "bytes of keys" in err
        r.send(_cmd(b"SCAN", b"0", b"COUNT", b"10"))
        cursor, keys = r.reply()
        assert len(keys) == 10 and cursor != b"0"
        r.send(_cmd(b"KEYS", b"big"))
        assert r.reply() == [b"big"]


def test_exec_is_refused_whole_when_its_values_together_are_over(srv: ServerProcess) -> None:
    with Inline(srv.port, timeout=30) as r:
        # four GETs of 1 MiB: each alone is fine, together over the bound; nothing runs
        r.send(_cmd(b"MULTI") + _cmd(b"SET", b"tx", b"1") + _cmd(b"GET", b"big") * 4)
        assert r.reply() == "OK"
        for _ in range(5):
            assert r.reply() == "QUEUED"
        r.send(_cmd(b"EXEC"))
        err = r.reply()
        assert isinstance(err, ReplyError)
        assert err.startswith(f"ERR reply of {4 * MIB} bytes of values exceeds"), err
        r.send(_cmd(b"EXISTS", b"tx"))
        assert r.reply() == 0  # the transaction's write did not happen either
        # values the transaction itself writes count too: the MGET answers its error in
        # its place (MGET's own rule), the SET before it stands
        r.send(
            _cmd(b"MULTI")
            + _cmd(b"SET", b"grown", b"y" * MIB)
            + _cmd(b"MGET", b"grown", b"grown", b"grown")
            + _cmd(b"EXEC")
        )
        assert [r.reply() for _ in range(3)] == ["OK", "QUEUED", "QUEUED"]
        ok, err = r.reply()
        assert ok == "OK"
        assert isinstance(err, ReplyError) and err.startswith(f"ERR reply of {3 * MIB} bytes")
        r.send(_cmd(b"MULTI") + _cmd(b"GET", b"big") * 2 + _cmd(b"EXEC"))
        assert [r.reply() for _ in range(3)] == ["OK", "QUEUED", "QUEUED"]
        assert r.reply() == [b"x" * MIB] * 2
