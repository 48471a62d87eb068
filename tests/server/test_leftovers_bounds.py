"""The reply bound before anything applies: a binary commit, and an EXEC's reads.

A real server with --max-reply-bytes 3000000. A binary `commit` whose old values
(`set` reads one, returned with `get`; `get_delete`) outgrew the reply frame was
refused with FRAME_TOO_LARGE after it had applied (two 40 MiB values: the client saw
an error for writes that stood), and its `set nx` ops were not bounded at all (300 of
them on a 1 MiB key held 300 MiB in the writer's results). It is now sized before
anything applies, by the rule the EXEC uses (server/_reply_bounds.batch_values and
sizes_over). Inside EXEC, KEYS and SCAN were bounded one by one but not together (five
KEYS of 2 MB each under a 3 MB bound answered 10 MB), and a lone GET of a value larger
than the bound refused the whole EXEC although GET alone answers it.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.server.wire import Conn, Inline, ReplyError
from tests.serverproc import ServerProcess

LIMIT = 3_000_000
MIB = 1 << 20
TOO_LARGE = "FRAME_TOO_LARGE"


@pytest.fixture(scope="module")
def srv(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    data = tmp_path_factory.mktemp("leftover-bounds") / "data"
    proc = ServerProcess(data=data, sync="never", extra=["--max-reply-bytes", str(LIMIT)])
    proc.start()
    with Conn(proc.port) as c:
        c.call("mput", [[b"w%04d" % i + b"." * 2000, b"v"] for i in range(1000)])  # 2 MB
    yield proc
    proc.kill()


def test_commit_of_old_values_over_the_bound_applies_nothing(srv: ServerProcess) -> None:
    with Conn(srv.port, timeout=30) as c:
        c.call("mput", [[b"a", b"x" * 2 * MIB], [b"b", b"y" * 2 * MIB]])
        ops = [["get_delete", b"a"], ["set", b"b", b"new", {"get": True}], ["put", b"c", b"1"]]
        err = c.error("commit", ops)
        assert err.name == TOO_LARGE
        assert err.message.startswith(f"reply of {4 * MIB} bytes of values exceeds")
        assert c.call("get", b"a") == b"x" * 2 * MIB  # nothing applied
        assert c.call("get", b"b") == b"y" * 2 * MIB
        assert c.call("exists", b"c") is False
        assert c.call("ping") == "PONG"  # the connection stays open


def test_commit_counts_what_its_own_earlier_ops_put(srv: ServerProcess) -> None:
    with Conn(srv.port, timeout=30) as c:
        big = b"z" * 2 * MIB
        ops = [["put", b"p", big], ["get_delete", b"p"], ["set", b"q", big], ["get_delete", b"q"]]
        assert c.error("commit", ops).name == TOO_LARGE
        assert c.call("exists", b"p") is False
        assert c.call("exists", b"q") is False


def test_commit_of_set_nx_reads_are_bounded(srv: ServerProcess) -> None:
    with Conn(srv.port, timeout=30) as c:
        c.call("put", b"held", b"h" * MIB)
        base = srv.peak_rss_bytes()
        err = c.error("commit", [["set", b"held", b"n", {"nx": True}]] * 300)
        assert err.name == TOO_LARGE
        assert srv.peak_rss_bytes() - base < 100 * MIB  # was +300 MiB
        assert c.call("get", b"held") == b"h" * MIB


def test_commit_within_the_bound_and_one_large_value_alone_apply(srv: ServerProcess) -> None:
    with Conn(srv.port, timeout=30) as c:
        c.call("mput", [[b"s1", b"1" * MIB], [b"s2", b"2" * MIB], [b"huge", b"h" * 4 * MIB]])
        got = c.call("commit", [["get_delete", b"s1"], ["set", b"s2", b"n", {"get": True}]])
        assert got == [b"1" * MIB, b"2" * MIB]
        # one value alone is bounded by max_value_size, as a get (and a GET in EXEC)
        got = c.call("commit", [["get_delete", b"huge"], ["put", b"after", b"1"]])
        assert got == [b"h" * 4 * MIB, True]


def test_a_watched_commit_refused_by_the_bound_keeps_its_watch(srv: ServerProcess) -> None:
    with Conn(srv.port, timeout=30) as c:
        c.call("mput", [[b"wa", b"x" * 2 * MIB], [b"wb", b"y" * 2 * MIB]])
        wid = c.call("watch", [b"wa"])
        ops = [["get_delete", b"wa"], ["get_delete", b"wb"]]
        assert c.error("commit", ops, {"watch": wid}).name == TOO_LARGE
        # refused before it ran, as a malformed op: the watch is still the connection's
        assert c.call("commit", [["get_delete", b"wa"]], {"watch": wid}) == [b"x" * 2 * MIB]


def _cmd(*args: bytes) -> bytes:
    return b"*%d\r\n" % len(args) + b"".join(b"$%d\r\n%s\r\n" % (len(a), a) for a in args)


def test_exec_sums_its_walks_under_the_bound(srv: ServerProcess) -> None:
    with Inline(srv.port, timeout=30) as r:
        assert len(r.cmd(b"KEYS w0*")) == 1000  # 2 MB of keys: under the bound alone
        r.cmd(b"MULTI")
        r.cmd(b"KEYS w0*")
        r.cmd(b"SET walked 1")
        r.cmd(b"KEYS w0*")
        r.cmd(b"SCAN 0 MATCH w0* COUNT 100000")
        reply = r.cmd(b"EXEC")
        assert len(reply) == 4
        assert len(reply[0]) == 1000
        assert reply[1] == "OK"  # the write stands: KEYS is sized only by running it
        for refused in reply[2:]:
            assert isinstance(refused, ReplyError)
            assert "bytes of keys exceeds max-reply-bytes 3000000" in str(refused)
        assert r.cmd(b"GET walked") == b"1"
        # values and walks share the bound
        r.send(_cmd(b"SET", b"v2", b"v" * (2 * MIB)))
        assert r.reply() == "OK"
        r.cmd(b"MULTI")
        r.cmd(b"GET v2")
        r.cmd(b"KEYS w0*")
        reply = r.cmd(b"EXEC")
        assert reply[0] == b"v" * (2 * MIB)
        assert isinstance(reply[1], ReplyError)


def test_exec_of_one_value_over_the_bound_answers_it(srv: ServerProcess) -> None:
    with Inline(srv.port, timeout=30) as r:
        r.send(_cmd(b"SET", b"v5", b"f" * (5 * MIB)))
        assert r.reply() == "OK"
        assert r.cmd(b"GET v5") == b"f" * (5 * MIB)
        r.cmd(b"MULTI")
        r.cmd(b"GET v5")
        r.cmd(b"INCR counted")
        assert r.cmd(b"EXEC") == [b"f" * (5 * MIB), 1]  # was: the EXEC refused whole
        r.cmd(b"MULTI")
        r.cmd(b"GET v5")
        r.cmd(b"GET v5")
        r.cmd(b"INCR counted")
        assert isinstance(r.cmd(b"EXEC"), ReplyError)  # two: over it, nothing runs
        assert r.cmd(b"GET counted") == b"1"
