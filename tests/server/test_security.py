"""Security: the token on every front end, how it is given, and what start-up warns about.

docs/security.md is the spec. The server runs for real on 127.0.0.1 (tests/serverproc.py);
the token rules and the exposure warnings are also checked as units, since a test server
never binds a non-loopback address.
"""

from __future__ import annotations

import os
import stat
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from client import BackupError, connect
from repl._context import UsageError
from repl._options import parse_url
from server.cli import exposure_warnings
from server.config import MAX_TOKEN_BYTES, ConfigError, ServerConfig, read_token_file
from tests.protocol._redis_server import RedisConnection, redis_server
from tests.server.wire import Conn, http, status_of
from tests.serverproc import ServerProcess

ROOT = Path(__file__).resolve().parents[2]
# A token that is not UTF-8 (latin-1 "päss"): a shell passes such bytes as they are.
RAW_TOKEN = b"p\xe4ss-\xff"
TOKEN_ARG = os.fsdecode(RAW_TOKEN)  # what argv/environ hold for those bytes in Python


@pytest.fixture(scope="module")
def raw_token_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    data = tmp_path_factory.mktemp("rawtoken") / "data"
    srv = ServerProcess(data=data, sync="never", env={"BITCASK_AUTH": TOKEN_ARG})
    srv.start()
    yield srv
    srv.kill()


def _mb(*argv: bytes) -> bytes:
    return b"*%d\r\n" % len(argv) + b"".join(b"$%d\r\n%b\r\n" % (len(a), a) for a in argv)


def test_token_that_is_not_utf8_works_on_every_port(raw_token_server: ServerProcess) -> None:
    # Was: UnicodeEncodeError traceback at start-up (exit 1); then, with the server
    # up, HTTP compared the header's latin-1 text re-encoded as UTF-8 (never equal).
    srv = raw_token_server
    with Conn(srv.port) as c:
        assert c.error("auth", b"p\xe4ss").name == "AUTH_FAILED"
        assert c.call("auth", RAW_TOKEN) is True
        assert c.call("put", b"k", b"v") is True
    reply = http(srv.port, _mb(b"AUTH", b"default", RAW_TOKEN) + _mb(b"GET", b"k") + _mb(b"QUIT"))
    assert reply == b"+OK\r\n$1\r\nv\r\n+OK\r\n"
    head = b"GET /kv/k HTTP/1.1\r\nHost: x\r\nConnection: close\r\nAuthorization: Bearer "
    assert status_of(http(srv.http_port, head + RAW_TOKEN + b"\r\n\r\n")) == 200
    assert status_of(http(srv.http_port, head + "päss-ÿ".encode() + b"\r\n\r\n")) == 401


def test_cli_sends_a_token_that_is_not_utf8(raw_token_server: ServerProcess) -> None:
    # Was: `bitcask --auth $'p\xe4ss'` printed "(error) UnicodeEncodeError: 'utf-8' codec
    # can't encode character '\udce4'" (the shell's `auth` line the same).
    with Conn(raw_token_server.port) as c:  # its own key: xdist may run it on its own
        assert c.call("auth", RAW_TOKEN) is True
        assert c.call("put", b"k", b"v") is True
    env = {k: v for k, v in os.environ.items() if not k.startswith("BITCASK_")}
    env["PYTHONPATH"] = str(ROOT)
    argv = [sys.executable, "-m", "repl.cli", "--port", str(raw_token_server.port)]
    proc = subprocess.run(
        [*argv, "--auth", TOKEN_ARG, "get", "k"], capture_output=True, env=env, timeout=60
    )
    assert (proc.returncode, proc.stdout) == (0, b"v\n"), proc.stderr


