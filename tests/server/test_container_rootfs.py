"""bitcask-server with a read-only root file system and one writable data volume, as
`readOnlyRootFilesystem: true` runs it: no HOME, no writable /tmp, nothing but --data.

The server runs in its own mount namespace (`unshare --mount`) where `/` is remounted
read-only and a small tmpfs is the data volume; it must start, take writes, merge,
rotate, write its hints and stop cleanly, writing nothing anywhere else (a write
elsewhere fails with EROFS, which would show as an error or a failed stop). Run as an
arbitrary uid with gid 0 (OpenShift) when that uid can run this interpreter; checked
by hand with strace on every open/mkdir/rename outside the volume (only Python's own
__pycache__ attempts, refused and ignored by the interpreter).
"""

from __future__ import annotations

import os
import shlex
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.protocol._redis_server import require_binary
from tests.server.test_container_probes import get
from tests.server.wire import Conn
from tests.serverproc import ServerProcess

WAIT = 30.0
UID = 1000770000  # an OpenShift-style arbitrary uid; its group is 0
# Where the data volume is mounted inside the namespace (hidden from everyone else):
# a directory any uid can reach, unlike pytest's tmp_path under a 0700 parent.
VOLUME = Path("/mnt")


def _can_run_as(uid: int) -> bool:
    setpriv = require_binary("setpriv", "util-linux")
    probe = subprocess.run(
        [setpriv, f"--reuid={uid}", "--regid=0", "--clear-groups", sys.executable, "-c", ""],
        capture_output=True,
        timeout=WAIT,
    )
    return probe.returncode == 0


@dataclass
class ReadOnlyRootServer(ServerProcess):
    """The server in a mount namespace: `/` read-only, a writable tmpfs on VOLUME as the
    data volume (`data` only names where the test keeps the server's log)."""

    uid: int | None = None

    def argv(self) -> list[str]:
        argv = super().argv()
        argv[argv.index("--data") + 1] = str(VOLUME / "data")
        run_as = ["setpriv", f"--reuid={self.uid}", "--regid=0", "--clear-groups"]
        mode = f"uid={self.uid},gid=0,mode=0770" if self.uid is not None else "mode=0700"
        script = "; ".join(
            [
                "set -e",
                "mount --make-rprivate /",
                f"mount -t tmpfs -o size=8m,{mode} tmpfs {VOLUME}",
                "mount -o remount,bind,ro /",
                "exec env -i PATH=/usr/bin:/bin PYTHONUNBUFFERED=1 BITCASK_DRAIN_SECONDS=0 "
                + shlex.join([*(run_as if self.uid is not None else []), *argv]),
            ]
        )
        return [
            "unshare",
            "--mount",
            "--pid",
            "--fork",
            "--kill-child",
            "--mount-proc",
            "sh",
            "-c",
            script,
        ]

    def stop(self, sig: int = 15, timeout: float = WAIT) -> int:
        """SIGTERM the server itself (unshare forwards nothing); its exit code."""
        assert self.proc is not None
        shell = int(Path(f"/proc/{self.proc.pid}/task/{self.proc.pid}/children").read_text())
        os.kill(shell, sig)  # the shell exec'd setpriv, which exec'd the server
        code = self.proc.wait(timeout)
        self.proc = None
        return code


@pytest.fixture
def rootfs_lab() -> None:
    require_binary("unshare", "util-linux")
    probe = subprocess.run(
        ["unshare", "--mount", "sh", "-c", "mount --make-rprivate / && "
         "mount -o remount,bind,ro /"],
        capture_output=True,
        timeout=WAIT,
    )  # fmt: skip
    if probe.returncode != 0 or not VOLUME.is_dir():
        reason = f"cannot remount / read-only in a mount namespace, or no {VOLUME} (root?)"
        if os.environ.get("CI") == "true":
            pytest.fail(reason + ", required under CI=true")
        pytest.skip(reason)


def test_a_read_only_root_with_one_data_volume(rootfs_lab: None, tmp_path: Path) -> None:
    srv = ReadOnlyRootServer(
        data=tmp_path / "data",
        uid=UID if _can_run_as(UID) else None,
        extra=["--max-file-size", "65536"],
    )
    srv.start()
    try:
        with Conn(srv.port) as c:
            for i in range(300):  # several rotations
                assert c.call("put", b"k%d" % (i % 50), b"v%d" % i) is True
            report = c.call("merge")
            assert report["records_copied"] >= 1, report
            assert c.call("get", b"k49") == b"v299"
        assert get(srv.http_port, "/readyz")[0] == 200
        assert get(srv.http_port, "/metrics")[0] == 200
    finally:
        code = srv.stop()
    log = srv.log()
    assert code == 0, log
    assert "stopped (clean)" in log and "Traceback" not in log and "ERROR" not in log, log
    assert not (tmp_path / "data").exists()  # the store lived on the volume only
