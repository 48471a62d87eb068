"""Redis glob matching (KEYS, SCAN MATCH): a port of stringmatchlen as oracle, and Redis itself."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from protocol._glob import compile_glob, stringmatch
from tests.protocol._redis_server import RedisConnection, redis_server


def redis_stringmatchlen(p: bytes, s: bytes) -> bool:
    """A line-by-line port of Redis 7's recursive stringmatchlen_impl (nocase=0)."""
    skip = [False]

    def signed(b: int) -> int:
        return b - 256 if b >= 128 else b

    def impl(p: bytes, s: bytes, nesting: int) -> bool:
        if nesting > 1000:
            return False
        pz = p + b"\x00\x00\x00"  # the C string's terminator (reads past it see NUL)
        pi, plen, si, slen = 0, len(p), 0, len(s)
        while plen and slen:
            c = pz[pi]
            if c == 0x2A:
                while plen and pz[pi + 1] == 0x2A:
                    pi += 1
                    plen -= 1
                if plen == 1:
                    return True
                while slen:
                    if impl(p[pi + 1 : pi + plen], s[si:], nesting + 1):
                        return True
                    if skip[0]:
                        return False
                    si += 1
                    slen -= 1
                skip[0] = True
                return False
            if c == 0x3F:
                si += 1
                slen -= 1
            elif c == 0x5B:
                pi += 1
                plen -= 1
                neg = pz[pi] == 0x5E
                if neg:
                    pi += 1
                    plen -= 1
                match = False
                while True:
                    if pz[pi] == 0x5C and plen >= 2:
                        pi += 1
                        plen -= 1
                        if pz[pi] == s[si]:
                            match = True
                    elif pz[pi] == 0x5D and plen > 0:
                        break
                    elif plen == 0:
                        pi -= 1
                        plen += 1
                        break
                    elif plen >= 3 and pz[pi + 1] == 0x2D:
                        lo, hi = signed(pz[pi]), signed(pz[pi + 2])
                        if lo > hi:
                            lo, hi = hi, lo
                        pi += 2
                        plen -= 2
                        if lo <= signed(s[si]) <= hi:
                            match = True
                    elif pz[pi] == s[si]:
                        match = True
                    pi += 1
                    plen -= 1
                if neg:
                    match = not match
                if not match:
                    return False
                si += 1
                slen -= 1
            else:
                if c == 0x5C and plen >= 2:
                    pi += 1
                    plen -= 1
                if pz[pi] != s[si]:
                    return False
                si += 1
                slen -= 1
            pi += 1
            plen -= 1
            if slen == 0:
                while plen and pz[pi] == 0x2A:
                    pi += 1
                    plen -= 1
                break
        return plen == 0 and slen == 0

    return impl(p, s, 0)


CASES = [
    (b"*", b"anything", True),
    (b"*", b"", False),
    (b"", b"", True),
    (b"h?llo", b"hello", True),
    (b"h?llo", b"hllo", False),
    (b"h*llo", b"heeeello", True),
    (b"h[ae]llo", b"hallo", True),
    (b"h[ae]llo", b"hillo", False),
    (b"h[^e]llo", b"hallo", True),
    (b"h[^e]llo", b"hello", False),
    (b"h[a-b]llo", b"hbllo", True),
    (b"h[b-a]llo", b"hbllo", True),
    (b"h\\*llo", b"h*llo", True),
    (b"h\\*llo", b"hello", False),
    (b"[a-]", b"_", True),  # the range is a..] (ends swapped)
    (b"[a-]", b"b", False),
    (b"[abc", b"c", True),
    (b"[", b"[", False),
    (b"[^", b"x", True),
    (b"a\\", b"a\\", True),
    (b"[\\]]", b"]", True),
    (b"[a-\xff]", b"\x10", True),
    (b"[a-\xff]", b"b", False),
    (b"*a*b*c", b"xaybzc", True),
    (b"a**", b"a", True),
    (b"*?", b"", False),
]


@pytest.mark.parametrize(("pattern", "key", "expected"), CASES)
def test_cases(pattern: bytes, key: bytes, expected: bool) -> None:
    assert stringmatch(pattern, key) is expected
    assert redis_stringmatchlen(pattern, key) is expected


def test_compile_glob_lone_star_matches_every_key() -> None:
    assert compile_glob(b"*")(b"") is True
    assert compile_glob(b"**")(b"") is False
    assert compile_glob(b"k*")(b"key") is True


def test_no_exponential_backtracking() -> None:
    pattern = b"a*" * 30 + b"b"
    assert stringmatch(pattern, b"a" * 5000) is False


def _lines_run(fn: Any, *args: Any) -> int:
    """How many lines of protocol/_glob.py `fn(*args)` executes (a deterministic cost)."""
    import sys

    count = 0

    def tracer(frame: Any, event: str, arg: Any) -> Any:
        nonlocal count
        if not frame.f_code.co_filename.endswith("_glob.py"):
            return None
        if event == "line":
            count += 1
        return tracer

    sys.settrace(tracer)
    try:
        fn(*args)
    finally:
        sys.settrace(None)
    return count


