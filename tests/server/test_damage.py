"""Group commit shares a write and an fsync, never the fate of a damaged byte.

A real server (--sync always) takes pipelined puts from several connections, so
its group commits join many clients' requests in one write; one client also sends
an mput (its own atomic batch). Then the server stops, one byte of one record's
value rots on disk, and the restarted server must answer every key: the damaged
key CORRUPT_RECORD, every other key (including the ones written in the same
group, and the mput's other keys) its value, with and without hint files.
"""

from __future__ import annotations

import os
import threading
from pathlib import Path

import pytest

from bitcask._datafile import data_name, list_data_files
from bitcask._record import BATCH_BEGIN, HEADER_SIZE, IN_BATCH
from tests.bitcask._damage import flip, records
from tests.server.wire import Conn, RemoteError, request
from tests.serverproc import running_server

WRITERS = 6
PER_WRITER = 150
DEPTH = 16


def load(port: int, tag: int, out: dict[bytes, bytes]) -> None:
    """Pipelined puts of unique keys; every reply must be ok."""
    with Conn(port) as conn:
        sent = 0
        done = 0
        while done < PER_WRITER:
            while sent < PER_WRITER and sent - done < DEPTH:
                key, value = b"w%d:%04d" % (tag, sent), b"value %d/%d " % (tag, sent) * 3
                conn.send_raw(request(sent + 1, "put", [key, value]))
                out[key] = value
                sent += 1
            _, _, err, result = conn.read_message()
            assert err is None and result is True, err
            done += 1


def answer(conn: Conn, key: bytes) -> object:
    try:
        return conn.call("get", key)
    except RemoteError as exc:
        return exc.name


@pytest.mark.parametrize("hint", ["kept", "removed"])
def test_a_rotten_byte_costs_one_request_not_its_group(tmp_path: Path, hint: str) -> None:
    data = tmp_path / "data"
    want: dict[bytes, bytes] = {}
    with running_server(data, sync="always") as srv:
        outs: list[dict[bytes, bytes]] = [{} for _ in range(WRITERS)]
        threads = [
            threading.Thread(target=load, args=(srv.port, i, outs[i])) for i in range(WRITERS)
        ]
        for t in threads:
            t.start()
        with Conn(srv.port) as c:
            pairs = [[b"m%d" % i, b"batch value %d" % i] for i in range(5)]
            assert c.call("mput", pairs) is True
        for t in threads:
            t.join(60)
            assert not t.is_alive()
        for out in outs:
            want.update(out)
        want.update({k: v for k, v in pairs})
        assert srv.stop() == 0

    fids = list_data_files(str(data))
    recs = [(fid, r) for fid in fids for r in records(data / data_name(fid))]
    # Independent requests are plain records: only the mput is a batch on disk.
    assert sum(1 for _, r in recs if r.flags & BATCH_BEGIN) == 1
    assert {r.key for _, r in recs if r.flags & IN_BATCH} == {b"m%d" % i for i in range(5)}
    for victim in (b"w3:0077", b"m2"):
        fid, rec = next((f, r) for f, r in recs if r.key == victim)
        flip(data / data_name(fid), rec.offset + HEADER_SIZE + len(rec.key) + 4)
    if hint == "removed":
        for name in os.listdir(data):
            if name.endswith(".hint"):
                os.unlink(data / name)

    for _ in range(2):  # the first start may scan and write hints; the second reads them
        with running_server(data, sync="always") as srv, Conn(srv.port) as c:
            got = {k: answer(c, k) for k in want}
            expect: dict[bytes, object] = dict(want)
            expect[b"w3:0077"] = expect[b"m2"] = "CORRUPT_RECORD"
            assert got == expect
