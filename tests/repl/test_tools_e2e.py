"""import/export of 10,000 binary keys, and the offline tools on a stopped server's data."""

from __future__ import annotations

import base64
import json
import random
from pathlib import Path

import bitcask
from tests.repl.conftest import Runner
from tests.serverproc import ServerProcess

N = 10_000


def _pairs(seed: int = 7) -> dict[bytes, bytes]:
    rng = random.Random(seed)
    pairs: dict[bytes, bytes] = {}
    while len(pairs) < N:
        key = b"k%05d:" % len(pairs) + rng.randbytes(rng.randrange(0, 12))
        pairs[key] = rng.randbytes(rng.randrange(0, 64))
    pairs[b"text"] = "plain \u2713".encode()
    return pairs


def _read(path: Path) -> dict[bytes, bytes]:
    out: dict[bytes, bytes] = {}
    for line in path.read_bytes().splitlines():
        obj = json.loads(line)
        key = obj["key"].encode() if "key" in obj else base64.b64decode(obj["key_b64"])
        value = obj["value"].encode() if "value" in obj else base64.b64decode(obj["value_b64"])
        out[key] = value
    return out


def _write(path: Path, pairs: dict[bytes, bytes]) -> None:
    with path.open("w") as f:
        for key, value in pairs.items():
            f.write(json.dumps({
                "key_b64": base64.b64encode(key).decode(),
                "value_b64": base64.b64encode(value).decode(),
            }) + "\n")  # fmt: skip


def test_import_export_round_trip_of_10000_binary_keys(bitcask_cli: Runner, tmp_path: Path) -> None:
    pairs = _pairs()
    src, dst = tmp_path / "in.jsonl", tmp_path / "out.jsonl"
    _write(src, pairs)
    r = bitcask_cli("import", str(src), "--batch", "250")
    assert r.code == 0, r.err
    assert r.err.startswith(f"imported {len(pairs)} keys from {src}")
    r = bitcask_cli("export", str(dst))
    assert r.code == 0, r.err
    assert r.err.startswith(f"exported {len(pairs)} keys to {dst}")
    assert _read(dst) == pairs
    lines = dst.read_bytes().splitlines()
    assert json.loads(lines[-1]) == {"key": "text", "value": "plain \u2713"}  # text stays text
    keys = [k for k in _read(dst)]
    assert keys == sorted(keys)  # byte order


def test_export_to_stdout_with_a_prefix_and_import_from_stdin(bitcask_cli: Runner) -> None:
    data = b'{"key": "a:1", "value": "x"}\n{"key": "a:2", "value": "y", "ttl": 60}\n\n{"key": "b", "value": "z"}\n'
    r = bitcask_cli("import", "-", input=data)
    assert r.code == 0 and "imported 3 keys from stdin" in r.err
    r = bitcask_cli("export", "-", "a:")
    first, second = (json.loads(line) for line in r.out.splitlines())
    assert first == {"key": "a:1", "value": "x"}  # no TTL, no "ttl" field
    assert second.keys() == {"key", "value", "ttl"} and 0 < second["ttl"] <= 60
    assert 0 < float(bitcask_cli("ttl", "a:2").out) <= 60
    # the exported TTL goes back in: an expiring key stays expiring after a round trip
    bitcask_cli("delete", "a:2")
    r = bitcask_cli("import", "-", input=r.out)
    assert r.code == 0 and "imported 2 keys" in r.err
    assert 0 < float(bitcask_cli("ttl", "a:2").out) <= 60


