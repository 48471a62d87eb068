"""Keys and values an attacker wrote, read by an operator: the real programs against a
real server, at a real pseudo-terminal and through pipes.

The rule (docs/shell.md, "Binary-safe"): a terminal is shown every key and value
quoted with `\\xNN` escapes, so no control byte of stored data reaches it (an OSC
title change, a clipboard write, a clear screen, a C1 CSI, a bidi override), and what
it shows can be typed back to name the same bytes; a pipe gets the exact bytes
(`--raw` / `--no-raw` override), as redis-cli does.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import socket
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path

from client import connect
from tests.repl.conftest import ROOT, TIMEOUT
from tests.repl.ptyrun import in_pty
from tests.serverproc import ServerProcess

# (key, what a terminal shows for it), in byte order (keys lists them so)
HOSTILE = sorted(
    [
        (b"", '""'),
        (b"\x00", r'"\x00"'),
        (b"\t", r'"\t"'),
        (b"\n", r'"\n"'),
        (b"\r\n", r'"\r\n"'),
        (b"\x1b[2J\x1b[31m", r'"\x1b[2J\x1b[31m"'),
        (b"\x1b]0;pwned\x07", r'"\x1b]0;pwned\x07"'),
        (b"\x1b]52;c;cHduZWQ=\x07", r'"\x1b]52;c;cHduZWQ=\x07"'),
        (b"%2F", '"%2F"'),
        (b'a/b?c#d "q" \\', r'"a/b?c#d \"q\" \\"'),
        (b"\x7f", r'"\x7f"'),
        ("é".encode(), '"é"'),
        ("\u202eabc".encode(), r'"\xe2\x80\xaeabc"'),
        ("\u009b1m".encode(), r'"\xc2\x9b1m"'),
        (b"\xff\xfe", r'"\xff\xfe"'),
    ]
)
# bytes that must never reach the terminal: ESC, BEL, the C1 CSI, RLO, a raw NUL
NEVER = (b"\x1b", b"\x07", "\u009b".encode(), "\u202e".encode(), b"\x00", b"\xff")


def _value(key: bytes) -> bytes:
    return b"v" + key


def _fill(port: int) -> None:
    async def put_all() -> None:
        c = await connect("127.0.0.1", port)
        try:
            await c.mput({k: _value(k) for k, _ in HOSTILE})
        finally:
            await c.close()

    asyncio.run(put_all())


def _shell(port: int, env: dict[str, str], script: bytes, *flags: str) -> bytes:
    proc = subprocess.run(
        [sys.executable, "-m", "repl", "--port", str(port), *flags],
        input=script, capture_output=True, env=env, cwd=ROOT, timeout=TIMEOUT, check=False,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    return proc.stdout


def _expected_listing(shown: list[str]) -> bytes:
    width = len(str(len(shown)))
    return "".join(f"{n:>{width}}) {s}\r\n" for n, s in enumerate(shown, 1)).encode()


def test_piped_shell_at_a_terminal_shows_keys_and_values_escaped(
    server: ServerProcess, home_env: dict[str, str]
) -> None:
    """`bitcask-shell < script` with stdout a terminal wrote raw replies: `keys` sent
    the stored ESC ] 0 ; ... BEL to the terminal, which retitled the window."""
    _fill(server.port)
    mget = "mget " + " ".join(shown for _, shown in HOSTILE)
    out = in_pty(
        [sys.executable, "-m", "repl", "--port", str(server.port)],
        home_env,
        stdin=f"keys\n{mget}\n".encode(),
    )
    values = [f'"v{shown[1:]}' for _, shown in HOSTILE]  # b"v" + key, escaped alike
    assert out == _expected_listing([s for _, s in HOSTILE]) + _expected_listing(values)
    assert not any(bad in out for bad in NEVER), out


def test_what_a_terminal_shows_types_back_to_the_same_bytes(
    server: ServerProcess, home_env: dict[str, str]
) -> None:
    _fill(server.port)
    # each key as shown, typed back: get answers its exact value (raw, into a pipe)
    script = "".join(f"get {shown}\n" for _, shown in HOSTILE).encode()
    assert _shell(server.port, home_env, script) == b"".join(_value(k) + b"\n" for k, _ in HOSTILE)
    # and written back under a prefix: the same bytes are stored
    script = "".join(f'put "x{shown[1:]} "y{shown[1:]}\n' for _, shown in HOSTILE).encode()
    assert _shell(server.port, home_env, script) == b"OK\n" * len(HOSTILE)

    async def read_back() -> list[bytes | None]:
        c = await connect("127.0.0.1", server.port)
        try:
            return [await c.get(b"x" + k) for k, _ in HOSTILE]
        finally:
            await c.close()

    assert asyncio.run(read_back()) == [b"y" + k for k, _ in HOSTILE]


def test_piped_shell_output_flags(server: ServerProcess, home_env: dict[str, str]) -> None:
    _fill(server.port)
    key, shown = b"\x1b]0;pwned\x07", r'"\x1b]0;pwned\x07"'
    script = f"get {shown}\n".encode()
    # a pipe gets the exact bytes, a terminal with --raw too; --no-raw formats for a pipe
    assert _shell(server.port, home_env, script) == _value(key) + b"\n"
    assert _shell(server.port, home_env, script, "--no-raw") == b'"v\\x1b]0;pwned\\x07"\n'
    argv = [sys.executable, "-m", "repl", "--port", str(server.port), "--raw"]
    assert in_pty(argv, home_env, stdin=script) == _value(key) + b"\r\n"


def test_cli_at_a_terminal_shows_keys_escaped_and_stores_argv_bytes(
    server: ServerProcess, home_env: dict[str, str]
) -> None:
    """`bitcask keys`/`scan`/`get` at a terminal, and a key given as a non-UTF-8 argv
    word (a file name from a latin-1 system): stored as those bytes, not as U+DC80."""
    _fill(server.port)
    cli = [sys.executable, "-m", "repl.cli", "--port", str(server.port)]
    env = {**home_env, "NO_COLOR": "1"}  # the layout alone (colour is escape sequences)
    shown = [s for _, s in HOSTILE]
    assert in_pty([*cli, "keys"], env) == _expected_listing(shown)
    page = in_pty([*cli, "scan", os.fsdecode(b"\x1b")], env)  # a prefix of three keys
    assert all(s.encode() in page for s in shown if s.startswith('"\\x1b')), page
    assert not any(bad in page for bad in NEVER), page
    assert in_pty([*cli, "get", os.fsdecode(b"\x1b]0;pwned\x07")], env) == (
        b'"v\\x1b]0;pwned\\x07"\r\n'
    )
    assert in_pty([*cli, "put", os.fsdecode(b"f\xe9e"), os.fsdecode(b"\xff")], env) == b"OK\r\n"

    async def read_back() -> tuple[bytes | None, bytes | None]:
        c = await connect("127.0.0.1", server.port)
        try:
            return await c.get(b"f\xe9e"), await c.get("f\udce9e".encode("utf-8", "surrogatepass"))
        finally:
            await c.close()

    assert asyncio.run(read_back()) == (b"\xff", None)


def test_an_unknown_option_is_echoed_escaped(home_env: dict[str, str]) -> None:
    """argparse's 'unrecognized arguments' quoted the word as typed: raw ESC and BEL."""
    word = "--\x1b]0;pwned\x07"
    for module in ("repl.cli", "repl"):
        proc = subprocess.run(
            [sys.executable, "-m", module, word, "get", "k"],
            capture_output=True, env=home_env, cwd=ROOT, timeout=TIMEOUT, check=False,
        )  # fmt: skip
        assert proc.returncode == 2
        assert "unrecognized arguments: --\\x1b]0;pwned\\x07 " in proc.stderr.decode()
        assert b"\x1b" not in proc.stderr and b"\x07" not in proc.stderr


