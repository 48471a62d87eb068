"""Key placement exactly as twemproxy (nutcracker) does it: fnv1a_64, ketama, hash tags.

Strategy: this file is a transcription of twemproxy 0.5's placement code, so that
`connect_sharded` and a nutcracker in front of the same shards agree key for key.
Each rule below names the C it follows; tests/sharding/ proves the agreement
against the real proxy, tests/client/test_ketama.py pins known vectors.

- Hash (src/hashkit/nc_fnv.c, `hash_fnv1a_64`): despite its name, a 32-bit FNV-1a
  seeded with the low 32 bits of the 64-bit offset basis (0x84222325) and
  multiplied by the low 32 bits of the 64-bit prime (0x1b3). Each byte is read
  through a C `char`, which is signed on x86-64: a byte >= 0x80 is sign-extended
  before the xor (0xff xors in 0xffffffff). `signed_char=False` gives the
  unsigned-char behaviour of an arm64 build of nutcracker.
- Empty key (src/nc_server.c, `server_pool_hash`): hash 0, no hashing; a pool of
  one server: always that server.
- Hash tag (src/nc_server.c, `server_pool_idx`): with `hash_tag: "{}"`, the bytes
  between the first `{` and the first `}` after it are hashed instead of the key,
  only when at least one byte lies between them (`{}` hashes the whole key).
- Continuum (src/hashkit/nc_ketama.c, `ketama_update`, auto_eject_hosts off so
  every server is live): per server, in config order,
  `pct = (float)weight / (float)total_weight` and
  `points = floorf((float)(pct * 160 / 4 * (float)nservers + 1e-10)) * 4`, every
  step in single-precision float (emulated here by rounding each step to float32;
  the 1e-10 is added in double and lost in the rounding back, so weights 1, 29, 30
  give the middle server 228 points where exact arithmetic would give 232). For i in 0 .. points/4 - 1,
  md5("<name>-<i>") gives 4 points: its 16 bytes read as four little-endian uint32.
  All points sorted by value; glibc's qsort is a stable merge sort here, so tied
  points keep the order of the pool's server array. That array is NOT the config
  order: src/nc_conf.c (`conf_validate_server`) sorts the servers by name
  (`string_compare`: shorter name first, then bytes) to find duplicates, and the
  pool is built from the sorted array. So ties go to the server whose name sorts
  first that way (proved against the real proxy with names "shard-a" and
  "s205632", which share the point 3647977106).
- Dispatch (`ketama_dispatch`): the first point whose value >= hash; past the last
  point, wrap to the first.
- Server name (src/nc_conf.c, `conf_add_server`): the word after the last space
  in `host:port:weight name`; without one, "host:port" with the port as written
  (or "host" alone when the port is 11211, libmemcached's convention). A name's
  points are hashed from "<name>-<i>" written into an 86-byte buffer, so names longer than 80 bytes are
  refused here (nutcracker would hash past its buffer).
"""

from __future__ import annotations

import bisect
import hashlib
import math
import re
import struct
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

from client.errors import InterfaceError

__all__ = [
    "NutcrackerPool",
    "NutcrackerServer",
    "Ring",
    "fnv1a_64",
    "hash_tag_key",
    "read_nutcracker_config",
]

_FNV_INIT = 0xCBF29CE484222325 & 0xFFFFFFFF
_FNV_PRIME = 0x100000001B3 & 0xFFFFFFFF
_MASK = 0xFFFFFFFF
_POINTS_PER_SERVER = 160  # KETAMA_POINTS_PER_SERVER
_POINTS_PER_HASH = 4
_MAX_HOSTLEN = 86  # KETAMA_MAX_HOSTLEN, including the terminating NUL
_MAX_NAME = 80  # "<name>-<index>" with index < 1000 and the NUL fit in the buffer
_F32 = struct.Struct("f")
_DIGEST_POINTS = struct.Struct("<4I")

# the byte as a C `char` widened to uint32: sign-extended (x86-64) or not (arm64)
_SIGNED_BYTES = tuple(b if b < 0x80 else b | 0xFFFFFF00 for b in range(256))


