"""check / repair / merge DIR refuse what is not a store, and create nothing."""

from __future__ import annotations

from pathlib import Path

import pytest

import bitcask
from tests.repl.conftest import Runner


@pytest.mark.parametrize("command", ["check", "repair", "merge"])
def test_an_empty_directory_is_refused_and_left_empty(
    bitcask_cli: Runner, tmp_path: Path, command: str
) -> None:
    empty = tmp_path / "empty"
    empty.mkdir()
    r = bitcask_cli(command, str(empty), connect=False)
    assert r.code == 2
    assert "not a bitcask data directory" in r.err and "has no data files" in r.err
    assert list(empty.iterdir()) == []  # no LOCK, no data file


@pytest.mark.parametrize("command", ["check", "repair"])
def test_a_directory_of_other_files_and_a_plain_file_are_refused(
    bitcask_cli: Runner, tmp_path: Path, command: str
) -> None:
    other = tmp_path / "photos"
    other.mkdir()
    (other / "cat.jpg").write_bytes(b"\xff\xd8")
    r = bitcask_cli(command, str(other), connect=False)
    assert r.code == 2 and "not a bitcask data directory" in r.err
    assert [p.name for p in other.iterdir()] == ["cat.jpg"]
    r = bitcask_cli(command, str(other / "cat.jpg"), connect=False)
    assert r.code == 2 and "not a directory" in r.err
    r = bitcask_cli(command, str(tmp_path / "missing"), connect=False)
    assert r.code == 2 and "no such directory" in r.err


def test_a_real_store_is_still_checked(bitcask_cli: Runner, tmp_path: Path) -> None:
    with bitcask.open(tmp_path / "store") as db:
        db.put(b"k", b"v")
    r = bitcask_cli("check", str(tmp_path / "store"), connect=False)
    assert r.code == 0 and ": OK" in r.text
