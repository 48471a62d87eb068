"""The TTL commands at their edges, byte for byte against a real redis-server.

Zero, negative and huge relative expiries, absolute ones in the past (the key goes
at once, the reply says it was set), the 64-bit overflow of seconds to ms, GETEX,
SET KEEPTTL, PERSIST, and the answers of TTL/PTTL/EXPIRETIME for keys with no
expiry or none at all. Each sequence starts from FLUSHALL on both servers; no
answer here depends on how long a reply takes (the TTLs read are 1000 s or more,
which TTL rounds to the same second on both). tests/server/test_redis_differential.py
covers the conditions (NX/XX/GT/LT) with Hypothesis; these are the clock's edges.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from tests.protocol._redis_server import exchange, redis_server
from tests.server.test_redis_differential import _encode
from tests.serverproc import ServerProcess

MAX = b"9223372036854775807"  # LLONG_MAX
MIN = b"-9223372036854775808"

EDGES: list[list[list[bytes]]] = [
    # zero and negative relative expiries delete the key (reply 1), never an error
    [[b"SET", b"a", b"1"], [b"EXPIRE", b"a", b"0"], [b"EXISTS", b"a"],
     [b"SET", b"a", b"1"], [b"PEXPIRE", b"a", b"-1"], [b"EXISTS", b"a"],
     [b"SET", b"a", b"1"], [b"EXPIRE", b"a", b"-100000"], [b"GET", b"a"],
     [b"EXPIRE", b"missing", b"0"], [b"PEXPIRE", b"missing", b"-1"]],
    # seconds whose ms overflow 64 bits are refused; the largest that fit are kept
    [[b"SET", b"a", b"1"], [b"EXPIRE", b"a", MAX], [b"EXPIRE", b"a", MIN],
     [b"EXPIRE", b"a", b"9223372036854775"], [b"EXPIRE", b"a", b"-9223372036854775"],
     [b"PEXPIRE", b"a", MAX], [b"PEXPIRE", b"a", MIN], [b"EXISTS", b"a"],
     [b"EXPIRE", b"a", b"9223372036854"], [b"TTL", b"a"], [b"EXPIRE", b"missing", MAX]],
    # absolute expiries: in the past (0, negative, 1) delete at once; the last ms fits
    [[b"SET", b"a", b"1"], [b"PEXPIREAT", b"a", b"0"], [b"EXISTS", b"a"],
     [b"SET", b"a", b"1"], [b"PEXPIREAT", b"a", b"-1"], [b"EXISTS", b"a"],
     [b"SET", b"a", b"1"], [b"EXPIREAT", b"a", b"1"], [b"EXISTS", b"a"],
     [b"SET", b"a", b"1"], [b"PEXPIREAT", b"a", MIN], [b"EXISTS", b"a"],
     [b"SET", b"b", b"1"], [b"PEXPIREAT", b"b", MAX], [b"PEXPIRETIME", b"b"],
     [b"EXPIRETIME", b"b"], [b"EXPIREAT", b"b", MAX], [b"EXPIREAT", b"b", b"9223372036854775"],
     [b"PEXPIRETIME", b"b"], [b"EXPIREAT", b"b", b"9223372036854776"], [b"PEXPIRETIME", b"b"]],
    # SET's expiries: zero and negative are errors (nothing written), the past is not
    [[b"SET", b"a", b"1", b"EX", b"0"], [b"SET", b"a", b"1", b"PX", b"-1"],
     [b"SET", b"a", b"1", b"EXAT", b"0"], [b"SET", b"a", b"1", b"EX", MAX],
     [b"SET", b"a", b"1", b"EX", b"9223372036854775"], [b"EXISTS", b"a"],
     [b"SET", b"a", b"1", b"PXAT", b"1"], [b"EXISTS", b"a"],
     [b"SET", b"a", b"1", b"EXAT", b"1", b"GET"], [b"SET", b"a", b"2", b"EXAT", b"1", b"GET"],
     [b"SET", b"a", b"3", b"PXAT", MAX], [b"PEXPIRETIME", b"a"],
     [b"SET", b"a", b"4", b"EXAT", b"9223372036854776"], [b"GET", b"a"]],
    # KEEPTTL keeps the expiry (or its absence); a plain SET drops it
    [[b"SET", b"a", b"1", b"EX", b"5000"], [b"SET", b"a", b"2", b"KEEPTTL"], [b"TTL", b"a"],
     [b"SET", b"a", b"3"], [b"TTL", b"a"], [b"SET", b"a", b"4", b"KEEPTTL"], [b"TTL", b"a"],
     [b"SET", b"n", b"1", b"KEEPTTL"], [b"TTL", b"n"],
     [b"SET", b"a", b"5", b"KEEPTTL", b"EX", b"10"], [b"SET", b"a", b"5", b"PX", b"10", b"KEEPTTL"],
     [b"SET", b"b", b"1", b"PXAT", b"4102444800123"],
     [b"SET", b"b", b"2", b"KEEPTTL", b"GET"], [b"PEXPIRETIME", b"b"]],
    # GETEX: PERSIST, past absolute times, zero and huge relative ones
    [[b"SET", b"a", b"1", b"EX", b"5000"], [b"GETEX", b"a", b"PERSIST"], [b"TTL", b"a"],
     [b"GETEX", b"a", b"PERSIST"], [b"GETEX", b"a", b"EX", b"0"], [b"GETEX", b"a", b"PX", b"-5"],
     [b"GETEX", b"a", b"EX", MAX], [b"GETEX", b"a", b"EXAT", b"0"], [b"TTL", b"a"],
     [b"GETEX", b"a", b"PXAT", b"1"], [b"EXISTS", b"a"], [b"GETEX", b"a", b"PXAT", b"1"],
     [b"SET", b"b", b"1"], [b"GETEX", b"b", b"EXAT", b"9223372036854775"],
     [b"PEXPIRETIME", b"b"], [b"GETEX", b"b", b"EX", b"5000"], [b"TTL", b"b"],
     [b"GETEX", b"missing", b"EX", b"0"], [b"GETEX", b"missing", b"PERSIST"]],
    # PERSIST and the queries on keys with no expiry and on missing keys
    [[b"PERSIST", b"missing"], [b"SET", b"a", b"1"], [b"PERSIST", b"a"],
     [b"EXPIRE", b"a", b"5000"], [b"PERSIST", b"a"], [b"PERSIST", b"a"], [b"TTL", b"a"],
     [b"PTTL", b"a"], [b"EXPIRETIME", b"a"], [b"PEXPIRETIME", b"a"], [b"TTL", b"missing"],
     [b"PTTL", b"missing"], [b"EXPIRETIME", b"missing"], [b"PEXPIRETIME", b"missing"]],
    # conditions meet a past expiry: GT/LT compare with "no expiry" as infinite
    [[b"SET", b"a", b"1"], [b"EXPIRE", b"a", b"-1", b"GT"], [b"EXISTS", b"a"],
     [b"EXPIRE", b"a", b"-1", b"LT"], [b"EXISTS", b"a"], [b"SET", b"a", b"1", b"EX", b"5000"],
     [b"PEXPIREAT", b"a", b"1", b"NX"], [b"PEXPIREAT", b"a", b"1", b"XX"], [b"EXISTS", b"a"]],
    # the same edges inside MULTI
    [[b"MULTI"], [b"SET", b"a", b"1", b"PXAT", b"1"], [b"EXISTS", b"a"],
     [b"SET", b"b", b"1"], [b"EXPIRE", b"b", MAX], [b"PEXPIREAT", b"b", b"0"],
     [b"EXISTS", b"b"], [b"SET", b"c", b"1", b"EX", b"0"], [b"EXEC"]],
]  # fmt: skip


@pytest.fixture
def pair(server_factory: Callable[..., ServerProcess], tmp_path: Path) -> Iterator[tuple[int, int]]:
    ours = server_factory(sync="never")
    with redis_server(tmp_path) as redis_port:
        yield ours.port, redis_port


@pytest.mark.parametrize("argvs", EDGES, ids=[f"edges-{i}" for i in range(len(EDGES))])
def test_ttl_edges_agree_with_redis(pair: tuple[int, int], argvs: list[list[bytes]]) -> None:
    ours, theirs = pair
    data = _encode(argvs)
    expected = exchange(theirs, data)
    got = exchange(ours, data)
    assert got.split(b"\r\n") == expected.split(b"\r\n"), argvs
