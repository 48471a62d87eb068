"""import/export when they stop early: how far they got, and no partial files."""

from __future__ import annotations

import asyncio
import io
import json
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from repl._progress import Progress
from repl._transfer import _open_aside, decode_record, export
from tests.repl.conftest import TIMEOUT, Runner
from tests.serverproc import ServerProcess


def _jsonl(path: Path, n: int, value: str = "v", start: int = 1) -> None:
    with path.open("w") as f:
        for i in range(start, start + n):
            f.write(json.dumps({"key": f"k{i:07d}", "value": value}) + "\n")


def test_a_bad_line_names_its_number_and_reason_and_what_went_in(
    bitcask_cli: Runner, tmp_path: Path
) -> None:
    src = tmp_path / "bad.jsonl"
    _jsonl(src, 2500)
    with src.open("a") as f:
        f.write('{"key": "x", "value_b64": "%%%"}\n')  # line 2501
    _jsonl(tmp_path / "rest.jsonl", 500, start=2502)
    with src.open("a") as f:
        f.write((tmp_path / "rest.jsonl").read_text())
    r = bitcask_cli("import", str(src), "--batch", "100")
    assert r.code == 2
    assert "line 2501: value_b64 is not valid base64" in r.err
    assert "lines 1-2500 are in the store (2500 keys)" in r.err
    assert "nothing from line 2501 on" in r.err
    keys = bitcask_cli("keys", "k").out.split()
    assert keys == [f"k{i:07d}".encode() for i in range(1, 2501)]


def _wait(predicate: object, what: str) -> None:
    deadline = time.monotonic() + TIMEOUT
    while not predicate():  # type: ignore[operator]
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.01)


def _spawn(
    server: ServerProcess, env: dict[str, str], cwd: Path, *args: str
) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "repl.cli", "--port", str(server.port), *args],
        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, env=env, cwd=cwd,
    )  # fmt: skip


# SIGTERM (a scheduler stopping the job) stops them as Ctrl-C does, exit 143: its
# default had killed the process at once, leaving export's `.NAME.partial-PID` file
# and no line saying how far an import got
SIGNALS = pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM], ids=["int", "term"])


@SIGNALS
def test_interrupted_export_leaves_no_file_under_the_final_name(
    server: ServerProcess,
    bitcask_cli: Runner,
    home_env: dict[str, str],
    tmp_path: Path,
    sig: signal.Signals,
) -> None:
    src = tmp_path / "src.jsonl"
    _jsonl(src, 20_000, value="x" * 2000)  # 40 MB: the export takes a while
    assert bitcask_cli("import", str(src)).code == 0
    dst = tmp_path / "out" / "dump.jsonl"
    dst.parent.mkdir()
    proc = _spawn(server, home_env, tmp_path, "export", str(dst))
    try:
        _wait(lambda: any(dst.parent.iterdir()), "the export to start writing")
        proc.send_signal(sig)
        _, err = proc.communicate(timeout=TIMEOUT)
    finally:
        proc.kill()
    assert proc.returncode == 128 + sig, err
    assert err == f"export interrupted: {dst} was not written\n"
    assert list(dst.parent.iterdir()) == []  # neither the final name nor the temporary


@SIGNALS
def test_interrupted_import_says_how_far_it_got(
    server: ServerProcess,
    bitcask_cli: Runner,
    home_env: dict[str, str],
    tmp_path: Path,
    sig: signal.Signals,
) -> None:
    src = tmp_path / "big.jsonl"
    _jsonl(src, 200_000, value="y" * 100)
    proc = _spawn(server, home_env, tmp_path, "import", str(src), "--batch", "50")

    def some_keys() -> bool:
        return bool(bitcask_cli("scan", "k", "", "1").out.split()[1:])

    try:
        _wait(some_keys, "the first keys to arrive")
        proc.send_signal(sig)
        _, err = proc.communicate(timeout=TIMEOUT)
    finally:
        proc.kill()
    assert proc.returncode == 128 + sig, err
    assert err.startswith(f"import of {src} interrupted: lines 1-"), err
    assert err.count("\n") == 1, err
    n = int(err.split("lines 1-")[1].split()[0])
    assert 0 < n < 200_000
    assert bitcask_cli("exists", f"k{n:07d}").code == 0  # line n is really in


def test_open_aside_renames_on_success_and_removes_on_failure(tmp_path: Path) -> None:
    dst = tmp_path / "out.jsonl"
    dst.write_bytes(b"old complete export\n")
    with pytest.raises(KeyboardInterrupt), _open_aside(str(dst)) as f:
        f.write(b"partial")
        raise KeyboardInterrupt
    assert [p.name for p in tmp_path.iterdir()] == ["out.jsonl"]
    assert dst.read_bytes() == b"old complete export\n"
    with _open_aside(str(dst)) as f:
        f.write(b"new\n")
    assert dst.read_bytes() == b"new\n" and len(list(tmp_path.iterdir())) == 1


def test_progress_shows_total_and_eta() -> None:
    bar = Progress("export", 1000, io.StringIO(), enabled=False)
    bar.started -= 10.0  # ten seconds in
    bar.done = 250
    line = bar.render()
    assert "250/1,000" in line and " 25%" in line and "ETA 30s" in line


def test_a_failed_command_erases_its_bar() -> None:
    out = io.StringIO()
    bar = Progress("merge", None, out, enabled=True)
    bar.update(1)
    bar.finish(ok=False)
    assert out.getvalue().endswith("\r\x1b[K")
    bar.finish()  # finished once: nothing more is drawn
    assert out.getvalue().endswith("\r\x1b[K")


class _ExpiringClient:
    """A client whose one key has 0.3 ms left: the export must still be importable."""

    async def stats(self) -> dict[str, int]:
        return {"keys": 1}

    async def scan(self, prefix: bytes = b"", *, count: int = 10) -> Any:
        yield b"k"

    async def mget(self, keys: list[bytes]) -> list[bytes]:
        return [b"v" for _ in keys]

    async def ttl(self, key: bytes) -> float:
        return 0.0003


class _Ctx:
    stderr = io.StringIO()

    async def client(self) -> _ExpiringClient:
        return _ExpiringClient()


def test_export_never_writes_a_ttl_of_zero_that_import_refuses(tmp_path: Path) -> None:
    dst = tmp_path / "dump.jsonl"
    asyncio.run(export(_Ctx(), {"file": str(dst), "prefix": None}))  # type: ignore[arg-type]
    line = dst.read_bytes()
    assert json.loads(line) == {"key": "k", "value": "v", "ttl": 0.001}
    assert decode_record(line, 1) == (b"k", b"v", 0.001)