def test_export_to_a_terminal_writes_no_control_character_and_imports_back(
    server: ServerProcess, home_env: dict[str, str], tmp_path: Path
) -> None:
    """`bitcask export -` at a terminal wrote U+009B (a C1 CSI), DEL and U+202E as
    they were (json.dumps escapes only C0 when not ensure_ascii)."""
    _fill(server.port)
    cli = [sys.executable, "-m", "repl.cli", "--port", str(server.port)]
    out = in_pty([*cli, "export", "-"], {**home_env, "TERM": "dumb"})  # no bar
    lines = [x for x in out.split(b"\r\n") if x.startswith(b"{")]
    assert len(lines) == len(HOSTILE), out
    for bad in (*NEVER, b"\x7f"):
        assert not any(bad in x for x in lines), (bad, out)
    assert b'{"key": "\\u202eabc", "value": "v\\u202eabc"}' in lines
    assert b'{"key": "\\u009b1m", "value": "v\\u009b1m"}' in lines
    assert '{"key": "é", "value": "vé"}'.encode() in lines  # printable text stays text
    (tmp_path / "x.jsonl").write_bytes(b"\n".join(lines) + b"\n")
    subprocess.run(
        [*cli, "clear", "all"], capture_output=True, env=home_env, timeout=TIMEOUT, check=True
    )
    proc = subprocess.run(
        [*cli, "import", str(tmp_path / "x.jsonl")],
        capture_output=True, env=home_env, timeout=TIMEOUT, check=False,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr

    async def read_back() -> dict[bytes, bytes]:
        async with connect("127.0.0.1", server.port) as c:
            return dict(
                zip([k for k, _ in HOSTILE], await c.mget([k for k, _ in HOSTILE]), strict=True)
            )

    assert asyncio.run(read_back()) == {k: _value(k) for k, _ in HOSTILE}


def test_summaries_show_a_hostile_file_name_escaped(
    server: ServerProcess, home_env: dict[str, str], tmp_path: Path
) -> None:
    """export, import and backup named their file or directory as it was in the line
    they print at the end (a name from a directory listing can hold ESC and BEL)."""
    _fill(server.port)
    cli = [sys.executable, "-m", "repl.cli", "--port", str(server.port)]
    env = {**home_env, "TERM": "dumb"}  # no progress bar: only the summary line
    name = "\x1b]0;pwned\x07"
    shown = str(tmp_path).encode() + b"/\\x1b]0;pwned\\x07"
    out = in_pty([*cli, "export", str(tmp_path / f"{name}.jsonl")], env)
    assert out.startswith(b"exported 15 keys to " + shown + b".jsonl in "), out
    out = in_pty([*cli, "import", str(tmp_path / f"{name}.jsonl")], env)
    assert out.startswith(b"imported 15 keys from " + shown + b".jsonl in "), out
    out = in_pty([*cli, "backup", str(tmp_path / name)], env)
    assert out.startswith(b"backup of 15 keys: ") and b" to " + shown + b" in " in out, out
    assert (tmp_path / name).is_dir()


@contextlib.contextmanager
def _endpoint_answering(line: bytes) -> Iterator[int]:
    """A Redis-protocol endpoint (a loopback socket) that answers every command of a
    connection with `line`: what a hostile or broken server could send."""
    listener = socket.create_server(("127.0.0.1", 0))
    listener.settimeout(TIMEOUT)

    def serve() -> None:
        with contextlib.suppress(OSError):
            while True:
                conn, _ = listener.accept()
                with conn:
                    while data := conn.recv(65536):
                        conn.sendall(line * data.count(b"*"))

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    try:
        yield listener.getsockname()[1]
    finally:
        # shutdown wakes the thread's accept(); close alone left it waiting out its
        # timeout (60 s of the suite)
        with contextlib.suppress(OSError):
            listener.shutdown(socket.SHUT_RDWR)
        listener.close()
        thread.join(TIMEOUT)
        assert not thread.is_alive()


def test_a_status_reply_that_is_not_utf8_is_printed_not_a_traceback_line(
    home_env: dict[str, str],
) -> None:
    """`bitcask --redis ping` into a pipe failed with '(error) UnicodeEncodeError: 'utf-8'
    codec can't encode character '\\udcff'' when PONG held a byte that is not UTF-8."""
    with _endpoint_answering(b"+P\xffNG\x1b]0;pwned\x07\r\n") as port:
        cli = [sys.executable, "-m", "repl.cli", "--redis", "--port", str(port), "ping"]
        proc = subprocess.run(cli, capture_output=True, env=home_env, timeout=TIMEOUT, check=False)
        assert (proc.returncode, proc.stdout) == (0, b"P\xffNG\x1b]0;pwned\x07\n"), proc.stderr
        out = in_pty(cli, {**home_env, "NO_COLOR": "1"})
        assert out == b"P\\xffNG\\x1b]0;pwned\\x07\r\n"
