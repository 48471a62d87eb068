"""INCRBYFLOAT's stored text: one rule (bitcask._numbers.format_float), the engine's, since
the engine stores the value; the RESP dialect sends those bytes unchanged. Checked by
table and against a real redis-server."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from bitcask._numbers import format_float
from tests.protocol._redis_server import RedisConnection, redis_server


@pytest.mark.parametrize(
    ("value", "text"),
    [
        pytest.param(10.5 + 0.1, b"10.6", id="decimal-noise-cut"),
        pytest.param(1e-20, b"0", id="below-17-places"),
        pytest.param(-2.0, b"-2", id="integral"),
        pytest.param(-0.0, b"0", id="negative-zero"),
        pytest.param(5e-05, b"0.00005", id="no-exponent"),
        pytest.param(1e20, b"100000000000000000000", id="large"),
        # found by the differential test: INCRBY a 9223372036854775807, INCRBYFLOAT a 1.5
        pytest.param(2.0**63, b"9223372036854775808", id="integral-beyond-2**53-exact"),
        pytest.param(2.0**53 + 2, b"9007199254740994", id="first-exact"),
    ],
)
def test_stored_float_format(value: float, text: bytes) -> None:
    assert format_float(value) == text


def test_huge_values_stay_positional() -> None:
    out = format_float(1e300)
    assert out.startswith(b"1000") and b"e" not in out and len(out) == 301


@pytest.fixture(scope="module")
def redis(tmp_path_factory: pytest.TempPathFactory) -> Any:
    with redis_server(Path(tmp_path_factory.mktemp("redis"))) as port:
        conn = RedisConnection(port)
        yield conn
        conn.close()


@settings(
    max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(value=st.decimals(min_value=-(10**9), max_value=10**9, places=6, allow_nan=False))
def test_incrbyfloat_text_as_redis_writes_it(redis: RedisConnection, value: Any) -> None:
    assert redis.call([b"SET", b"f", b"0"]) == b"+OK\r\n"
    text = str(value).encode()
    reply = redis.call([b"INCRBYFLOAT", b"f", text])
    theirs = reply.split(b"\r\n")[1]
    ours = format_float(float(text))
    if abs(value) < 64:
        # a long double holds such a value to better than 5e-18: no noise in 17 places
        assert ours == theirs
    else:  # Redis's long double shows digits a double does not have
        assert math.isclose(float(ours), float(theirs), rel_tol=1e-12, abs_tol=1e-300)


@pytest.mark.parametrize(
    ("start", "delta"),
    [
        pytest.param(b"9223372036854775807", b"1.5", id="int64-max"),
        pytest.param(b"-9223372036854775808", b"-0.5", id="int64-min"),
        pytest.param(b"9007199254740992", b"2", id="2**53"),
    ],
)
def test_integral_results_beyond_2_53_as_redis_writes_them(
    redis: RedisConnection, start: bytes, delta: bytes
) -> None:
    assert redis.call([b"SET", b"f", start]) == b"+OK\r\n"
    theirs = redis.call([b"INCRBYFLOAT", b"f", delta]).split(b"\r\n")[1]
    assert format_float(float(start) + float(delta)) == theirs
