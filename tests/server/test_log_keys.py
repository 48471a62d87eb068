"""A key a client chose, in the server's log and in the error it answers: escaped (no
forged log line, no escape sequence for the terminal tailing the log) and short."""

from __future__ import annotations

import asyncio
import re
from pathlib import Path

import pytest

import bitcask
from client import CorruptRecordError, connect
from tests.serverproc import running_server

# a newline and a forged log line, an OSC title change, then 64 KiB in all
KEY = b"k\n2026-12-01 00:00:00,000 ERROR bitcask.server: forged\x1b]0;pwned\x07"
KEY += b"x" * (65536 - len(KEY))
LINE = re.compile(r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d{3} [A-Z]+ ")


def test_a_long_hostile_key_in_a_corrupt_record_is_one_short_escaped_line(
    tmp_path: Path,
) -> None:
    """The message named the key whole: a 64 KiB key made a 262,000-character log
    line and CORRUPT_RECORD reply; it is cut after 64 bytes, with the key's length."""
    data = tmp_path / "data"
    with bitcask.open(data, sync="never") as db:
        db.put(KEY, b"VALUE" * 20)
        db.put(b"fine", b"ok")
    for path in data.glob("*.data"):
        raw = bytearray(path.read_bytes())
        raw[raw.find(b"VALUE")] ^= 0xFF
        path.write_bytes(bytes(raw))

    async def read() -> tuple[str, bytes | None]:
        async with connect("127.0.0.1", srv.port) as c:
            with pytest.raises(CorruptRecordError) as exc:
                await c.get(KEY)
            return str(exc.value), await c.get(b"fine")

    with running_server(data, sync="never") as srv:
        message, fine = asyncio.run(read())
        srv.stop()
        log = srv.log()
    shown = repr(KEY[:64]) + "... (65536 bytes)"
    assert fine == b"ok"
    assert shown in message and len(message) < 300, message[:300]
    assert "\x1b" not in message and "\n" not in message
    (line,) = [x for x in log.splitlines() if "corrupt record read" in x]
    assert shown in line and len(line) < 400, line[:400]
    assert "\x1b" not in log and "forged" not in log.replace(shown, "")
    assert all(LINE.match(x) for x in log.splitlines()), log[:2000]
