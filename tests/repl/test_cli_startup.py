"""`bitcask` loads only what the command in hand uses (start-up time is measured in
bench/cli.py, never asserted: here only *which* modules a real run loaded is checked).

- get / put / ping, against a real bitcask-server and a real redis-server: not the
  server's side of `protocol` (Connection, the Redis dialect and its command table),
  not the sharding, pool or backup code of `client`, not the CLI's tools (transfer,
  reshard, offline engine work) nor json.
- help, `CMD --help`, `--version` and a usage error: not asyncio and not the client.
- protocol and client, lazy since, still export every name of their __all__.

ssl is not in the lists: asyncio imports it whatever the URL (asyncio.base_events).
random is: the client imports it only to back off a reconnect.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from tests.repl.conftest import ROOT, TIMEOUT
from tests.repl.redisprocs import redis_server
from tests.serverproc import ServerProcess

PROBE = """
import sys
from repl.cli import main
try:
    code = main(sys.argv[1:])
except SystemExit as exc:  # --version exits from argparse
    code = exc.code
sys.stdout.flush()
print("--modules--", code, " ".join(sorted(sys.modules)))
"""

# what a one-shot get / put / ping must not load (each was loaded before, but json)
NOT_FOR_ONE_KEY = {
    "protocol.connection",
    "protocol.resp_dialect",
    "protocol._redis_table",
    "client._ketama",
    "client._sharded",
    "client._pool",
    "client._backup",
    "repl._transfer",
    "repl._reshard",
    "repl._offline",
    "bitcask",
    "prompt_toolkit",
    "json",
}
# nor this, which connecting used to load (backoff); --version may (importlib.metadata's
# email parser imports random)
NOT_TO_CONNECT = {"random"}
NOT_FOR_HELP = {"asyncio", "client", "repl._session", "repl._run", "msgpack"}


def _run(*argv: str) -> tuple[int, str, set[str]]:
    """`bitcask ARGV` in a fresh interpreter: (exit status, its output, sys.modules)."""
    proc = subprocess.run(
        [sys.executable, "-c", PROBE, *argv],
        capture_output=True, text=True, cwd=ROOT, timeout=TIMEOUT, check=False,
    )  # fmt: skip
    out, _, last = proc.stdout.rpartition("--modules-- ")
    code, _, names = last.strip().partition(" ")
    return int(code), out, set(names.split())


def test_put_get_ping_load_the_client_and_nothing_else(server: ServerProcess) -> None:
    port = str(server.port)
    for argv, answer in (
        (["put", "k", "v"], "OK\n"), (["get", "k"], "v\n"), (["ping"], "PONG\n")
    ):  # fmt: skip
        code, out, modules = _run("--port", port, *argv)
        assert (code, out) == (0, answer)
        assert {"client._client", "protocol._framing"} <= modules  # it talked to the server
        assert sorted(modules & (NOT_FOR_ONE_KEY | NOT_TO_CONNECT)) == [], argv


def test_against_redis_too(tmp_path: Path) -> None:
    with redis_server(tmp_path) as port:
        url = f"redis://127.0.0.1:{port}"
        assert _run("--url", url, "put", "k", "v")[:2] == (0, "OK\n")
        code, out, modules = _run("--url", url, "get", "k")
    assert (code, out) == (0, "v\n")
    assert "client._resp" in modules
    assert sorted(modules & (NOT_FOR_ONE_KEY | NOT_TO_CONNECT)) == []


@pytest.mark.parametrize(
    ("argv", "status"),
    [(["--help"], 0), (["get", "--help"], 0), (["help"], 0), (["--version"], 0), ([], 2)],
)
def test_help_version_and_usage_do_not_load_asyncio_or_the_client(
    argv: list[str], status: int
) -> None:
    code, out, modules = _run(*argv)
    assert code == status
    assert out or status  # help text or version; a usage error goes to stderr
    assert sorted(modules & (NOT_FOR_HELP | NOT_FOR_ONE_KEY)) == []


LAZY = """
import importlib, sys
for package in ("protocol", "client"):
    pkg = importlib.import_module(package)
    for name in pkg.__all__:
        value = getattr(pkg, name)
        home = [m for m in list(sys.modules) if m.startswith(package + ".")
                and getattr(sys.modules[m], name, None) is value]
        assert home, (package, name)
    try:
        pkg.no_such_name
    except AttributeError as exc:
        assert str(exc) == f"module {package!r} has no attribute 'no_such_name'"
    else:
        raise AssertionError(package)
from protocol import connection  # a submodule, not an exported name: still imports
print("ok", connection.__name__)
"""


def test_lazy_packages_still_export_every_name_and_refuse_others() -> None:
    """protocol and client import their names on first use (protocol/_lazy.py): every
    name in __all__ still resolves, an unknown one is Python's own AttributeError."""
    proc = subprocess.run(
        [sys.executable, "-c", LAZY],
        capture_output=True, text=True, cwd=ROOT, timeout=TIMEOUT, check=False,
    )  # fmt: skip
    assert (proc.stdout, proc.stderr) == ("ok protocol.connection\n", "")
