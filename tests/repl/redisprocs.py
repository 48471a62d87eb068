"""Real Redis-protocol endpoints for the shell's redis:// tests, on free loopback ports.

- `redis_server(tmp, password=...)`: a real redis-server (Debian package redis-server),
  nothing persisted.
- `nutcracker(tmp, backends)`: twemproxy (Debian package nutcracker) in front of
  bitcask-servers' RESP dialect, with the layout docs/scaling.md describes.

Both skip when the program is missing (fail under CI=true, `need_binary`), wait at
most START_TIMEOUT for their port, and are killed when the `with` block ends.
"""

from __future__ import annotations

import contextlib
import subprocess
from collections.abc import Iterator
from pathlib import Path

from tests.repl.conftest import need_binary
from tests.serverproc import START_TIMEOUT, free_port, wait_for_port


def _stop(proc: subprocess.Popen[bytes]) -> None:
    if proc.poll() is None:
        proc.kill()
        proc.wait(5)


@contextlib.contextmanager
def redis_server(tmp: Path, password: str | None = None) -> Iterator[int]:
    """A redis-server on 127.0.0.1; yields its port."""
    exe = need_binary("redis-server", "redis-server")
    port = free_port()
    argv = [
        exe, "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no",
        "--dir", str(tmp), "--daemonize", "no", "--logfile", str(tmp / f"redis-{port}.log"),
    ]  # fmt: skip
    if password is not None:
        argv += ["--requirepass", password]
    proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL)
    try:
        wait_for_port("127.0.0.1", port, START_TIMEOUT, proc)
        yield port
    finally:
        _stop(proc)


@contextlib.contextmanager
def nutcracker(tmp: Path, backends: list[int], password: str | None = None) -> Iterator[int]:
    """twemproxy in front of `backends` (ports of RESP endpoints); yields its port."""
    exe = need_binary("nutcracker", "nutcracker")
    port, stats = free_port(), free_port()
    servers = "".join(
        f"   - 127.0.0.1:{p}:1 shard-{i}\n" for i, p in enumerate(backends)
    )  # a name per shard: the ring follows names, not addresses
    auth = f"  redis_auth: {password}\n" if password else ""
    conf = tmp / f"nutcracker-{port}.yml"
    conf.write_text(
        "pool:\n"
        f"  listen: 127.0.0.1:{port}\n"
        "  hash: fnv1a_64\n"
        "  distribution: ketama\n"
        "  redis: true\n"
        '  hash_tag: "{}"\n'
        "  auto_eject_hosts: false\n"
        f"{auth}"
        "  servers:\n"
        f"{servers}"
    )
    argv = [exe, "-c", str(conf), "-s", str(stats), "-a", "127.0.0.1",
            "-o", str(tmp / f"nutcracker-{port}.log")]  # fmt: skip
    proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL)
    try:
        wait_for_port("127.0.0.1", port, START_TIMEOUT, proc)
        yield port
    finally:
        _stop(proc)