@pytest.mark.parametrize(
    ("token", "message"),
    [
        pytest.param("Zq7\n", "ends with a newline", id="trailing-newline"),
        pytest.param("Zq7\r\n", "ends with a newline", id="trailing-crlf"),
        pytest.param("Zq\t7", "control character", id="tab"),
        pytest.param("Zq\x7f7", "control character", id="del"),
        pytest.param(" Zq7", "starts or ends with a space", id="leading-space"),
        pytest.param("Zq7 ", "starts or ends with a space", id="trailing-space"),
        pytest.param("x" * (MAX_TOKEN_BYTES + 1), "too long", id="too-long"),
        pytest.param("é" * (MAX_TOKEN_BYTES // 2 + 1), "too long", id="too-long-in-bytes"),
    ],
)
def test_token_no_client_could_send_is_refused(token: str, message: str) -> None:
    with pytest.raises(ConfigError, match=message) as err:
        ServerConfig.from_args(["--port", "0", "--http-port", "0"], env={"BITCASK_AUTH": token})
    assert token.strip() not in str(err.value), "the message must not echo the token"


def test_token_rules_accept_what_every_client_can_send() -> None:
    for token in ("a b", "x" * MAX_TOKEN_BYTES, "pässwörd", TOKEN_ARG, "!\"#$%&'()*+,-./:;<=>?@"):
        assert ServerConfig(auth=token).auth_token == os.fsencode(token)
    # the header limit bounds the token too: half of it is left for the request line
    with pytest.raises(ConfigError, match="too long"):
        ServerConfig(auth="x" * 600, http_max_header_bytes=1024)


def test_auth_file(tmp_path: Path) -> None:
    path = tmp_path / "token"
    for content, token in ((b"s3cret\n", "s3cret"), (b"s3cret\r\n", "s3cret"), (b"a b", "a b")):
        path.write_bytes(content)
        cfg = ServerConfig.from_args(["--auth-file", str(path)], env={})
        assert cfg.auth == token
        assert ServerConfig.from_args([], env={"BITCASK_AUTH_FILE": str(path)}).auth == token
    path.write_bytes(RAW_TOKEN + b"\n")
    assert ServerConfig.from_args(["--auth-file", str(path)], env={}).auth_token == RAW_TOKEN
    path.write_bytes(b"s3cret\n\n")  # only one line end is dropped: the rest is refused
    with pytest.raises(ConfigError, match="ends with a newline"):
        ServerConfig.from_args(["--auth-file", str(path)], env={})
    path.write_bytes(b"\n")
    with pytest.raises(ConfigError, match="is empty"):
        read_token_file(path)
    with pytest.raises(ConfigError, match="No such file"):
        read_token_file(tmp_path / "missing")
    path.write_bytes(b"s3cret")
    for argv, env in (
        (["--auth-file", str(path), "--auth", "x"], {}),
        (["--auth-file", str(path)], {"BITCASK_AUTH": "x"}),
        (["--auth", "x"], {"BITCASK_AUTH_FILE": str(path)}),
    ):
        with pytest.raises(ConfigError, match="give the token once"):
            ServerConfig.from_args(argv, env=env)


def test_server_reads_its_token_from_a_file(tmp_path: Path) -> None:
    token_file = tmp_path / "token"
    token_file.write_bytes(b"from-a-file\n")
    token_file.chmod(0o600)
    srv = ServerProcess(
        data=tmp_path / "data", sync="never", extra=["--auth-file", str(token_file)]
    )
    srv.start()
    try:
        with Conn(srv.port) as c:
            assert c.error("get", b"k").name == "AUTH_REQUIRED"
            assert c.call("auth", "from-a-file") is True
        assert "from-a-file" not in " ".join(srv.argv())
        assert "WARNING" not in srv.log(), srv.log()
    finally:
        assert srv.stop() == 0


def test_exposure_warnings(tmp_path: Path) -> None:
    # a test server never binds beyond loopback: the rule is checked on its own
    assert exposure_warnings(ServerConfig(host="127.0.0.1"), [], env={}) == []
    assert exposure_warnings(ServerConfig(host="localhost"), [], env={}) == []
    (open_all,) = exposure_warnings(ServerConfig(host="0.0.0.0"), [], env={})
    assert "without --auth" in open_all and "0.0.0.0" in open_all
    assert exposure_warnings(ServerConfig(host="0.0.0.0", auth="t"), [], env={}) == []
    (in_argv,) = exposure_warnings(ServerConfig(auth="t"), ["--auth", "t"], env={})
    assert "command line" in in_argv and "BITCASK_AUTH" in in_argv
    token_file = tmp_path / "token"
    token_file.write_bytes(b"t")
    token_file.chmod(0o644)
    (readable,) = exposure_warnings(ServerConfig(auth="t"), ["--auth-file", str(token_file)], {})
    assert "readable by other users (mode 0644)" in readable
    token_file.chmod(0o600)
    assert exposure_warnings(ServerConfig(auth="t"), ["--auth-file", str(token_file)], {}) == []


async def test_permissive_umask_exposes_no_file(tmp_path: Path) -> None:
    # Was: under umask 000 the server created its data directory 0777 and a backup's
    # directory was 0777 too: any local user could read every value, or plant a
    # symlink where the store writes its next file.
    data = tmp_path / "data"
    old = os.umask(0)
    try:
        srv = ServerProcess(data=data, sync="never", env={"BITCASK_AUTH": "t0k"}).start()
    finally:
        os.umask(old)
    try:
        async with await connect("127.0.0.1", srv.port, auth="t0k") as db:
            await db.put(b"secret", b"value")
            old = os.umask(0)
            try:
                await db.backup(tmp_path / "backup")
            finally:
                os.umask(old)
        for top in (data, tmp_path / "backup"):
            assert stat.S_IMODE(top.stat().st_mode) == 0o700, top
            for f in top.iterdir():
                assert stat.S_IMODE(f.stat().st_mode) & 0o022 == 0, f
    finally:
        assert srv.stop() == 0


def test_writable_data_directory_is_a_warning(tmp_path: Path) -> None:
    data = tmp_path / "data"
    data.mkdir()
    data.chmod(0o777)
    (warning,) = exposure_warnings(ServerConfig(data=data), [], env={})
    assert "writable by other users (mode 0777)" in warning
    data.chmod(0o755)
    assert exposure_warnings(ServerConfig(data=data), [], env={}) == []


@pytest.mark.parametrize(
    "url", ["bitcask://Zq7Sekrit@127.0.0.1:x", "redis://Zq7Sekrit@127.0.0.1:x/0"]
)
def test_a_lone_user_info_is_not_printed(url: str) -> None:
    # Was: "(error) bad port in 'bitcask://Zq7Sekrit@127.0.0.1:x'": only `user:password@`
    # was redacted, but redis-cli reads `redis://SECRET@host` as the password, and a
    # token typed as `bitcask://TOKEN@` (the documented `:TOKEN@` less its colon) is one.
    with pytest.raises(UsageError) as err:
        parse_url(url)
    assert "Zq7Sekrit" not in str(err.value) and "://***@127.0.0.1:x" in str(err.value)


@pytest.mark.parametrize(
    "browser",
    [
        pytest.param(b"Origin: https://evil.example\r\n", id="origin"),
        pytest.param(b"Origin: null\r\n", id="origin-null"),
        pytest.param(b"Sec-Fetch-Site: cross-site\r\n", id="cross-site"),
        pytest.param(b"Sec-Fetch-Site: same-origin\r\n", id="dns-rebinding"),
    ],
)
def test_web_pages_cannot_use_kv(shared: ServerProcess, browser: bytes) -> None:
    # Was: any web page a developer opened could write every key of a server on
    # 127.0.0.1 without --auth: `fetch("http://127.0.0.1:7380/kv/k?append",
    # {method: "POST", body: "x"})` is a CORS simple request (text/plain), sent
    # cross-site with no preflight; it answered 200 and the key held "x".
    key = b"/kv/csrf-" + browser.split(b":")[0].lower() + b"-" + str(len(browser)).encode()
    post = b"POST " + key + b"?append HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n"
    body = b"Content-Type: text/plain\r\nContent-Length: 5\r\n\r\npwned"
    assert status_of(http(shared.http_port, post + browser + body)) == 403
    get = b"GET " + key + b" HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n"
    assert status_of(http(shared.http_port, get + browser + b"\r\n")) == 403
    assert status_of(http(shared.http_port, get + b"\r\n")) == 404, "nothing was written"
    # an address typed in the browser's own bar (Sec-Fetch-Site: none), curl: served
    typed = get + b"Sec-Fetch-Site: none\r\n\r\n"
    assert status_of(http(shared.http_port, typed)) == 404
    assert status_of(http(shared.http_port, post + body)) == 200
    # the probes stay open to anything that can reach them
    probe = b"GET /livez HTTP/1.1\r\nHost: x\r\nConnection: close\r\n" + browser + b"\r\n"
    assert status_of(http(shared.http_port, probe)) == 200


CROSS_PROTOCOL = [
    pytest.param(b"post /x HTTP/1.0\r\nSET pwn 1\r\n", id="post-lower-case"),
    pytest.param(b"Host: 127.0.0.1\r\nSET pwn 1\r\n", id="host-header"),
    pytest.param(
        b"*1\r\n$4\r\nPOST\r\n*3\r\n$3\r\nSET\r\n$3\r\npwn\r\n$1\r\n1\r\n", id="multibulk"
    ),
    pytest.param(b"hOsT: x\r\nSET pwn 1\r\n", id="any-case"),
]


@pytest.mark.parametrize("payload", CROSS_PROTOCOL)
def test_cross_protocol_lines_close_as_redis_does(
    shared: ServerProcess, tmp_path: Path, payload: bytes
) -> None:
    # Was: `post /x HTTP/1.0` (not an upper-case request line, so not refused as HTTP)
    # answered "-ERR unknown command 'post'" and the SET after it ran; redis-server
    # closes at a command named POST or Host: with no reply (securityWarningCommand).
    with redis_server(tmp_path) as redis_port:
        expected = http(redis_port, payload)
        assert http(redis_port, b"EXISTS pwn\r\nQUIT\r\n") == b":0\r\n+OK\r\n"
    assert http(shared.port, payload) == expected
    assert http(shared.port, b"EXISTS pwn\r\nQUIT\r\n") == b":0\r\n+OK\r\n"


async def test_backup_to_a_symlink_is_refused(tmp_path: Path) -> None:
    # Was: `bitcask backup LINK` (LINK -> an empty directory) failed "Not a directory
    # (.LINK.backup-...)"; with --force onto a link to a full directory it replaced the
    # link with the backup and left the link behind as a hidden `.LINK.old-*`.
    srv = ServerProcess(data=tmp_path / "data", sync="never").start()
    try:
        (tmp_path / "full").mkdir()
        (tmp_path / "full" / "keep").write_bytes(b"x")
        (tmp_path / "empty").mkdir()
        async with await connect("127.0.0.1", srv.port) as db:
            await db.put(b"k", b"v")
            for target, force in (("empty", False), ("full", True), ("nowhere", False)):
                link = tmp_path / f"to-{target}"
                link.symlink_to(tmp_path / target)
                with pytest.raises(BackupError, match="is a symbolic link"):
                    await db.backup(link, force=force)
                assert link.is_symlink()
        assert (tmp_path / "full" / "keep").read_bytes() == b"x"
        assert not list((tmp_path / "empty").iterdir())
        names = sorted(p.name for p in tmp_path.iterdir() if not p.name.endswith(".log"))
        assert names == ["data", "empty", "full", "to-empty", "to-full", "to-nowhere"], names
    finally:
        assert srv.stop() == 0


def test_configs_do_not_show_the_token() -> None:
    # Was: repr() of ServerConfig, client.ClientConfig (public as `Client.config`) and
    # the shell's ConnectOptions printed auth='...' into any log or traceback showing them.
    from client import ClientConfig
    from repl._context import ConnectOptions

    for cfg in (
        ServerConfig(auth="Zq7Sekrit"),
        ClientConfig(host="h", port=1, auth="Zq7Sekrit"),
        ConnectOptions(auth="Zq7Sekrit"),
    ):
        assert cfg.auth == "Zq7Sekrit" and "Zq7Sekrit" not in repr(cfg), repr(cfg)


def _preauth_argvs() -> list[list[bytes]]:
    """Every command and subcommand of the table with a fitting, a too-long and a too-short
    argument list, plus unknown names: what a client without the password may send."""
    from protocol._redis_table import COMMANDS, SUBCOMMANDS

    out: list[list[bytes]] = [[b"nosuch", b"a"], [b"CLIENT", b"nosuch"], [b"AUTH", b"x", b"y"]]
    for name, spec in COMMANDS.items():
        if name == "quit":  # closes the connection: checked by the pipelines above
            continue
        word = name.upper().encode()
        need = abs(spec.arity) - 1
        for sub in SUBCOMMANDS.get(name, {}):
            if sub not in ("setinfo", "no-touch"):  # Redis 7.2's; the redis-server here is 7.0
                out += [[word, sub.encode()], [word, sub.encode(), b"a", b"b"]]
        out += [[word, *[b"1"] * need], [word, *[b"1"] * (need + 3)]]
        if need:
            out.append([word])
    return out


def test_every_command_before_auth_answers_as_redis_server(tmp_path: Path) -> None:
    # Differential: each command of the table, sent by a client that has not logged in,
    # gets redis-server --requirepass's exact reply (NOAUTH, or the unknown command and
    # arity errors Redis checks first).
    srv = ServerProcess(data=tmp_path / "data", sync="never", env={"BITCASK_AUTH": "t0k"})
    srv.start()
    try:
        with redis_server(tmp_path, "--requirepass", "t0k") as redis_port:
            ours, theirs = RedisConnection(srv.port), RedisConnection(redis_port)
            try:
                for argv in _preauth_argvs():
                    assert ours.call(argv) == theirs.call(argv), argv
            finally:
                ours.close()
                theirs.close()
    finally:
        srv.kill()


@pytest.mark.parametrize(
    "url",
    [
        "bitcask://:Zq7Sekrit@127.0.0.1:x",
        "bitcask://Zq7Sekrit@127.0.0.1:x",
        "bitcask://:Zq7Sekrit@127.0.0.1?nosuch=1",
        "bitcask://:Zq7Sekrit@127.0.0.1?timeout=x",
        "bitcask://:Zq7Sekrit@[::1",
    ],
)
def test_client_url_errors_do_not_show_the_token(url: str) -> None:
    # Was: client.connect("bitcask://:TOKEN@h:x") raised "bad port in
    # 'bitcask://:TOKEN@h:x'" (the shell redacted, the library did not), and an
    # unclosed IPv6 bracket escaped as a bare ValueError instead of InterfaceError.
    from client import InterfaceError
    from client import parse_url as client_parse_url

    with pytest.raises(InterfaceError) as err:
        client_parse_url(url)
    assert "Zq7Sekrit" not in str(err.value) and "***@" in str(err.value)
