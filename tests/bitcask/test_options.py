"""Options: defaults, validation once at construction, keyword overrides at open."""

from __future__ import annotations

from pathlib import Path

import pytest

import bitcask
from bitcask import InvalidOptionsError, Options


def test_defaults_are_the_documented_ones() -> None:
    o = Options()
    assert o.max_key_size == 64 * 1024
    assert o.max_value_size == 64 * 1024 * 1024
    assert o.max_file_size == 128 * 1024 * 1024
    assert o.sync == "always"
    assert o.hint_files is True


@pytest.mark.parametrize(
    "field,value",
    [
        pytest.param("max_file_size", 10, id="file-too-small"),
        pytest.param("max_file_size", 1 << 40, id="file-too-large"),
        pytest.param("max_file_size", "big", id="file-not-int"),
        pytest.param("max_key_size", 0, id="key-zero"),
        pytest.param("max_key_size", True, id="key-bool"),
        pytest.param("max_value_size", -1, id="value-negative"),
        pytest.param("sync", "sometimes", id="sync-unknown"),
        pytest.param("sync_interval_ms", 0, id="interval-zero"),
        pytest.param("merge_trigger", 1.5, id="trigger-above-one"),
        pytest.param("merge_trigger", "x", id="trigger-not-number"),
        pytest.param("merge_min_dead_bytes", -5, id="dead-negative"),
        pytest.param("hint_files", 1, id="hints-not-bool"),
    ],
)
def test_bad_values_raise_invalid_options(field: str, value: object) -> None:
    with pytest.raises(InvalidOptionsError):
        Options(**{field: value})  # type: ignore[arg-type]
    # InvalidOptionsError is also a ValueError, so generic handlers work.
    with pytest.raises(ValueError):
        Options(**{field: value})  # type: ignore[arg-type]


def test_options_are_frozen() -> None:
    o = Options()
    with pytest.raises(AttributeError):
        o.sync = "never"  # type: ignore[misc]


def test_open_accepts_keywords_and_overrides_an_options_object(tmp_path: Path) -> None:
    base = Options(sync="never", max_file_size=4096)
    with bitcask.open(tmp_path / "a", options=base, max_key_size=10) as db:
        assert db.options.sync == "never"
        assert db.options.max_file_size == 4096
        assert db.options.max_key_size == 10
    with bitcask.open(tmp_path / "b", sync="interval", sync_interval_ms=5) as db:
        assert db.options.sync == "interval"


def test_open_rejects_unknown_option_names(tmp_path: Path) -> None:
    with pytest.raises(InvalidOptionsError, match="unknown option"):
        bitcask.open(tmp_path, syncc="never")


def test_max_keys_refuses_new_keys_only(tmp_path: Path) -> None:
    with bitcask.open(tmp_path, sync="never", max_keys=3) as db:
        for k in (b"a", b"b", b"c"):
            db.put(k, b"1")
        with pytest.raises(bitcask.StoreFullError):
            db.put(b"d", b"1")
        with pytest.raises(bitcask.StoreFullError):
            db.write_batch([("put", b"a", b"2", None), ("put", b"e", b"2", None)])
        db.put(b"a", b"2")  # overwrites go on
        assert db.get(b"a") == b"2" and db.get(b"b") == b"1"
        got = db.write_group(
            [
                [("put", b"b", b"3")],
                [("put", b"f", b"3")],
                [("delete", b"c")],
                [("put", b"g", b"1")],
            ]
        )
        assert got[0] == [None] and got[2] == [True]
        assert isinstance(got[1], bitcask.StoreFullError)
        assert got[3] == [None], "the delete earlier in the group made room"
        assert sorted(db.keys()) == [b"a", b"b", b"g"]
        assert db.get(b"f") is None
    with pytest.raises(bitcask.InvalidOptionsError):
        bitcask.Options(max_keys=-1)
