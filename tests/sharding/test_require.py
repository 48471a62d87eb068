"""A missing peer binary skips with the package to install, and fails under CI=true."""

from __future__ import annotations

import pytest

from tests.sharding import conftest


def test_missing_binary_skips_naming_the_package(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(conftest.shutil, "which", lambda *a, **k: None)
    monkeypatch.delenv("CI", raising=False)
    with pytest.raises(pytest.skip.Exception, match=r"apt-get install nutcracker"):
        conftest.require("nutcracker", "nutcracker")


def test_missing_binary_fails_under_ci(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(conftest.shutil, "which", lambda *a, **k: None)
    monkeypatch.setenv("CI", "true")
    with pytest.raises(pytest.fail.Exception, match=r"CI=true: redis-server not installed"):
        conftest.require("redis-server", "redis-server")


def test_sbin_is_searched_too(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PATH", "/nonexistent")  # Debian's nutcracker is /usr/sbin/nutcracker
    found = conftest.require("nutcracker", "nutcracker")
    assert found == conftest.shutil.which("nutcracker", path=conftest.SBIN)
