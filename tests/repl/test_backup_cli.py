"""`bitcask backup DIR [--force]` end to end: the real CLI against a real server."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

import bitcask
from tests.bitcask._syscall_trace import Trace, require_strace, strace_argv
from tests.repl.conftest import ROOT, Runner
from tests.serverproc import ServerProcess


def fill(bitcask_cli: Runner, n: int, size: int) -> dict[bytes, bytes]:
    lines = b"".join(b'{"key": "k%04d", "value": "%s"}\n' % (i, b"v" * size) for i in range(n))
    assert bitcask_cli("import", "-", input=lines).code == 0
    return {b"k%04d" % i: b"v" * size for i in range(n)}


def contents(path: Path) -> dict[bytes, bytes]:
    with bitcask.open(path) as db:
        assert db.recovery.scanned_files == 0 and db.recovery.events == ()
        return dict(db.items())


def test_backup_then_refuse_non_empty_then_force(bitcask_cli: Runner, tmp_path: Path) -> None:
    model = fill(bitcask_cli, 200, 100)
    dest = tmp_path / "backups" / "one"
    ok = bitcask_cli("backup", str(dest))
    assert ok.code == 0, ok.err
    assert "backup of 200 keys" in ok.err and str(dest) in ok.err
    assert contents(dest) == model
    again = bitcask_cli("backup", str(dest))
    assert again.code == 2 and "not empty" in again.err and "force" in again.err
    forced = bitcask_cli("backup", str(dest), "--rate", "100", "--force")
    assert forced.code == 0, forced.err
    assert contents(dest) == model
    assert sorted(p.name for p in dest.parent.iterdir()) == ["one"]


def test_backup_usage_errors(bitcask_cli: Runner, tmp_path: Path) -> None:
    bad = bitcask_cli("backup", str(tmp_path / "x"), "--forse")
    assert bad.code == 2 and "--force" in bad.err
    assert not (tmp_path / "x").exists()
    assert bitcask_cli("backup").code == 2
    assert bitcask_cli("backup", str(tmp_path / "x"), "--rate", "0").code == 2
    assert "backup DIR [--force]" in bitcask_cli("backup", "--help").text


def test_backup_connection_refused_is_one_clear_line(
    home_env: dict[str, str], tmp_path: Path, server: ServerProcess
) -> None:
    server.stop()
    argv = ["-m", "repl.cli", "--port", str(server.port), "backup", str(tmp_path / "b")]
    proc = subprocess.run(
        [sys.executable, *argv], capture_output=True, env=home_env, cwd=ROOT, timeout=60
    )
    assert proc.returncode == 2
    assert proc.stderr.decode().count("\n") == 1
    assert not (tmp_path / "b").exists()


@contextlib.contextmanager
def small_tmpfs(path: Path, size: str) -> Iterator[Path]:
    """A tmpfs of `size` at `path` (root only; skipped elsewhere, with the reason)."""
    if os.geteuid() != 0:
        pytest.skip("mounting a small tmpfs needs root")
    path.mkdir()
    mounted = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(path)], capture_output=True
    )
    if mounted.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {mounted.stderr.decode().strip()}")
    try:
        yield path
    finally:
        subprocess.run(["umount", str(path)], check=False)


def test_full_local_disk_fails_cleanly(bitcask_cli: Runner, tmp_path: Path) -> None:
    fill(bitcask_cli, 600, 1000)  # ~600 KB of data plus hints
    with small_tmpfs(tmp_path / "small", "256k") as small:
        dest = small / "backup"
        res = bitcask_cli("backup", str(dest))
        assert res.code == 2
        assert "No space left on device" in res.err
        assert list(small.iterdir()) == []  # neither the backup nor its temp dir


@pytest.mark.parametrize(
    ("sigs", "older"),
    [
        pytest.param((signal.SIGTERM,), False, id="sigterm"),
        # the second Ctrl-C lands in the first one's cleanup: it must not cut it short
        pytest.param((signal.SIGINT, signal.SIGINT), False, id="ctrl-c-twice"),
        # --force over a complete older backup: that one stays, and the line says so
        pytest.param((signal.SIGINT,), True, id="ctrl-c-force"),
    ],
)
def test_sigterm_mid_backup_leaves_nothing(
    bitcask_cli: Runner,
    server: ServerProcess,
    home_env: dict[str, str],
    tmp_path: Path,
    sigs: tuple[int, ...],
    older: bool,
) -> None:
    # A nightly job stopped by its scheduler gets SIGTERM: Python's default ended the
    # process at once and the hidden `.DIR.backup-*` with the partial copy stayed in
    # the backup volume (the retention's `ls */` never sees it), run after run.
    model = fill(bitcask_cli, 400, 5000)  # ~2 MB: at 0.2 MB/s the copy takes ~10 s
    parent = tmp_path / "backups"
    parent.mkdir()
    if older:
        assert bitcask_cli("backup", str(parent / "b")).code == 0
    argv = ["-m", "repl.cli", "--port", str(server.port), "backup", str(parent / "b")]
    proc = subprocess.Popen(
        [sys.executable, *argv, "--rate", "0.2", *(["--force"] if older else [])],
        env=home_env,
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    try:
        deadline = time.monotonic() + 60
        while not any(
            p.is_dir() and any(p.iterdir()) for p in parent.iterdir() if p.name != "b" or not older
        ):
            assert time.monotonic() < deadline and proc.poll() is None, "no copy began"
            time.sleep(0.05)
        for sig in sigs:
            proc.send_signal(sig)
            time.sleep(0.02)
        _, err = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(10)
    assert proc.returncode == 128 + sigs[0], err
    # the line Ctrl-C gives (repl/_signals.py: both stop a command the same way)
    kept = " (the backup already there is unchanged)" if older else ""
    assert err.decode() == (
        f"backup to {str(parent / 'b')!r} interrupted: nothing was kept{kept} (run it again)\n"
    )
    assert [p.name for p in parent.iterdir()] == (["b"] if older else [])
    if older:
        assert contents(parent / "b") == model
    # the server's pins went with the connection: a new backup is complete
    again = bitcask_cli("backup", str(parent / "c"))
    assert again.code == 0, again.err


def test_a_backup_into_new_directories_is_durable_when_it_returns(
    bitcask_cli: Runner, home_env: dict[str, str], server: ServerProcess, tmp_path: Path
) -> None:
    # Power loss keeps a new name only once its parent directory is fsynced: `backup`
    # into new/a/one must fsync tmp_path (for new), new (for a) and a (for one) before
    # it returns; it made new/ and a/ with mkdir(parents=True) and fsynced only a/.
    strace = require_strace()
    model = fill(bitcask_cli, 20, 10)
    dest = tmp_path / "new" / "a" / "one"
    log = tmp_path / "trace"
    conn = ["--port", str(server.port), "--http-port", str(server.http_port)]
    proc = subprocess.run(
        [*strace_argv(strace, log), sys.executable, "-m", "repl.cli", *conn, "backup", str(dest)],
        capture_output=True,
        env=home_env,
        cwd=tmp_path,
        timeout=60,
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert contents(dest) == model
    trace = Trace(log)
    end = max(e.end for e in trace.where(lambda e: True))
    wrong = []
    for level in (dest.parent.parent, dest.parent):
        made = trace.created(str(level))
        assert made, f"{level} was not created under the trace"
        if not trace.synced(str(level.parent), made[-1].end, end + 1):
            wrong.append(f"{level} created, {level.parent} never fsynced after")
    (installed,) = [e for e, _, to in trace.renames() if to == str(dest)]
    if not trace.synced(str(dest.parent), installed.end, end + 1):
        wrong.append(f"{dest} renamed in, {dest.parent} never fsynced after")
    assert wrong == []
