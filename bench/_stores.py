"""The stores bench/embedded.py compares, behind one small adapter interface.

Each adapter owns its hot loops (`load`, `load_batches`, `read`), so every store is
driven the way its own documentation recommends (one transaction for sqlite and
lmdb, write batches where the store has them) and locals are bound before the loop.
Optional stores (semidbm, lmdb, plyvel, dbm.ndbm/gnu) are listed only when they import.
"""

from __future__ import annotations

import contextlib
import importlib
import os
import sqlite3
from collections.abc import Callable, Sequence
from typing import Any

from bench.checkedlog import CheckedLog
from bench.rawlog import RawLog

Pairs = Sequence[tuple[bytes, bytes]]


class Adapter:
    """One store under test. Subclasses fill in the hooks; `db` is the open handle."""

    name = "?"
    has_batch = True
    has_delete = False  # delete_all / incr_all (bench/embedded.py's delete, incr columns)
    runs: int | None = None  # override the global run count (slow stores: 1)

    def __init__(self) -> None:
        self.path = ""
        self.db: Any = None

    def open(self, path: str) -> None:
        """Open (creating if needed) the store at directory `path`."""
        raise NotImplementedError

    def close(self) -> None:
        if self.db is not None:
            self.db.close()
            self.db = None

    def load(self, keys: Sequence[bytes], values: Sequence[bytes]) -> None:
        put = self.db.put
        for k, v in zip(keys, values, strict=True):
            put(k, v)

    def load_batches(self, chunks: Sequence[Pairs]) -> None:
        raise NotImplementedError

    def delete_all(self, keys: Sequence[bytes]) -> None:
        """Delete every key (stores with ``has_delete``)."""
        delete = self.db.delete
        for k in keys:
            delete(k)

    def incr_all(self, keys: Sequence[bytes]) -> None:
        """Increment the integer at every key (stores with ``has_delete``)."""
        incr = self.db.incr
        for k in keys:
            incr(k)

    def read(self, keys: Sequence[bytes]) -> None:
        get = self.db.get
        for k in keys:
            get(k)

    def get(self, key: bytes) -> bytes | None:
        return self.db.get(key)  # type: ignore[no-any-return]

    def extra(self) -> dict[str, Any]:
        """Store-specific facts for the report (keydir bytes, recovery report)."""
        return {}


class BitcaskAdapter(Adapter):
    """This project's engine; sync="never" (a put still survives SIGKILL once it returns)."""

    name = "bitcask"
    has_delete = True

    def __init__(self, **options: Any) -> None:
        super().__init__()
        self.options = {"sync": "never", **options}

    def open(self, path: str) -> None:
        import bitcask

        self.path = path
        self.db = bitcask.open(path, **self.options)

    def load_batches(self, chunks: Sequence[Pairs]) -> None:
        write_batch = self.db.write_batch
        for chunk in chunks:
            write_batch([("put", k, v, None) for k, v in chunk])

    def extra(self) -> dict[str, Any]:
        st = self.db.stats()
        return {"keydir_bytes": st.get("keydir_bytes"), "keys": st.get("keys"), "stats": st}

    def drop_hints(self) -> int:
        """Delete the hint files (the store is closed); returns how many were removed."""
        removed = 0
        for name in os.listdir(self.path):
            if "hint" in name.lower():
                os.remove(os.path.join(self.path, name))
                removed += 1
        return removed


class RawLogAdapter(Adapter):
    """bench/rawlog.py: os.write per put, os.pread per get, no CRC (the floor)."""

    name = "rawlog (floor)"
    log: type[RawLog] | type[CheckedLog] = RawLog

    def open(self, path: str) -> None:
        os.makedirs(path, exist_ok=True)
        self.path = path
        self.db = self.log.open(os.path.join(path, "data.log"))

    def load_batches(self, chunks: Sequence[Pairs]) -> None:
        put_many = self.db.put_many
        for chunk in chunks:
            put_many(chunk)


class CheckedLogAdapter(RawLogAdapter):
    """bench/checkedlog.py: the floor plus a CRC and a timestamp per record, mapped."""

    name = "checkedlog (floor + CRC, mmap)"
    log = CheckedLog


class SqliteAdapter(Adapter):
    """sqlite3, WAL journal, synchronous=OFF; one transaction for all the puts."""

    name = "sqlite3 (WAL)"

    def open(self, path: str) -> None:
        os.makedirs(path, exist_ok=True)
        self.path = path
        conn = sqlite3.connect(os.path.join(path, "kv.sqlite"), isolation_level=None)
        conn.execute("PRAGMA journal_mode=WAL")
        conn.execute("PRAGMA synchronous=OFF")
        conn.execute("CREATE TABLE IF NOT EXISTS kv (k BLOB PRIMARY KEY, v BLOB) WITHOUT ROWID")
        self.db = conn

    def load(self, keys: Sequence[bytes], values: Sequence[bytes]) -> None:
        ex = self.db.execute
        ex("BEGIN")
        for k, v in zip(keys, values, strict=True):
            ex("INSERT OR REPLACE INTO kv VALUES (?, ?)", (k, v))
        ex("COMMIT")

    def load_batches(self, chunks: Sequence[Pairs]) -> None:
        ex, many = self.db.execute, self.db.executemany
        for chunk in chunks:
            ex("BEGIN")
            many("INSERT OR REPLACE INTO kv VALUES (?, ?)", chunk)
            ex("COMMIT")

    def read(self, keys: Sequence[bytes]) -> None:
        ex = self.db.execute
        for k in keys:
            ex("SELECT v FROM kv WHERE k = ?", (k,)).fetchone()

    def get(self, key: bytes) -> bytes | None:
        row = self.db.execute("SELECT v FROM kv WHERE k = ?", (key,)).fetchone()
        return None if row is None else bytes(row[0])


