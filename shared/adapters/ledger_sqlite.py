"""Run ledger in an embedded SQLite file: the local stand-in for the `pipelineruns` table."""

from __future__ import annotations

import json
import sqlite3
import threading
import uuid
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from shared.ports import ConcurrencyConflict, LedgerEntry


class SqliteLedger:
    def __init__(self, path: Path, *, read_only: bool = False) -> None:
        """`read_only`: open an existing ledger to read (`status` on a folder it may not write)."""
        self.path = path
        self.read_only = read_only
        self._lock = threading.Lock()
        self._local = threading.local()
        if read_only:
            return
        path.parent.mkdir(parents=True, exist_ok=True)
        with self._connect() as con:
            con.execute("PRAGMA journal_mode=WAL")
            con.execute(
                "CREATE TABLE IF NOT EXISTS entries ("
                " partition TEXT NOT NULL, key TEXT NOT NULL, data TEXT NOT NULL, etag TEXT NOT NULL,"
                " PRIMARY KEY (partition, key))"
            )

    @contextmanager
    def _connect(self) -> Iterator[sqlite3.Connection]:
        """This thread's connection, opened once: a connection per call cost more than the
        queries. WAL with synchronous=NORMAL, as the bus journal: a committed entry survives a
        killed process (the crash tests kill it); only a power cut may lose the last ones."""
        con: sqlite3.Connection | None = getattr(self._local, "con", None)
        if con is None:
            if self.read_only:
                # SQLite's WAL readers make -shm and -wal files beside the ledger, which fails
                # in a folder this user may not write and leaves files behind in one they may.
                # Without a -wal file no writer is at work and every entry is in the main file:
                # read it as immutable, creating nothing. With one, read through the WAL.
                wal = self.path.with_name(self.path.name + "-wal")
                uri = f"{self.path.resolve().as_uri()}?mode=ro" + ("" if wal.exists() else "&immutable=1")
                con = sqlite3.connect(
                    uri, uri=True, timeout=30, isolation_level=None, check_same_thread=False
                )
            else:
                con = sqlite3.connect(self.path, timeout=30, isolation_level=None, check_same_thread=False)
                con.execute("PRAGMA synchronous=NORMAL")
            self._local.con = con
        yield con

    def get(self, partition: str, key: str) -> LedgerEntry | None:
        with self._connect() as con:
            row = con.execute(
                "SELECT data, etag FROM entries WHERE partition = ? AND key = ?", (partition, key)
            ).fetchone()
        return None if row is None else LedgerEntry(partition, key, json.loads(row[0]), row[1])

    def put(
        self, partition: str, key: str, data: Mapping[str, Any], *, etag: str | None = None
    ) -> LedgerEntry:
        new_etag = uuid.uuid4().hex
        payload = json.dumps(dict(data), sort_keys=True, default=str)
        with self._lock, self._connect() as con:
            # BEGIN IMMEDIATE takes the write lock first, so check-then-write is atomic across processes.
            con.execute("BEGIN IMMEDIATE")
            try:
                row = con.execute(
                    "SELECT etag FROM entries WHERE partition = ? AND key = ?", (partition, key)
                ).fetchone()
                if etag is not None and (row[0] if row else "") != etag:
                    raise ConcurrencyConflict(f"ledger entry {partition}/{key} changed concurrently")
                con.execute(
                    "INSERT INTO entries (partition, key, data, etag) VALUES (?, ?, ?, ?)"
                    " ON CONFLICT (partition, key) DO UPDATE SET data = excluded.data, etag = excluded.etag",
                    (partition, key, payload, new_etag),
                )
                con.execute("COMMIT")
            except BaseException:
                con.execute("ROLLBACK")
                raise
        return LedgerEntry(partition, key, json.loads(payload), new_etag)

    def query(self, partition: str) -> list[LedgerEntry]:
        with self._connect() as con:
            rows = con.execute(
                "SELECT key, data, etag FROM entries WHERE partition = ? ORDER BY key", (partition,)
            ).fetchall()
        return [LedgerEntry(partition, k, json.loads(d), e) for k, d, e in rows]

    def query_range(self, partition: str, first: str, last: str) -> list[LedgerEntry]:
        # The primary key (partition, key) serves the range; TEXT compares as its bytes, which
        # orders keys as Table storage orders RowKeys.
        with self._connect() as con:
            rows = con.execute(
                "SELECT key, data, etag FROM entries WHERE partition = ? AND key >= ? AND key <= ? ORDER BY key",
                (partition, first, last),
            ).fetchall()
        return [LedgerEntry(partition, k, json.loads(d), e) for k, d, e in rows]