def fnv1a_64(key: bytes, *, signed_char: bool = True) -> int:
    """twemproxy's `fnv1a_64` hash of `key` (a 32-bit result, see the module notes).

    Args:
        key: the bytes hashed (after hash-tag extraction).
        signed_char: read bytes as a signed C char (x86-64 builds, the default).

    Returns:
        The hash, 0 <= h < 2**32.

    Example:
        >>> hex(fnv1a_64(b"a"))
        '0x8601ec8c'
    """
    h = _FNV_INIT
    if signed_char:
        widen = _SIGNED_BYTES
        for b in key:
            h = ((h ^ widen[b]) * _FNV_PRIME) & _MASK
    else:
        for b in key:
            h = ((h ^ b) * _FNV_PRIME) & _MASK
    return h


def hash_tag_key(key: bytes, tag: bytes = b"{}") -> bytes:
    """The part of `key` that is hashed under `hash_tag: "<tag>"` (the whole key if none).

    Example:
        >>> hash_tag_key(b"user:{42}:name"), hash_tag_key(b"{}x"), hash_tag_key(b"a", b"")
        (b'42', b'{}x', b'a')
    """
    if not tag:
        return key
    if len(tag) != 2:
        raise InterfaceError(f"hash_tag must be two characters, got {tag!r}")
    start = key.find(tag[0])
    if start < 0:
        return key
    end = key.find(tag[1], start + 1)
    if end < 0 or end - start <= 1:
        return key
    return key[start + 1 : end]


def _f32(x: float) -> float:
    """`x` rounded to the nearest single-precision float (one C float operation)."""
    return float(_F32.unpack(_F32.pack(x))[0])


def points_per_server(weight: int, total_weight: int, nservers: int) -> int:
    """How many continuum points nc_ketama.c gives a server (a multiple of 4).

    Example:
        >>> points_per_server(1, 3, 3), points_per_server(29, 60, 3), points_per_server(2, 3, 2)
        (160, 228, 212)
    """
    pct = _f32(_f32(weight) / _f32(total_weight))
    x = _f32(pct * _POINTS_PER_SERVER)
    x = _f32(x / 4)
    x = _f32(x * _f32(nservers))
    x = _f32(x + 0.0000000001)  # added in double, then the (float) cast
    return math.floor(x) * _POINTS_PER_HASH