def test_import_stops_at_a_bad_line(bitcask_cli: Runner, tmp_path: Path) -> None:
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"key": "ok", "value": "1"}\n{"key": "broken"\n')
    r = bitcask_cli("import", str(bad))
    assert r.code == 2 and "line 2: not JSON" in r.err
    r = bitcask_cli("import", str(tmp_path / "missing.jsonl"))
    assert r.code == 2 and "no such file" in r.err


def test_offline_check_repair_merge(server: ServerProcess, bitcask_cli: Runner) -> None:
    bitcask_cli("mput", *[x for i in range(200) for x in (f"key{i}", "v" * 100)])
    bitcask_cli("mput", *[x for i in range(200) for x in (f"key{i}", "w" * 100)])
    data = str(server.data)
    r = bitcask_cli("repair", data, connect=False)
    assert r.code == 2 and "is in use by process" in r.err and "stop the server" in r.err
    server.stop()
    r = bitcask_cli("check", data, connect=False)
    assert r.code == 0, r.err
    assert r.text.startswith(f"check {data}: OK")
    r = bitcask_cli("merge", data, connect=False)
    assert r.code == 0, r.err
    assert r.text.startswith("merge: ")
    r = bitcask_cli("repair", data, connect=False)
    assert r.code == 0 and "0 tails truncated, 0 ranges dropped" in r.text
    with bitcask.open(data, readonly=True) as db:
        assert db.get(b"key199") == b"w" * 100
    # damage the tail of the newest data file: check says so (exit 1), repair fixes it
    newest = sorted(Path(data).glob("*.data"))[-1]
    with newest.open("ab") as f:
        f.write(b"\x00garbage-tail")
    r = bitcask_cli("check", data, connect=False)
    assert r.code == 1 and r.text.startswith(f"check {data}: PROBLEMS")
    r = bitcask_cli("repair", data, connect=False)
    assert r.code == 0 and "1 tails truncated" in r.text
    assert bitcask_cli("check", data, connect=False).code == 0
    assert bitcask_cli("check", str(server.data / "nope"), connect=False).code == 2


def test_import_applies_lines_in_file_order_when_a_ttl_line_comes_first(
    bitcask_cli: Runner, tmp_path: Path
) -> None:
    # the TTL line used to be sent after the batch's mput, so it overwrote the
    # later plain line: `a` ended up "old" with a TTL instead of "new" without one
    src = tmp_path / "log.jsonl"
    src.write_text(
        '{"key": "a", "value": "old", "ttl": 60}\n'
        '{"key": "b", "value": "1"}\n'
        '{"key": "a", "value": "new"}\n'
        '{"key": "b", "value": "2", "ttl": 60}\n'
    )
    r = bitcask_cli("import", str(src))
    assert r.code == 0, r.err
    assert "imported 4 keys" in r.err
    assert bitcask_cli("get", "a").out == b"new\n"
    assert bitcask_cli("ttl", "a").out == b"-1\n"
    assert bitcask_cli("get", "b").out == b"2\n"
    assert 0 < float(bitcask_cli("ttl", "b").out) <= 60


def test_import_a_lone_surrogate_is_a_bad_line_named_by_number(
    bitcask_cli: Runner, tmp_path: Path
) -> None:
    # valid JSON, but "\ud800" is no Unicode text: it used to end the import as
    # "interrupted ... UnicodeEncodeError" without naming the line
    src = tmp_path / "sur.jsonl"
    src.write_text('{"key": "s1", "value": "1"}\n{"key": "s\\ud800", "value": "2"}\n')
    r = bitcask_cli("import", str(src))
    assert r.code == 2
    assert 'line 2: "key" is not valid Unicode text' in r.err, r.err
    assert "lines 1-1 are in the store" not in r.err and "line 1 are in the store" in r.err
    assert "UnicodeEncodeError" not in r.err and "interrupted" not in r.err
    assert bitcask_cli("get", "s1").out == b"1\n"


def test_import_a_refused_ttl_line_is_named_by_its_number(
    bitcask_cli: Runner, tmp_path: Path
) -> None:
    src = tmp_path / "ttl.jsonl"
    src.write_text(
        '{"key": "t1", "value": "1"}\n{"key": "t2", "value": "2", "ttl": 1e300}\n'
        '{"key": "t3", "value": "3"}\n'
    )
    r = bitcask_cli("import", str(src))
    assert r.code == 2
    assert "line 2: INVALID_PARAMS" in r.err, r.err
    assert bitcask_cli("exists", "t2").out == b"0\n"


def test_scan_from_an_empty_cursor_includes_the_empty_key(bitcask_cli: Runner) -> None:
    # `scan "" "" N` sent cursor b"" ("strictly after the empty key"): the empty key,
    # which `keys` lists, never appeared in any page
    assert bitcask_cli("mput", "", "e", "k1", "1").code == 0
    assert bitcask_cli("keys").out == b"\nk1\n"
    assert bitcask_cli("scan", "", "", "10").out == b"\n\nk1\n"  # done, then two keys
