"""bitcask.open()'s arguments and the types every key/value method takes, checked
against the docstrings (they are the API reference)."""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

import bitcask
from bitcask import Bitcask, InvalidOptionsError, Options


@pytest.mark.parametrize(
    ("kwargs", "needle"),
    [
        pytest.param({"options": {"sync": "never"}}, "bitcask.Options", id="options-dict"),
        pytest.param(
            {"options": {"sync": "never"}, "max_keys": 5}, "bitcask.Options", id="dict+kw"
        ),
        pytest.param({"clock": 5}, "clock must be callable", id="clock-int"),
        pytest.param({"max_keys": True}, "max_keys", id="bool-as-int"),
        pytest.param({"hint_files": 1}, "hint_files", id="int-as-bool"),
        pytest.param({"merge_trigger": float("nan")}, "merge_trigger", id="nan"),
        pytest.param({"max_file_size": 1.5e6}, "max_file_size", id="float-size"),
        pytest.param({"syncc": "never"}, "unknown option(s): syncc", id="unknown-name"),
        pytest.param({"sync": "ALWAYS"}, "sync must be one of", id="sync-case"),
    ],
)
def test_a_bad_option_is_refused_before_the_directory_is_touched(
    tmp_path: Path, kwargs: dict[str, Any], needle: str
) -> None:
    # Before: options={...} failed with AttributeError after the store was locked,
    # and clock=5 opened fine and failed at the first put with a TTL (TypeError).
    where = tmp_path / "store"
    with pytest.raises(InvalidOptionsError, match=needle.replace("(", r"\(").replace(")", r"\)")):
        bitcask.open(where, **kwargs)
    assert not where.exists()


def test_options_and_keywords_combine(tmp_path: Path) -> None:
    base = Options(sync="never", max_keys=3)
    with bitcask.open(tmp_path, options=base, max_key_size=8) as db:
        assert db.options == Options(sync="never", max_keys=3, max_key_size=8)


def test_a_bytes_path_opens_the_same_store(tmp_path: Path) -> None:
    # Before: TypeError "Can't mix strings and bytes in path components", after the
    # directory had been created.
    with bitcask.open(os.fsencode(tmp_path / "s"), sync="never") as db:
        db.put(b"k", b"v")
        assert isinstance(db.path, str)
    with bitcask.open(tmp_path / "s") as db:
        assert db.get(b"k") == b"v"


KEY_FORMS: list[Any] = [
    pytest.param(b"k", id="bytes"),
    pytest.param("k", id="str"),
    pytest.param(bytearray(b"k"), id="bytearray"),
    pytest.param(memoryview(b"k"), id="memoryview"),
]

CALLS: list[Any] = [
    pytest.param(lambda db, x: db.put(x, x), id="put"),
    pytest.param(lambda db, x: db.get(x), id="get"),
    pytest.param(lambda db, x: x in db, id="in"),
    pytest.param(lambda db, x: db.delete(x), id="delete"),
    pytest.param(lambda db, x: db.write_batch([("put", x, x), ("delete", x)]), id="batch"),
    pytest.param(lambda db, x: db.scan(x), id="scan"),
    pytest.param(lambda db, x: db.set(x, x), id="set"),
    pytest.param(lambda db, x: db.append(x, x), id="append"),
    pytest.param(lambda db, x: db.watch(x).release(), id="watch"),
]


@pytest.mark.parametrize("form", KEY_FORMS)
@pytest.mark.parametrize("call", CALLS)
def test_bytes_like_keys_and_values_are_taken_as_their_bytes_everywhere(
    db: Bitcask, form: Any, call: Callable[[Bitcask, Any], object]
) -> None:
    call(db, form)
    db.put(form, form)
    assert db.get(b"k") == b"k" and db[form] == b"k" and list(db.keys()) == [b"k"]


@pytest.mark.parametrize("bad", [5, None, 1.5, ["k"]], ids=["int", "None", "float", "list"])
@pytest.mark.parametrize("call", CALLS)
def test_other_types_are_a_typeerror_everywhere(
    db: Bitcask, bad: Any, call: Callable[[Bitcask, Any], object]
) -> None:
    with pytest.raises(TypeError):
        call(db, bad)
    assert len(db) == 0


def test_str_round_trips_as_utf8_and_a_lone_surrogate_is_a_valueerror(db: Bitcask) -> None:
    db.put("clé", "välue ✓")
    assert db.get("clé") == "välue ✓".encode() and db.get("clé".encode()) == "välue ✓".encode()
    # the message names the argument and the fix, not the codec's UnicodeEncodeError
    for call, what in (
        (lambda: db.put("\udc80", b"v"), "key"),
        (lambda: db.put(b"k", "\udc80"), "value"),
        (lambda: db.get("f\udce9e"), "key"),
        (lambda: "\udc80" in db, "key"),
        (lambda: db.rename("clé", "\udc80"), "key"),
        (lambda: db.scan("\udc80"), "prefix"),
    ):
        with pytest.raises(ValueError, match=rf"^{what} is a str with a lone surrogate") as exc:
            call()
        assert not isinstance(exc.value, UnicodeError) and "pass bytes" in str(exc.value)
    assert list(db.keys()) == ["clé".encode()]