class DbmAdapter(Adapter):
    """A stdlib dbm module (dbm.gnu, dbm.ndbm or the pure-Python dbm.dumb)."""

    has_batch = False

    def __init__(self, module: str) -> None:
        super().__init__()
        self.module = importlib.import_module(module)
        self.name = module
        if module == "dbm.dumb":
            self.runs = 1  # opens its files on every call: slow, one run is enough

    def open(self, path: str) -> None:
        os.makedirs(path, exist_ok=True)
        self.path = path
        self.db = self.module.open(os.path.join(path, "db"), "c")

    def load(self, keys: Sequence[bytes], values: Sequence[bytes]) -> None:
        db = self.db
        for k, v in zip(keys, values, strict=True):
            db[k] = v

    def read(self, keys: Sequence[bytes]) -> None:
        db = self.db
        for k in keys:
            db[k]

    def get(self, key: bytes) -> bytes | None:
        try:
            return bytes(self.db[key])
        except KeyError:
            return None


class SemidbmAdapter(DbmAdapter):
    """semidbm, the pure-Python log-structured dbm (STYLE.md's anchor)."""

    def __init__(self) -> None:
        Adapter.__init__(self)
        self.module = importlib.import_module("semidbm")
        self.name = "semidbm"

    def open(self, path: str) -> None:
        self.path = path
        self.db = self.module.open(path, "c")


class LmdbAdapter(Adapter):
    """lmdb, sync off; one write transaction for all the puts, one per batch."""

    name = "lmdb"

    def open(self, path: str) -> None:
        import lmdb

        self.path = path
        self.db = lmdb.open(path, map_size=1 << 33, sync=False, metasync=False)

    def load(self, keys: Sequence[bytes], values: Sequence[bytes]) -> None:
        with self.db.begin(write=True) as txn:
            put = txn.put
            for k, v in zip(keys, values, strict=True):
                put(k, v)

    def load_batches(self, chunks: Sequence[Pairs]) -> None:
        begin = self.db.begin
        for chunk in chunks:
            with begin(write=True) as txn:
                txn.cursor().putmulti(chunk)

    def read(self, keys: Sequence[bytes]) -> None:
        with self.db.begin() as txn:
            get = txn.get
            for k in keys:
                get(k)

    def get(self, key: bytes) -> bytes | None:
        with self.db.begin() as txn:
            return txn.get(key)  # type: ignore[no-any-return]


class PlyvelAdapter(Adapter):
    """plyvel (LevelDB, C++), default options, write_batch for batches."""

    name = "plyvel"

    def open(self, path: str) -> None:
        import plyvel

        self.path = path
        self.db = plyvel.DB(path, create_if_missing=True)

    def load_batches(self, chunks: Sequence[Pairs]) -> None:
        wb = self.db.write_batch
        for chunk in chunks:
            with wb() as b:
                put = b.put
                for k, v in chunk:
                    put(k, v)


def _importable(module: str) -> bool:
    with contextlib.suppress(Exception):
        importlib.import_module(module)
        return True
    return False


def available(only: Sequence[str] | None = None) -> tuple[list[Adapter], list[str]]:
    """The adapters whose store imports, and a note per store that was skipped."""
    makers: list[tuple[str, str | None, Callable[[], Adapter]]] = [
        ("bitcask", "bitcask", BitcaskAdapter),
        ("rawlog", None, RawLogAdapter),
        ("checkedlog", None, CheckedLogAdapter),
        ("sqlite3", None, SqliteAdapter),
        ("dbm.gnu", "dbm.gnu", lambda: DbmAdapter("dbm.gnu")),
        ("dbm.ndbm", "dbm.ndbm", lambda: DbmAdapter("dbm.ndbm")),
        ("dbm.dumb", "dbm.dumb", lambda: DbmAdapter("dbm.dumb")),
        ("semidbm", "semidbm", SemidbmAdapter),
        ("lmdb", "lmdb", LmdbAdapter),
        ("plyvel", "plyvel", PlyvelAdapter),
    ]
    chosen: list[Adapter] = []
    skipped: list[str] = []
    for key, module, make in makers:
        if only and key not in only:
            continue
        if module is not None and not _importable(module):
            skipped.append(f"{key}: not importable, skipped")
            continue
        if key == "dbm.dumb" and any(a.name == "dbm.gnu" for a in chosen):
            continue  # the pure-Python fallback only stands in when dbm.gnu is missing
        chosen.append(make())
    return chosen, skipped
