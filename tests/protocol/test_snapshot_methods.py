"""The snapshot methods' params: what validate_params accepts and refuses."""

from __future__ import annotations

from typing import Any

import pytest

from protocol import ErrorCode, ProtocolError, validate_params
from protocol.methods import SNAPSHOT_MAX_CHUNK


@pytest.mark.parametrize(
    ("method", "params", "normalised"),
    [
        pytest.param("snapshot_begin", [], (None,), id="begin"),
        pytest.param("snapshot_begin", [{"timeout": 5}], (5.0,), id="begin-timeout"),
        pytest.param(
            "snapshot_read",
            ["id-1", "0000000001.data", 0, SNAPSHOT_MAX_CHUNK],
            ("id-1", "0000000001.data", 0, SNAPSHOT_MAX_CHUNK),
            id="read",
        ),
        pytest.param(
            "snapshot_read",
            [b"id-1", b"0000000001.hint", 7, 1],
            ("id-1", "0000000001.hint", 7, 1),
            id="read-bin",
        ),
        pytest.param("snapshot_end", ["id-1"], ("id-1",), id="end"),
    ],
)
def test_good(method: str, params: list[Any], normalised: tuple[Any, ...]) -> None:
    assert validate_params(method, params) == normalised


@pytest.mark.parametrize(
    ("method", "params"),
    [
        pytest.param("snapshot_begin", [{"timeout": 0}], id="begin-timeout-zero"),
        pytest.param("snapshot_begin", [{"timeout": True}], id="begin-timeout-bool"),
        pytest.param("snapshot_begin", [{"timeout": float("nan")}], id="begin-timeout-nan"),
        pytest.param("snapshot_begin", [{"tmeout": 1}], id="begin-typo"),
        pytest.param("snapshot_read", ["id", "x.data", 0], id="read-short"),
        pytest.param("snapshot_read", ["id", "../LOCK", 0, 10], id="read-path"),
        pytest.param("snapshot_read", ["id", ".hidden", 0, 10], id="read-dotfile"),
        pytest.param("snapshot_read", ["id", "x.data", -1, 10], id="read-negative-offset"),
        pytest.param("snapshot_read", ["id", "x.data", 0, 0], id="read-zero-length"),
        pytest.param("snapshot_read", ["id", "x.data", 0, SNAPSHOT_MAX_CHUNK + 1], id="read-huge"),
        pytest.param("snapshot_read", [1, "x.data", 0, 10], id="read-int-id"),
        pytest.param("snapshot_end", [""], id="end-empty-id"),
        pytest.param("snapshot_end", ["x" * 129], id="end-long-id"),
    ],
)
def test_bad(method: str, params: list[Any]) -> None:
    with pytest.raises(ProtocolError) as info:
        validate_params(method, params)
    assert info.value.code is ErrorCode.INVALID_PARAMS
