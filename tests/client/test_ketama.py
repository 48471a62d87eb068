"""client._ketama: known vectors of twemproxy's placement (no processes).

The vectors were checked against nutcracker 0.5.0 on x86-64 by tests/sharding/
(every key of 10,000 found on the backend this ring names); here they pin the
arithmetic so a refactor cannot drift from it without a real proxy at hand.
"""

from __future__ import annotations

import hashlib
import struct

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from client import CrossShardError, InterfaceError
from client._ketama import (
    Ring,
    fnv1a_64,
    hash_tag_key,
    points_per_server,
    read_nutcracker_config,
)

THREE = [("shard-a", 1), ("shard-b", 1), ("shard-c", 1)]


@pytest.mark.parametrize(
    ("key", "signed", "unsigned"),
    [
        pytest.param(b"", 0x84222325, 0x84222325, id="empty-is-the-basis"),
        pytest.param(b"a", 0x8601EC8C, 0x8601EC8C, id="a"),
        pytest.param(b"foobar", 0xF73967E8, 0xF73967E8, id="foobar"),
        pytest.param(b"key:1", 0x962F5AC9, 0x962F5AC9, id="key:1"),
        pytest.param(b"\xff", 0x79FE466E, 0x8602EB6E, id="0xff-sign-extended"),
        pytest.param(b"\x80abc", 0x90926171, 0x16629871, id="0x80-sign-extended"),
    ],
)
def test_fnv1a_64_vectors(key: bytes, signed: int, unsigned: int) -> None:
    assert fnv1a_64(key) == signed
    assert fnv1a_64(key, signed_char=False) == unsigned


def test_fnv1a_64_is_32_bit_fnv1a_with_the_truncated_64_bit_constants() -> None:
    # the definition, written out independently of the module's table
    h = 0xCBF29CE484222325 & 0xFFFFFFFF
    for b in b"user:1000":
        h = ((h ^ b) * (0x100000001B3 & 0xFFFFFFFF)) % 2**32
    assert fnv1a_64(b"user:1000") == h


@pytest.mark.parametrize(
    ("key", "hashed"),
    [
        pytest.param(b"user:{42}:name", b"42", id="tag"),
        pytest.param(b"{a}{b}", b"a", id="first-tag"),
        pytest.param(b"{}abc", b"{}abc", id="empty-tag-hashes-all"),
        pytest.param(b"x{open", b"x{open", id="unclosed"),
        pytest.param(b"x}{y}", b"y", id="close-before-open"),
        pytest.param(b"{{a}", b"{a", id="nested-open"),
        pytest.param(b"", b"", id="empty"),
    ],
)
def test_hash_tag_rules(key: bytes, hashed: bytes) -> None:
    assert hash_tag_key(key) == hashed


def test_no_hash_tag_hashes_the_whole_key() -> None:
    ring = Ring(THREE, hash_tag=b"")
    assert ring.hash(b"user:{42}") == fnv1a_64(b"user:{42}")


@pytest.mark.parametrize(
    ("weight", "total", "n", "points"),
    [
        pytest.param(1, 1, 1, 160, id="one"),
        pytest.param(1, 3, 3, 160, id="three-equal"),
        pytest.param(2, 3, 2, 212, id="two-of-three"),
        pytest.param(29, 60, 3, 228, id="float32-loses-a-hash"),  # exact: 232
        pytest.param(1, 25, 5, 28, id="float32-1-of-25"),  # exact: 32
        pytest.param(30, 60, 3, 240, id="half"),
    ],
)
def test_points_per_server_follows_float_arithmetic(
    weight: int, total: int, n: int, points: int
) -> None:
    assert points_per_server(weight, total, n) == points


def test_continuum_points_are_md5_of_name_dash_index_little_endian() -> None:
    ring = Ring(THREE)
    assert len(ring.points) == 480
    values = [v for v, _ in ring.points]
    assert values == sorted(values)
    first = struct.unpack("<4I", hashlib.md5(b"shard-a-0").digest())
    assert first == (3002003587, 3676913934, 3250015355, 1945046253)
    assert all((v, "shard-a") in ring.points for v in first)
    last = struct.unpack("<4I", hashlib.md5(b"shard-a-39").digest())
    assert all((v, "shard-a") in ring.points for v in last)
    assert not any(
        name == "shard-a" and v in struct.unpack("<4I", hashlib.md5(b"shard-a-40").digest())
        for v, name in ring.points
    )
    assert ring.points[:3] == [(5692218, "shard-b"), (13892677, "shard-c"), (17264027, "shard-a")]
    assert ring.points[-1] == (4288473086, "shard-c")


