"""Real peers for the sharding tests: redis-server backends, nutcracker, bitcask-servers.

Everything listens on free 127.0.0.1 ports (no network namespaces: loopback is
the multi-host layout here; each shard is still its own process with its own
port and data). Every process is killed when its test ends; every wait is bounded.

A binary that is missing skips the test with the Debian package to install, but
under CI=true it fails instead: CI installs the peers (.ci/run), so a skip there
would hide a broken set-up.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import socket
import subprocess
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from tests.serverproc import free_port

START_TIMEOUT = 20.0
SBIN = "/usr/local/sbin:/usr/sbin:/sbin"
IO_TIMEOUT = 10.0


def require(binary: str, package: str) -> str:
    """The path of `binary`; skip (fail under CI=true) naming the package if it is missing."""
    # Debian installs nutcracker in /usr/sbin, often not on a user's PATH
    path = shutil.which(binary) or shutil.which(binary, path=SBIN)
    if path is None:
        reason = f"{binary} not installed (apt-get install {package})"
        if os.environ.get("CI", "").lower() in ("1", "true", "yes"):
            pytest.fail(f"CI=true: {reason}")
        pytest.skip(reason)
    return path


def _wait_port(
    port: int, proc: subprocess.Popen[bytes], log: Path, host: str = "127.0.0.1"
) -> None:
    deadline = time.monotonic() + START_TIMEOUT
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"exited with {proc.returncode}:\n{log.read_text(errors='replace')}")
        with contextlib.suppress(OSError), socket.create_connection((host, port), 0.5):
            return
        time.sleep(0.05)
    raise TimeoutError(f"nothing listened on {host}:{port} within {START_TIMEOUT}s")


@dataclass
class Proc:
    """One child process listening on `host`:`port`."""

    argv: list[str]
    port: int
    log: Path
    proc: subprocess.Popen[bytes] | None = None
    host: str = "127.0.0.1"

    def start(self) -> Proc:
        with self.log.open("ab") as out:
            self.proc = subprocess.Popen(
                self.argv, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL
            )
        try:
            _wait_port(self.port, self.proc, self.log, self.host)
        except Exception:
            self.kill()
            raise
        return self

    def kill(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(10)
        self.proc = None


# ---------------------------------------------------------------- keys for placement tests


def placement_keys(n: int = 10_000) -> list[bytes]:
    """`n` (>= 2,000) distinct keys that exercise ketama's corners: plain ASCII, 40 hash tags,
    bytes >= 0x80 (hashed sign-extended), the empty tag "{}" (hashes the whole key), and
    an unclosed "{" (no tag)."""
    keys = [b"key:%d" % i for i in range(n - 1_000)]
    keys += [b"user:{%d}:field:%d" % (i % 40, i) for i in range(600)]  # 40 tags
    keys += [b"\xff\x80raw-%d-\xe9\x01" % i for i in range(300)]  # sign-extended bytes
    keys += [b"{}empty-tag-%d" % i for i in range(50)]  # "{}" hashes the whole key
    keys += [b"only{open-%d" % i for i in range(50)]  # no closing brace
    assert len(keys) == n
    return keys


def tagged_keys(tags: int = 200) -> list[bytes]:
    """Three keys for each of `tags` hash tags (`order:{7:customer}:head`, ...)."""
    # fnv1a_64 mixes the last bytes of a key weakly, so tags vary at the front
    return [
        b"order:{%d:customer}:%s" % (i, part)
        for i in range(tags)
        for part in (b"head", b"lines", b"x")
    ]


def tag_of(key: bytes) -> bytes:
    """The hash tag of a `tagged_keys` key."""
    return key.split(b"{", 1)[1].split(b"}", 1)[0]


# ---------------------------------------------------------------- a tiny RESP client


class Resp:
    """A blocking RESP2 client, just enough for the tests (commands in, replies out)."""

    def __init__(self, port: int, host: str = "127.0.0.1") -> None:
        self.sock = socket.create_connection((host, port), IO_TIMEOUT)
        self.sock.settimeout(IO_TIMEOUT)
        self.buf = b""

    def close(self) -> None:
        self.sock.close()

    def send(self, *args: bytes | str | int) -> None:
        out = [b"*%d\r\n" % len(args)]
        for a in args:
            b = a if isinstance(a, bytes) else str(a).encode()
            out.append(b"$%d\r\n%s\r\n" % (len(b), b))
        self.sock.sendall(b"".join(out))

    def _line(self) -> bytes:
        while b"\r\n" not in self.buf:
            chunk = self.sock.recv(65536)
            if not chunk:
                raise ConnectionError("connection closed by the peer")
            self.buf += chunk
        line, _, self.buf = self.buf.partition(b"\r\n")
        return line

    def _exact(self, n: int) -> bytes:
        while len(self.buf) < n + 2:
            chunk = self.sock.recv(65536)
            if not chunk:
                raise ConnectionError("connection closed by the peer")
            self.buf += chunk
        data, self.buf = self.buf[:n], self.buf[n + 2 :]
        return data

    def reply(self) -> object:
        """One reply: bytes, int, list, None, or a RespError instance (not raised)."""
        line = self._line()
        kind, rest = line[:1], line[1:]
        if kind == b"+":
            return rest
        if kind == b"-":
            return RespError(rest.decode(errors="replace"))
        if kind == b":":
            return int(rest)
        if kind == b"$":
            n = int(rest)
            return None if n < 0 else self._exact(n)
        if kind == b"*":
            n = int(rest)
            return None if n < 0 else [self.reply() for _ in range(n)]
        raise ConnectionError(f"not RESP: {line!r}")

    def call(self, *args: bytes | str | int) -> object:
        self.send(*args)
        return self.reply()

    def pipeline(self, commands: Sequence[Sequence[bytes | str | int]]) -> list[object]:
        """Send every command, then read every reply (one round trip per batch)."""
        for c in commands:
            self.send(*c)
        return [self.reply() for _ in commands]

    def keys(self) -> set[bytes]:
        """Every key, by SCAN (bounded: stops after 100,000 pages)."""
        found: set[bytes] = set()
        cursor = b"0"
        for _ in range(100_000):
            reply = self.call("SCAN", cursor, "COUNT", 1000)
            assert isinstance(reply, list), reply
            cursor, batch = reply
            found.update(batch)
            if cursor == b"0":
                return found
        raise AssertionError("SCAN did not finish")


@dataclass(frozen=True)
class RespError:
    message: str


# ---------------------------------------------------------------- nutcracker


def nutcracker_yaml(
    pool: str,
    listen: int,
    servers: Sequence[tuple[int, int, str]],
    extra: Sequence[str] = (),
    *,
    listen_host: str = "127.0.0.1",
    hosts: Mapping[str, str] | None = None,
) -> str:
    """A nutcracker config: one pool on `listen_host`:`listen`, servers (port, weight, name),
    each on 127.0.0.1 unless `hosts` (name -> address) says otherwise."""
    where = hosts or {}
    lines = [
        f"{pool}:",
        f"  listen: {listen_host}:{listen}",
        "  redis: true",
        "  hash: fnv1a_64",
        "  distribution: ketama",
        '  hash_tag: "{}"',
        "  auto_eject_hosts: false",
        "  timeout: 2000",
        *(f"  {line}" for line in extra),
        "  servers:",
        *(
            f"   - {where.get(name, '127.0.0.1')}:{port}:{weight} {name}"
            for port, weight, name in servers
        ),
    ]
    return "\n".join(lines) + "\n"


@dataclass
class Cluster:
    """Backends (name -> Proc) behind one nutcracker (`proxy`)."""

    backends: dict[str, Proc]
    proxy: Proc
    config: Path
    weights: dict[str, int] = field(default_factory=dict)


@pytest.fixture
def start_proc(tmp_path: Path) -> Iterator[Callable[..., Proc]]:
    """`start_proc(argv, port, log_name, host="127.0.0.1")`: killed when the test ends."""
    started: list[Proc] = []

    def start(argv: list[str], port: int, log_name: str, host: str = "127.0.0.1") -> Proc:
        p = Proc(argv, port, tmp_path / f"{log_name}.log", host=host)
        started.append(p)
        return p.start()

    yield start
    for p in reversed(started):
        p.kill()


@pytest.fixture
def redis_backend(start_proc: Callable[..., Proc]) -> Callable[[str], Proc]:
    """Start one redis-server (no persistence) on a free loopback port."""
    binary = require("redis-server", "redis-server")

    def start(name: str) -> Proc:
        port = free_port()
        argv = [binary, "--port", str(port), "--bind", "127.0.0.1", "--save", "",
                "--appendonly", "no", "--protected-mode", "no"]  # fmt: skip
        return start_proc(argv, port, f"redis-{name}")

    return start


@pytest.fixture
def nutcracker(start_proc: Callable[..., Proc], tmp_path: Path) -> Callable[..., Proc]:
    """`nutcracker(config_text, port)`: start nutcracker listening on `port` (config checked
    first). In a network namespace: `host=` its address, `prefix=["ip", "netns", "exec", ns]`
    and a `stats_port` (the root namespace cannot tell which ports are free there);
    `args`: more command-line options (`["--mbuf-size", "65600"]`)."""
    binary = require("nutcracker", "nutcracker")

    def start(
        config_text: str,
        port: int,
        *,
        host: str = "127.0.0.1",
        prefix: Sequence[str] = (),
        stats_port: int | None = None,
        args: Sequence[str] = (),
    ) -> Proc:
        conf = tmp_path / f"nutcracker-{port}.yml"
        conf.write_text(config_text, encoding="utf-8")
        check = subprocess.run(
            [binary, "--test-conf", "--conf-file", str(conf)],
            capture_output=True, text=True, timeout=30,
        )  # fmt: skip
        assert check.returncode == 0, check.stdout + check.stderr
        stats = stats_port or free_port()
        argv = [*prefix, binary, "--conf-file", str(conf), "--stats-port", str(stats),
                "--stats-addr", "127.0.0.1", "--verbose", "5",
                # Debian's default log file, /var/log/nutcracker/, is root's: a user's
                # nutcracker exited at once and every proxy test errored
                "--output", "/dev/stderr", *args]  # fmt: skip
        return start_proc(argv, port, f"nutcracker-{port}", host)

    return start


@pytest.fixture
def redis_cluster(
    redis_backend: Callable[[str], Proc], nutcracker: Callable[..., Proc], tmp_path: Path
) -> Callable[[dict[str, int]], Cluster]:
    """`redis_cluster({"shard-a": 1, ...})`: redis-servers with those weights behind nutcracker."""

    def start(weights: dict[str, int]) -> Cluster:
        backends = {name: redis_backend(name) for name in weights}
        listen = free_port()
        text = nutcracker_yaml(
            "bitcask", listen, [(backends[n].port, w, n) for n, w in weights.items()]
        )
        proxy = nutcracker(text, listen)
        return Cluster(backends, proxy, tmp_path / f"nutcracker-{listen}.yml", dict(weights))

    return start
