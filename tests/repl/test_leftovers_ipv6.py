"""IPv6 addresses are shown `[::1]:7379` everywhere: prompt, toolbar, messages, URLs.

They were shown `::1:7379` (the port indistinguishable from the address) in the shell
prompt and toolbar, the CLI's and the client's messages, the health URL and the
server's "listening" log line. Every one now goes through protocol.address.host_port.
`--host ::1` was checked end to end by hand against a server listening on ::1 (put,
get, health, redis://[::1]:PORT); the suite's servers listen on 127.0.0.1 only, so
here the connection attempts go to a port nothing listens on.
"""

from __future__ import annotations

import asyncio
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import pytest

from client import ConnectError, RespClient, connect
from protocol.address import host_port
from repl._context import ConnectOptions
from repl._options import parse_url
from repl._ui import prompt_fragments, toolbar_fragments
from tests.serverproc import free_port


@pytest.mark.parametrize(
    ("host", "shown"),
    [
        ("::1", "[::1]:7379"),
        ("fe80::1%eth0", "[fe80::1%eth0]:7379"),
        ("[::1]", "[::1]:7379"),
        ("127.0.0.1", "127.0.0.1:7379"),
        ("db.local", "db.local:7379"),
    ],
)
def test_host_port(host: str, shown: str) -> None:
    assert host_port(host, 7379) == shown


def test_shell_and_cli_show_brackets() -> None:
    options = ConnectOptions(host="::1", port=7379, http_port=7380)
    assert options.address == "[::1]:7379"
    assert options.url == "bitcask://[::1]:7379"
    assert options.health_url == "http://[::1]:7380/health"
    assert ConnectOptions(host="::1", port=6380, redis=True, db=2).url == "redis://[::1]:6380/2"
    session = SimpleNamespace(options=options, connected=False)
    assert prompt_fragments(session) == [("class:prompt", "[::1]:7379> ")]  # type: ignore[arg-type]
    assert "[::1]:7379 | not connected" in toolbar_fragments(session)[0][1]  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("url", "host", "port"),
    [
        ("redis://[::1]:7379", "::1", 7379),
        ("bitcask://[::1]:7000", "::1", 7000),
        ("redis://[::1]", "::1", 6379),
    ],
)
def test_urls_with_ipv6_hosts_parse_back(url: str, host: str, port: int) -> None:
    parsed = parse_url(url)
    assert (parsed["host"], parsed["port"]) == (host, port)
    options = ConnectOptions(host=host, port=port, redis=url.startswith("redis"))
    assert parse_url(options.url)["host"] == host  # the URL shown reads back


def test_client_messages_show_brackets() -> None:
    port = free_port()  # nothing listens there, on any address

    async def attempt() -> tuple[str, str]:
        with pytest.raises(ConnectError) as binary:
            await connect("::1", port, timeout=2, reconnect_attempts=1)
        resp = RespClient("::1", port, timeout=2)
        assert repr(resp) == f"<RespClient redis://[::1]:{port}>"
        return str(binary.value), resp.address

    binary, resp = asyncio.run(attempt())
    assert f"cannot connect to [::1]:{port}:" in binary
    assert resp == f"[::1]:{port}"


def test_cli_error_names_the_address_with_brackets(
    home_env: dict[str, str], tmp_path: Path
) -> None:
    port = free_port()
    done = subprocess.run(
        [sys.executable, "-m", "repl.cli", "--host", "::1", "--port", str(port), "ping"],
        capture_output=True,
        env=home_env,
        cwd=tmp_path,
        timeout=30,
    )
    assert done.returncode == 2
    assert done.stderr.decode().startswith(f"(error) cannot connect to [::1]:{port}: ")