@dataclass(frozen=True)
class Ring:
    """The ketama continuum nutcracker builds for a pool, and lookups on it.

    Args:
        servers: (name, weight) per server (their order does not change placement:
            nutcracker orders its servers by name).
        hash_tag: the pool's `hash_tag` (two bytes, or empty for none).
        signed_char: see `fnv1a_64`.

    Raises:
        InterfaceError: no servers, a duplicate or over-long name, a weight < 1.

    Example:
        >>> ring = Ring([("shard-a", 1), ("shard-b", 1), ("shard-c", 1)])
        >>> ring.name_for(b"user:1") == ring.name_for(b"{user:1}:profile")
        True
    """

    servers: Sequence[tuple[str, int]]
    hash_tag: bytes = b"{}"
    signed_char: bool = True
    names: tuple[str, ...] = field(init=False, repr=False)
    _values: list[int] = field(init=False, repr=False, compare=False)
    _owners: list[int] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        servers = tuple((str(n), w) for n, w in self.servers)
        object.__setattr__(self, "servers", servers)
        if not servers:
            raise InterfaceError("a ring needs at least one server")
        names = tuple(n for n, _ in servers)
        if len(set(names)) != len(names):
            raise InterfaceError(f"server names must be unique, got {list(names)}")
        for name, weight in servers:
            if not name or len(name.encode()) > _MAX_NAME:
                raise InterfaceError(f"server name must be 1..{_MAX_NAME} bytes, got {name!r}")
            if type(weight) is not int or weight < 1:
                raise InterfaceError(f"weight of {name!r} must be an int >= 1, got {weight!r}")
        if self.hash_tag and len(self.hash_tag) != 2:
            raise InterfaceError(f"hash_tag must be two characters, got {self.hash_tag!r}")
        object.__setattr__(self, "names", names)
        total = sum(w for _, w in servers)
        # nutcracker's server array: sorted by name, shorter first (see the module notes)
        order = sorted(range(len(names)), key=lambda i: (len(names[i].encode()), names[i].encode()))
        points: list[tuple[int, int, int]] = []
        for rank, index in enumerate(order):
            name, weight = servers[index]
            for i in range(points_per_server(weight, total, len(servers)) // _POINTS_PER_HASH):
                host = f"{name}-{i}".encode()
                digest = hashlib.md5(host, usedforsecurity=False).digest()
                points.extend((value, rank, index) for value in _DIGEST_POINTS.unpack(digest))
        points.sort()  # by value; equal values in nutcracker's server order (the rank)
        object.__setattr__(self, "_values", [v for v, _, _ in points])
        object.__setattr__(self, "_owners", [i for _, _, i in points])

    @property
    def points(self) -> list[tuple[int, str]]:
        """The continuum as (value, server name), ascending."""
        return [(v, self.names[i]) for v, i in zip(self._values, self._owners, strict=True)]

    def hash(self, key: bytes) -> int:
        """The hash nutcracker computes for `key` (hash tag applied; 0 for an empty key)."""
        k = hash_tag_key(key, self.hash_tag)
        return fnv1a_64(k, signed_char=self.signed_char) if k else 0

    def index_for(self, key: bytes) -> int:
        """The position in `servers` of the server that owns `key`."""
        if len(self.names) == 1:
            return 0
        values = self._values
        i = bisect.bisect_left(values, self.hash(key))
        return self._owners[i if i < len(values) else 0]

    def name_for(self, key: bytes) -> str:
        """The name of the server that owns `key`.

        Example:
            >>> Ring([("a", 1), ("b", 1)]).name_for(b"k") in ("a", "b")
            True
        """
        return self.names[self.index_for(key)]


# ---------------------------------------------------------------- nutcracker YAML


@dataclass(frozen=True)
class NutcrackerServer:
    """One `servers:` line, `host:port:weight [name]`."""

    host: str
    port: int
    weight: int
    name: str

    @property
    def address(self) -> str:
        return f"{self.host}:{self.port}"


@dataclass(frozen=True)
class NutcrackerPool:
    """One pool of a nutcracker config: its options (as strings) and its servers."""

    name: str
    options: dict[str, str]
    servers: tuple[NutcrackerServer, ...]

    def ring(self) -> Ring:
        """The pool's continuum.

        Raises:
            InterfaceError: the pool does not use `hash: fnv1a_64` and
                `distribution: ketama` (the only placement implemented here, and
                nutcracker's defaults when the lines are absent), or
                ejects hosts (`auto_eject_hosts: true` moves keys while a shard is down).
        """
        # an absent option is nutcracker's default (nc_conf.h: CONF_DEFAULT_HASH is
        # fnv1a_64, CONF_DEFAULT_DIST ketama, auto_eject_hosts false, no hash tag)
        want = {"hash": "fnv1a_64", "distribution": "ketama"}
        for option, value in want.items():
            got = self.options.get(option, value)
            if got != value:
                raise InterfaceError(f"pool {self.name!r}: {option} must be {value}, got {got!r}")
        if self.options.get("auto_eject_hosts", "false") != "false":
            raise InterfaceError(f"pool {self.name!r}: auto_eject_hosts must be false")
        tag = self.options.get("hash_tag", "")
        return Ring([(s.name, s.weight) for s in self.servers], hash_tag=tag.encode())


_LINE = re.compile(
    r"^(?P<indent> *)(?:(?P<dash>- +)(?P<item>.*)|(?P<key>[^:#\s][^:]*):(?: +(?P<value>.*))?)$"
)


def _scalar(text: str) -> str:
    text = text.strip()
    if text[:1] in ("'", '"'):
        quote = text[0]
        end = text.find(quote, 1)
        if end < 0:
            raise InterfaceError(f"unterminated quote in {text!r}")
        return text[1:end]
    if text[:1] in _NOT_PLAIN:
        # flow style ({} or []), anchors and aliases, tags, block scalars: not a plain
        # string to nutcracker either (`hash_tag: {}` unquoted is an empty mapping)
        raise InterfaceError(f"{text!r} is not a plain or quoted string (quote it)")
    return text.split(" #", 1)[0].strip()


_NOT_PLAIN = frozenset("{}[]&*!|>%@`")


_DIGITS = re.compile(r"[0-9]+")


def _server(line: str, pool: str) -> NutcrackerServer:
    # conf_add_server: "host:port:weight [name]", split from the end: the name after
    # the last space, then the weight and the port after the last two colons, both
    # plain digits (nc_atoi). Without a name, the ring hashes "host:port" as written
    # (a port "07379" stays "07379"), or "host" alone for port 11211.
    address, space, name = line.rpartition(" ")
    if not space:
        address, name = line, ""
    rest, _, weight = address.rpartition(":")
    host, _, port = rest.rpartition(":")
    if not host or not _DIGITS.fullmatch(port) or not _DIGITS.fullmatch(weight):
        raise InterfaceError(f"pool {pool!r}: bad server line {line!r}")
    port_n, weight_n = int(port), int(weight)
    if weight_n < 1 or not 0 < port_n < 65536:
        raise InterfaceError(f"pool {pool!r}: bad server line {line!r}")
    if not space:
        name = host if port_n == 11211 else f"{host}:{port}"
    return NutcrackerServer(host, port_n, weight_n, name)


def read_nutcracker_config(text: str) -> dict[str, NutcrackerPool]:
    """Read the pools of a nutcracker YAML config (the subset nutcracker itself accepts).

    Top-level keys are pools; each holds `option: value` lines and a `servers:`
    list of `- host:port:weight [name]` items. Comments and quotes are handled;
    anything else (anchors, flow style, multi-line scalars) is refused.

    Raises:
        InterfaceError: text that is not such a config.

    Example:
        >>> pools = read_nutcracker_config('''
        ... alpha:
        ...   listen: 127.0.0.1:22121
        ...   hash: fnv1a_64
        ...   servers:
        ...    - 10.0.0.1:7379:1 shard-a
        ... ''')
        >>> pools["alpha"].servers[0].name, pools["alpha"].options["hash"]
        ('shard-a', 'fnv1a_64')
    """
    pools: dict[str, tuple[dict[str, str], list[NutcrackerServer]]] = {}
    current: str | None = None
    in_servers = False
    for number, raw in enumerate(text.splitlines(), 1):
        line = raw.rstrip()
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        m = _LINE.match(line)
        if m is None:
            raise InterfaceError(f"line {number}: cannot read {raw!r}")
        value = m["value"] if m["value"] and not m["value"].startswith("#") else None
        if not m["indent"] and m["key"] is not None and not value:
            current = m["key"].strip()
            if current in pools:
                raise InterfaceError(f"line {number}: pool {current!r} is a duplicate")
            pools[current] = ({}, [])
            in_servers = False
            continue
        if current is None or not m["indent"]:
            raise InterfaceError(f"line {number}: expected a pool name, got {raw!r}")
        options, servers = pools[current]
        if m["dash"] is not None:
            if not in_servers:
                raise InterfaceError(f"line {number}: a list item outside servers:")
            servers.append(_server(_scalar(m["item"]), current))
        elif m["key"] == "servers" and not value:
            in_servers = True
        elif value:
            option = m["key"].strip()
            if option in options:
                raise InterfaceError(f"line {number}: {option!r} is a duplicate")
            options[option] = _scalar(value)
            in_servers = False
        else:
            raise InterfaceError(f"line {number}: {m['key']!r} has no value")
    return {
        name: NutcrackerPool(name, opts, tuple(servers)) for name, (opts, servers) in pools.items()
    }


def ring_from_names(names: Iterable[str], weights: dict[str, int] | None = None) -> Ring:
    """A ring over `names` (config order) with `weights` (default 1 each), hash tag `{}`."""
    w = weights or {}
    return Ring([(n, w.get(n, 1)) for n in names])