def test_empty_keys_and_values_are_values(tmp_path: Path) -> None:
    with bitcask.open(tmp_path, sync="never") as db:
        db.put(b"", b"")
        db.put(b"e", b"")
        assert db.get(b"") == b"" and b"" in db and db.get(b"e") == b""
        assert db.scan() == [b"", b"e"]
    with bitcask.open(tmp_path, sync="never") as db:
        assert dict(db.items()) == {b"": b"", b"e": b""}


def test_values_at_and_past_max_value_size(tmp_path: Path) -> None:
    limit = 1 << 20
    with bitcask.open(tmp_path, sync="never", max_value_size=limit, max_file_size=1 << 16) as db:
        db.put(b"big", b"x" * limit)
        with pytest.raises(bitcask.ValueTooLargeError):
            db.put(b"big", b"y" * (limit + 1))
        with pytest.raises(bitcask.ValueTooLargeError):
            db.write_batch([("put", b"a", b"1"), ("put", b"big", b"y" * (limit + 1))])
        assert db.get(b"big") == b"x" * limit and db.get(b"a") is None
    with bitcask.open(tmp_path) as db:
        assert db.get(b"big") == b"x" * limit


def test_context_manager_closes_on_error_and_close_is_idempotent(tmp_path: Path) -> None:
    with pytest.raises(RuntimeError), bitcask.open(tmp_path, sync="never") as db:
        db.put(b"k", b"v")
        raise RuntimeError("boom")
    db.close()
    with bitcask.open(tmp_path) as again:  # the lock went with the with-block
        assert again.get(b"k") == b"v"


def test_open_close_three_hundred_times_leaks_no_descriptor_thread_or_mapping(
    tmp_path: Path,
) -> None:
    import threading

    def counts() -> tuple[int, int, int]:
        with open("/proc/self/maps") as f:
            maps = sum(1 for line in f if str(tmp_path) in line)
        return len(os.listdir("/proc/self/fd")), threading.active_count(), maps

    if not os.path.isdir("/proc/self/fd"):
        pytest.skip("needs /proc")
    before = counts()
    # 300 rounds: a leak of one descriptor, thread or mapping per open shows 300 times
    # over (1,000 rounds took 6.6 s of a suite that must stay under 10 minutes)
    for i in range(300):
        db = bitcask.open(tmp_path, sync=("interval", "never")[i % 2])
        db.put(b"k%d" % (i % 10), b"v" * 100)
        if i % 50 == 49:
            db.merge()  # every open starts a file: keep the store small
        if i % 4 == 0:
            ro = bitcask.open(tmp_path, readonly=True)
            ro.get(b"k1")
            ro.close()
        db.close()
    assert counts() == before


def test_locked_by_this_process_says_so(tmp_path: Path) -> None:
    # A store still open (referenced) in this process: the next open in a notebook
    # used to name the process's own pid as if it were another process. (A store
    # dropped without close() is closed: tests/bitcask/test_dropped.py.)
    db = bitcask.open(tmp_path, sync="never")
    try:
        with pytest.raises(bitcask.StoreLockedError, match="this process") as info:
            bitcask.open(tmp_path)
        assert info.value.pid == os.getpid()
    finally:
        db.close()


_MERGING_WRITER = """
import os, sys, time, bitcask
db = bitcask.open(sys.argv[1], sync="never", max_file_size=8192,
                  merge_min_dead_bytes=0, merge_trigger=0.3)
print("ready", flush=True)
end = time.monotonic() + float(sys.argv[2])
i = 0
while time.monotonic() < end:
    i += 1
    db.put(b"k%d" % (i % 300), os.urandom(1 + i % 97))
    if i % 3 == 0:
        db.delete(b"k%d" % ((i * 7) % 300))
    if i % 1000 == 0:
        try:
            db.merge()
        except bitcask.MergeInProgressError:
            pass
db.close()
"""


@pytest.mark.parametrize("hints", [True, False], ids=["hints", "scan"])
def test_readonly_opens_beside_a_merging_writer_process(tmp_path: Path, hints: bool) -> None:
    # The writer rotates every few records, seals (truncates) files, merges and
    # deletes them while this process opens the store readonly again and again and
    # reads every value: never a crash (SIGBUS), never an error but the documented
    # "kept changing while loading".
    import subprocess
    import sys
    import time

    root = Path(__file__).resolve().parents[2]
    writer = subprocess.Popen(
        [sys.executable, "-c", _MERGING_WRITER, str(tmp_path), "3"],
        cwd=root,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert writer.stdout is not None and writer.stdout.readline().strip() == "ready"
        opens = 0
        deadline = time.monotonic() + 2.5
        while time.monotonic() < deadline:
            try:
                with bitcask.open(tmp_path, readonly=True, hint_files=hints) as ro:
                    for key in list(ro.keys()):
                        ro.get(key)
                opens += 1
            except bitcask.BitcaskError as exc:
                assert "kept changing" in str(exc)
        assert opens > 0
    finally:
        assert writer.wait(30) == 0


@pytest.mark.parametrize("limit", [1.5, True, "2", None], ids=["float", "bool", "str", "None"])
def test_scan_limit_must_be_an_int(db: Bitcask, limit: Any) -> None:
    # Before: 1.5 returned two keys, True one, "2" and None a bare comparison error.
    for i in range(5):
        db.put(b"k%d" % i, b"v")
    with pytest.raises(TypeError, match="limit must be an int"):
        db.scan(limit=limit)
    assert db.scan(limit=2) == [b"k0", b"k1"]
