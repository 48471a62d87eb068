"""Configuration as Kubernetes hands it over: BITCASK_* variables from a ConfigMap, and
the token from a Secret mounted as a volume (`..data/` symlinks, a final newline).

A bad value from the environment was refused naming only the flag (`max-connections
must be >= 1`): the operator looked for a flag the command line never had. It now
names the variable and its value (never a token's).
"""

from __future__ import annotations

import http.client
import os
import subprocess
import sys
from pathlib import Path

import pytest

from server.config import ConfigError, ServerConfig
from tests.server.test_container_probes import get
from tests.serverproc import ServerProcess

WAIT = 30.0


@pytest.mark.parametrize(
    ("env", "line"),
    [
        pytest.param(
            {"BITCASK_MAX_CONNECTIONS": "0"},
            "max-connections must be >= 1 (from BITCASK_MAX_CONNECTIONS='0')",
            id="range",
        ),
        pytest.param(
            {"BITCASK_SYNC": "always\n"},  # a ConfigMap value written as a YAML block
            "sync must be one of always, interval, never, not 'always\\n' "
            "(from BITCASK_SYNC='always\\n')",
            id="trailing-newline",
        ),
        pytest.param(
            {"BITCASK_AUTH": "s3cret "},
            "auth token starts or ends with a space: HTTP clients cannot send it "
            "(from BITCASK_AUTH=...)",
            id="token-never-echoed",
        ),
        pytest.param(
            {"BITCASK_PORT": "x"},
            "BITCASK_PORT='x': must be a whole number (as --port)",
            id="not-a-number",
        ),
    ],
)
def test_a_bad_variable_is_one_line_naming_it(
    tmp_path: Path, env: dict[str, str], line: str
) -> None:
    data = tmp_path / "data"
    proc = subprocess.run(
        [sys.executable, "-m", "server", "--data", str(data), "--http-port", "0"],
        capture_output=True,
        text=True,
        timeout=WAIT,
        env={**os.environ, **env},
    )
    assert proc.returncode == 2
    assert proc.stderr == f"bitcask-server: {line}\n"
    assert not data.exists()


def test_a_flag_wins_over_its_variable_and_is_not_blamed_on_it(tmp_path: Path) -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "server", "--data", str(tmp_path), "--max-connections", "0"],
        capture_output=True,
        text=True,
        timeout=WAIT,
        env={**os.environ, "BITCASK_MAX_CONNECTIONS": "10"},
    )
    assert proc.returncode == 2
    assert proc.stderr == "bitcask-server: max-connections must be >= 1\n"


def _project(secret: Path, version: str, token: bytes) -> None:
    """Lay out a Secret volume as the kubelet does: a timestamped directory, `..data`
    pointing at it (swapped atomically on update), and `token -> ..data/token`."""
    target = secret / version
    target.mkdir(parents=True)
    (target / "token").write_bytes(token)
    (target / "token").chmod(0o644)  # the volume's defaultMode
    (secret / "..data.tmp").symlink_to(version)
    (secret / "..data.tmp").rename(secret / "..data")
    if not (secret / "token").is_symlink():
        (secret / "token").symlink_to("..data/token")


def test_a_secret_volume_token_through_its_symlinks(tmp_path: Path) -> None:
    secret = tmp_path / "secret"
    _project(secret, "..2026_12_01_09_00_00.1", b"first-token\n")
    srv = ServerProcess(data=tmp_path / "data", env={"BITCASK_AUTH_FILE": str(secret / "token")})
    srv.start()
    try:
        assert "chmod 600 it (a Kubernetes Secret volume: defaultMode: 0400)" in srv.log()
        assert "first-token" not in srv.log()

        def status(token: str) -> int:
            conn = http.client.HTTPConnection("127.0.0.1", srv.http_port, timeout=WAIT)
            try:
                conn.request("GET", "/kv/absent", headers={"Authorization": f"Bearer {token}"})
                resp = conn.getresponse()
                resp.read()
                return resp.status
            finally:
                conn.close()

        assert status("first-token") == 404  # authenticated: the key is absent
        assert status("second-token") == 401
        # the Secret is updated: the token is read at start, so the running server
        # keeps the first one and the next start takes the second
        _project(secret, "..2026_12_01_10_00_00.2", b"second-token\n")
        assert status("first-token") == 404
        srv.restart()
        assert status("second-token") == 404
        assert status("first-token") == 401
        assert get(srv.http_port, "/readyz")[0] == 200  # probes need no token
    finally:
        assert srv.stop() == 0, srv.log()


def test_only_the_variable_the_refusal_is_about_is_named() -> None:
    # BITCASK_SYNC is a prefix of --sync-interval-ms: the refusal is not about it
    with pytest.raises(ConfigError) as exc:
        ServerConfig.from_args(["--sync-interval-ms", "0"], env={"BITCASK_SYNC": "interval"})
    assert str(exc.value) == "sync-interval-ms must be > 0"