def test_dispatch_is_the_first_point_at_or_above_the_hash_and_wraps() -> None:
    ring = Ring(THREE)
    points = ring.points
    assert ring.name_for(b"") == points[0][1]  # empty key: hash 0
    for i in range(0, len(points), 37):
        value, owner = points[i]
        assert ring.index_for(b"") == ring.names.index(points[0][1])
        # a key whose hash equals a point belongs to that point's server
        assert ring.names[_dispatch(ring, value)] == owner
        assert ring.names[_dispatch(ring, value + 1)] == points[(i + 1) % len(points)][1]
    assert ring.names[_dispatch(ring, 2**32 - 1)] == points[0][1]  # past the last: wrap


def _dispatch(ring: Ring, h: int) -> int:
    import bisect

    i = bisect.bisect_left([v for v, _ in ring.points], h)
    name = ring.points[i if i < len(ring.points) else 0][1]
    return ring.names.index(name)


def test_known_placements() -> None:
    ring = Ring(THREE)
    assert [ring.name_for(b"key:%d" % i) for i in (1, 2, 3)] == ["shard-b"] * 3
    tagged = {ring.name_for(b"{user:7}:%d" % i) for i in range(50)}
    assert tagged == {ring.name_for(b"user:7")}


def test_one_server_owns_everything() -> None:
    ring = Ring([("only", 3)])
    assert {ring.name_for(b"k%d" % i) for i in range(100)} == {"only"}


@pytest.mark.parametrize(
    "servers",
    [
        pytest.param([], id="none"),
        pytest.param([("a", 1), ("a", 1)], id="duplicate"),
        pytest.param([("a", 0)], id="zero-weight"),
        pytest.param([("x" * 81, 1)], id="name-too-long"),
    ],
)
def test_bad_rings_are_refused(servers: list[tuple[str, int]]) -> None:
    with pytest.raises(InterfaceError):
        Ring(servers)


def test_cross_shard_error_is_an_interface_error() -> None:
    assert issubclass(CrossShardError, InterfaceError)


CONFIG = """\
# two pools
alpha:   # the main one
  listen: 127.0.0.1:22121
  redis: true
  hash: fnv1a_64   # the proxy's hash
  distribution: ketama
  hash_tag: "{}"
  auto_eject_hosts: false
  servers:  # name after the address
   - 10.0.0.1:7379:1 shard-a
   - 10.0.0.2:7379:2 shard-b
   - 10.0.0.3:7379:1
beta:
  listen: 127.0.0.1:22122
  hash: md5
  distribution: ketama
  servers:
   - 10.0.0.9:11211:1
"""


def test_nutcracker_config_is_read_as_nutcracker_names_servers() -> None:
    pools = read_nutcracker_config(CONFIG)
    alpha = pools["alpha"]
    assert alpha.options["hash_tag"] == "{}"
    assert alpha.options["hash"] == "fnv1a_64"
    assert [(s.name, s.address, s.weight) for s in alpha.servers] == [
        ("shard-a", "10.0.0.1:7379", 1),
        ("shard-b", "10.0.0.2:7379", 2),
        ("10.0.0.3:7379", "10.0.0.3:7379", 1),  # no name: host:port
    ]
    assert pools["beta"].servers[0].name == "10.0.0.9"  # port 11211: host alone
    ring = alpha.ring()
    assert ring.servers == (("shard-a", 1), ("shard-b", 2), ("10.0.0.3:7379", 1))
    with pytest.raises(InterfaceError, match="hash must be fnv1a_64"):
        pools["beta"].ring()


@pytest.mark.parametrize(
    "text",
    [
        pytest.param("  listen: x\n", id="no-pool"),
        pytest.param("a:\n  - 1.2.3.4:1:1\n", id="item-outside-servers"),
        pytest.param("a:\n  servers:\n   - 1.2.3.4:x:1\n", id="bad-port"),
        pytest.param("a:\n  servers:\n   - 1.2.3.4:1:0\n", id="zero-weight"),
        pytest.param("a: [1, 2\n", id="flow-style"),
    ],
)
def test_bad_nutcracker_configs_are_refused(text: str) -> None:
    with pytest.raises(InterfaceError):
        read_nutcracker_config(text)


@settings(max_examples=50, deadline=None)
@given(
    st.lists(st.binary(max_size=24), min_size=1, max_size=200),
    st.integers(min_value=1, max_value=6),
)
def test_adding_a_shard_moves_keys_only_to_it(keys: list[bytes], n: int) -> None:
    """ketama's promise, which `bitcask reshard` and docs/scaling.md rely on."""
    old = Ring([(f"shard-{i}", 1) for i in range(n)])
    new = Ring([*old.servers, ("shard-new", 1)])
    for key in keys:
        before, after = old.name_for(key), new.name_for(key)
        assert after in (before, "shard-new")


@given(st.binary(max_size=64).filter(lambda b: all(x < 0x80 for x in b)))
def test_ascii_keys_hash_the_same_for_signed_and_unsigned_char(key: bytes) -> None:
    assert fnv1a_64(key) == fnv1a_64(key, signed_char=False)
