"""Fixtures of the Node client tests: node and npm present (else a skip naming the
Debian packages, a failure under CI=true)."""

from __future__ import annotations

import os

import pytest

from tests.node._npm import missing_tools


@pytest.fixture
def node_tools() -> None:
    reason = missing_tools()
    if reason is not None:
        if os.environ.get("CI") == "true":
            pytest.fail(reason + ", required under CI=true")
        pytest.skip(reason)