@pytest.mark.parametrize(
    "pattern",
    [b"[" + b"a" * 6000, b"[a]" * 2000, b"[^" + b"a-" * 3000 + b"]", b"[\x80-\x7f]" * 1200],
    ids=["one-long-class", "many-classes", "negated-ranges", "wrapping-ranges"],
)
def test_compiling_a_pattern_is_linear(pattern: bytes) -> None:
    # Each class used to be re-read for each of the 256 byte values: KEYS or SCAN
    # MATCH with a 50 KB pattern of classes kept the server busy ~4 s before looking
    # at a single key (Redis reads a class only when it matches a key against it).
    assert _lines_run(compile_glob, pattern) <= 20 * len(pattern)
    assert compile_glob(pattern)(b"a") == redis_stringmatchlen(pattern, b"a")


@pytest.mark.parametrize(
    ("pattern", "key"),
    [
        (b"*" + b"a" * 3000 + b"b", b"a" * 6000),
        (b"*" + b"a?" * 1500 + b"b*", b"a" * 6000),
        (b"*" + b"[a]" * 1000 + b"b*", b"a" * 6000),
        (b"x*" + b"a" * 3000 + b"*b", b"x" + b"a" * 6000),
    ],
    ids=["literal-end", "any-middle", "class-middle", "literal-middle"],
)
def test_matching_runs_between_stars_at_c_speed(pattern: bytes, key: bytes) -> None:
    # Token by token in Python the first case cost ~18 million steps (1.1 s; with
    # 30,000 bytes, minutes: Redis's C takes ~4 s); the runs between stars are now
    # found by bytes.find and re, so few lines of _glob.py run per candidate.
    match = compile_glob(pattern)
    assert match(key) is False  # the key has no `b`
    assert _lines_run(match, key) <= 30 * len(key)


def test_star_nesting_limit_as_redis() -> None:
    # 1001 stars separated by literals: Redis gives up at the 1001st unless it ends the pattern
    deep = b"a*" * 1001 + b"b"
    assert stringmatch(deep, b"a" * 1001 + b"b") is False
    assert stringmatch(b"a*" * 1001, b"a" * 1001 + b"b") is True
    assert stringmatch(b"a*" * 1000 + b"b", b"a" * 1000 + b"b") is True


ALPHABET = [b"a", b"b", b"c", b"*", b"?", b"[", b"]", b"^", b"-", b"\\", b"\xe9"]
patterns = st.lists(st.sampled_from(ALPHABET), max_size=10).map(b"".join)
keys = st.lists(st.sampled_from([b"a", b"b", b"c", b"-", b"]", b"\xe9", b"\x00"]), max_size=8).map(
    b"".join
)


@settings(max_examples=1000, deadline=None)
@given(pattern=patterns, key=keys)
def test_matches_port_of_redis(pattern: bytes, key: bytes) -> None:
    assert stringmatch(pattern, key) == redis_stringmatchlen(pattern, key)


# -- against a real redis-server: KEYS on a small keyset ---------------------------------

KEYSET = [
    b"a", b"b", b"ab", b"ba", b"abc", b"a-c", b"a]c", b"a*c", b"a?c", b"a\\c", b"[a]",
    b"^a", b"\xe9t\xe9", b"ca", b"aaa", b"", b"cab", b"a\x00b",
]  # fmt: skip


@pytest.fixture(scope="module")
def redis_keys(tmp_path_factory: pytest.TempPathFactory) -> Any:
    with redis_server(Path(tmp_path_factory.mktemp("redis"))) as port:
        conn = RedisConnection(port)
        for key in KEYSET:
            assert conn.call([b"SET", key, b"1"]) == b"+OK\r\n"
        yield conn
        conn.close()


def keys_reply(conn: RedisConnection, pattern: bytes) -> set[bytes]:
    raw = conn.call([b"KEYS", pattern])
    head, _, rest = raw.partition(b"\r\n")
    out: set[bytes] = set()
    for _ in range(int(head[1:])):
        size_line, _, rest = rest.partition(b"\r\n")
        size = int(size_line[1:])
        out.add(rest[:size])
        rest = rest[size + 2 :]
    return out


@pytest.mark.parametrize("pattern", [c[0] for c in CASES] + [b"*a*", b"a[^-]c", b"?"])
def test_keys_against_redis(redis_keys: RedisConnection, pattern: bytes) -> None:
    match = compile_glob(pattern)
    assert {k for k in KEYSET if match(k)} == keys_reply(redis_keys, pattern)


@settings(
    max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(pattern=patterns)
def test_random_patterns_against_redis_keys(redis_keys: RedisConnection, pattern: bytes) -> None:
    match = compile_glob(pattern)
    assert {k for k in KEYSET if match(k)} == keys_reply(redis_keys, pattern)
