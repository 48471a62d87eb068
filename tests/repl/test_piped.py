"""Piped bitcask-shell, pipelined: results exactly as if the lines ran one by one."""

from __future__ import annotations

import collections
import json
import os
import random
import select
import subprocess
import sys
import threading
import time

from repl._piped import _Input
from tests.repl.conftest import TIMEOUT
from tests.serverproc import ServerProcess


def _piped(port: int, env: dict[str, str], script: bytes) -> subprocess.CompletedProcess[bytes]:
    return subprocess.run(
        [sys.executable, "-m", "repl", "--port", str(port)],
        input=script, capture_output=True, env=env, timeout=TIMEOUT, check=False,
    )  # fmt: skip


def test_many_lines_in_order_with_errors_on_stderr(
    server: ServerProcess, home_env: dict[str, str]
) -> None:
    rng = random.Random(12)
    model: dict[str, str] = {}
    lines, out, err = [], [], []
    for i in range(5000):  # far more than the window: it fills and drains many times
        key = f"k{rng.randrange(50)}"
        op = rng.random()
        if op < 0.45:
            lines.append(f"put {key} v{i}")
            model[key] = f"v{i}"
            out.append("OK")
        elif op < 0.85:
            lines.append(f"get {key}")
            out.append(model.get(key, ""))
        elif op < 0.9:
            lines.append(f"del {key}")
            out.append("1" if model.pop(key, None) is not None else "0")
        elif op < 0.95:
            lines.append(f"bogus{i}")
            err.append(f"(error) unknown command 'bogus{i}' (try: help)")
        else:
            lines.append(f"put {key}")  # a usage error in the middle of the stream
            err.append("(error) 'put' needs VALUE (usage: put KEY VALUE [TTL SECONDS])")
    r = _piped(server.port, home_env, ("\n".join(lines) + "\n").encode())
    assert r.stdout.decode().splitlines() == out
    assert r.stderr.decode().splitlines() == err
    assert r.returncode == 2


def test_barriers_see_exactly_the_lines_before_them(
    server: ServerProcess, home_env: dict[str, str]
) -> None:
    script = "".join(f"put a{i} {i}\n" for i in range(300))
    script += "keys a\n"  # several scan calls: runs alone, after the 300 puts
    script += "".join(f"put b{i} {i}\n" for i in range(300))
    script += "quit\nput after-quit 1\n"
    r = _piped(server.port, home_env, script.encode())
    assert r.returncode == 0, r.stderr
    got = r.stdout.decode().splitlines()
    assert got[:300] == ["OK"] * 300
    assert sorted(got[300:600]) == sorted(f"a{i}" for i in range(300))
    assert got[600:] == ["OK"] * 300
    r = _piped(server.port, home_env, b"exists after-quit\nexists b299\n")
    assert r.stdout == b"0\n1\n"


def test_all_ok_is_exit_0_and_a_final_line_without_newline_runs(
    server: ServerProcess, home_env: dict[str, str]
) -> None:
    r = _piped(server.port, home_env, b"put x 1\n# a comment\n\nget x")
    assert (r.returncode, r.stdout, r.stderr) == (0, b"OK\n1\n", b"")


def test_a_coprocess_gets_each_answer_before_sending_more(
    server: ServerProcess, home_env: dict[str, str]
) -> None:
    proc = subprocess.Popen(
        [sys.executable, "-m", "repl", "--port", str(server.port)],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, env=home_env,
    )  # fmt: skip
    assert proc.stdin is not None and proc.stdout is not None
    try:
        for i in range(3):  # keys and help are barriers: run alone, answered at once too
            proc.stdin.write(f"put c {i}\nget c\nkeys c\n".encode())
            proc.stdin.flush()
            got = b""
            deadline = time.monotonic() + TIMEOUT
            while got.count(b"\n") < 3:  # the answers come while stdin stays open
                left = deadline - time.monotonic()
                assert left > 0, f"no answer to line {i} while stdin is open: {got!r}"
                ready, _, _ = select.select([proc.stdout], [], [], left)
                if ready:
                    got += os.read(proc.stdout.fileno(), 4096)
            assert got == f"OK\n{i}\nc\n".encode()
        proc.stdin.close()
        assert proc.wait(timeout=TIMEOUT) == 0
    finally:
        proc.kill()


def test_puts_are_pipelined_not_sent_one_by_one(
    server: ServerProcess, home_env: dict[str, str]
) -> None:
    """One at a time, every put is a group commit of its own (the next is sent only
    after the answer); pipelined, the server finds many queued at once."""

    def group_commits() -> int:
        r = _piped(server.port, home_env, b"stats\n")
        return int(json.loads(r.stdout)["server"]["group_commits"])

    before = group_commits()
    r = _piped(server.port, home_env, b"".join(b"put k%d v\n" % i for i in range(2000)))
    assert r.returncode == 0 and r.stdout == b"OK\n" * 2000
    assert group_commits() - before < 1000


def _split_input(chunks: list[bytes]) -> list[bytes]:
    """The lines `_Input` makes of `chunks`, as if os.read had returned them."""
    inp = _Input.__new__(_Input)  # no reader thread: the chunks are handed in directly
    inp._room = threading.Semaphore(0)
    inp._lines = collections.deque()
    inp._partial = []
    inp._eof = False
    for chunk in [*chunks, b""]:
        inp._take(chunk)
    return list(inp._lines)


def test_lines_are_the_same_however_the_input_is_chunked() -> None:
    rng = random.Random(5)
    data = b"".join(
        rng.choice([b"\n", b"\r\n", b"put k v\n", b"x" * rng.randrange(1, 300), b"\xff\x00"])
        for _ in range(2000)
    )
    want = data.split(b"\n")
    want = want if want[-1] else want[:-1]
    for _ in range(20):
        cuts = sorted(rng.sample(range(1, len(data)), rng.randrange(1, 400)))
        chunks = [data[a:b] for a, b in zip([0, *cuts], [*cuts, len(data)], strict=True)]
        assert _split_input(chunks) == want
    assert _split_input([b"a\n", b"\n", b"b"]) == [b"a", b"", b"b"]
    assert _split_input([b"a", b"b", b"c\nd", b"e\n"]) == [b"abc", b"de"]


def test_a_line_of_many_chunks_is_joined_once(
    server: ServerProcess, home_env: dict[str, str]
) -> None:
    """A 16 MiB value on one line arrives in 256 reads; the partial line used to be
    copied again with every read (quadratic: a 50 MB line took 41 s, now 6 s)."""
    value = b"v" * (16 << 20)
    r = _piped(server.port, home_env, b"put big " + value + b"\r\nget big\nstrlen\n")
    assert r.stdout == b"OK\n" + value + b"\n"
    assert r.stderr.startswith(b"(error) unknown command 'strlen'"), r.stderr
    assert r.returncode == 2
