"""A store written with zlib-ng's CRC-32 reads with zlib's, and the other way round.

bitcask/_record.py takes zlib-ng's crc32 when it is installed ('bitcask[fast]') and
zlib's otherwise. A user may install or remove the extra between two runs, or copy a
store to a machine without it: every record, hint and batch marker must check the
same. Each step runs in its own process, one of them with zlib_ng made unimportable.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

pytest.importorskip("zlib_ng", reason="zlib-ng is not installed (pip install 'bitcask[fast]')")

WITHOUT_NG = "import sys; sys.modules['zlib_ng'] = None\n"

WRITE = """
import sys, bitcask
from bitcask import _record
print(_record.crc32.__module__)
with bitcask.open(sys.argv[1], sync="always", max_file_size=4096) as db:
    tag = sys.argv[2].encode()
    for i in range(200):
        db.put(b"%s:%d" % (tag, i), tag * (i % 50 + 1))
    db.write_batch([("put", b"%s:batch%d" % (tag, i), tag) for i in range(20)])
    db.delete(tag + b":0")
"""

READ = """
import sys, bitcask
with bitcask.open(sys.argv[1], sync="always") as db:
    for tag in sys.argv[2:]:
        t = tag.encode()
        assert db.get(t + b":0") is None, tag
        for i in range(1, 200):
            assert db.get(b"%s:%d" % (t, i)) == t * (i % 50 + 1), (tag, i)
        assert db.get_many([b"%s:batch%d" % (t, i) for i in range(20)]) == [t] * 20, tag
    report = bitcask.check(sys.argv[1])
    assert report.ok, report
print("ok")
"""


def _run(script: str, *args: str, ng: bool) -> str:
    code = script if ng else WITHOUT_NG + script
    done = subprocess.run(
        [sys.executable, "-c", code, *args], capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, done.stderr
    return done.stdout


def test_stores_move_between_the_two_crcs(tmp_path: Path) -> None:
    data = str(tmp_path / "db")
    assert _run(WRITE, data, "ng", ng=True).split()[0].startswith("zlib_ng")
    assert _run(WRITE, data, "zl", ng=False).split()[0] == "zlib"
    # reopened by each: the hints written at close and the sealed files check the same
    assert _run(READ, data, "ng", "zl", ng=False).split() == ["ok"]
    assert _run(READ, data, "ng", "zl", ng=True).split() == ["ok"]
