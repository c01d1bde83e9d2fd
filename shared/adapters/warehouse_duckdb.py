"""Warehouse on an embedded DuckDB file: the local default for Azure SQL."""

from __future__ import annotations

import csv
import re
import tempfile
import threading
from collections.abc import Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import duckdb

from shared.adapters.sql_files import statements
from shared.adapters.warehouse_sql import Column, SqlWarehouse

_PARAM = re.compile(r"\$([A-Za-z_][A-Za-z0-9_]*)")
_TYPES = {"text": "VARCHAR", "int": "INTEGER", "date": "DATE", "timestamp": "TIMESTAMP"}
_MAX_LINE_BYTES = 256 * 1024 * 1024  # a row of several 16 Mi-character fields, 4 bytes each at worst


class DuckDbWarehouse(SqlWarehouse):
    dialect = "duckdb"

    def __init__(self, path: Path | str) -> None:
        if isinstance(path, Path):
            path.parent.mkdir(parents=True, exist_ok=True)
        self.path = str(path)
        # Opened on first use and closed by close(): DuckDB lets one process hold a file, so a
        # process holds it only while it works (`serve` between requests, `status` never).
        self._connection: duckdb.DuckDBPyConnection | None = None
        # One writer at a time: two builds of overlapping days must not interleave, and
        # DuckDB's optimistic concurrency would otherwise abort one of them.
        self._write_lock = threading.RLock()
        self._schema_ready = False

    @property
    def _con(self) -> duckdb.DuckDBPyConnection:
        with self._write_lock:
            if self._connection is None:
                self._connection = duckdb.connect(self.path)
            return self._connection

    def close(self) -> None:
        """Let go of the file; the next use opens it again."""
        with self._write_lock:
            if self._connection is not None:
                self._connection.close()
                self._connection = None
                self._schema_ready = False

    def apply_schema(self) -> None:
        with self._write_lock:
            if not self._schema_ready:
                self._run(self._con, "schema", {})
                self._schema_ready = True

    @contextmanager
    def _transaction(self) -> Iterator[duckdb.DuckDBPyConnection]:
        with self._write_lock:
            self.apply_schema()
            con = self._con.cursor()  # a cursor is a session: its temp tables are its own
            try:
                con.execute("BEGIN TRANSACTION")
                try:
                    yield con
                    con.execute("COMMIT")
                except BaseException:
                    con.execute("ROLLBACK")
                    raise
            finally:
                con.close()

    def _run(
        self, session: duckdb.DuckDBPyConnection, name: str, params: Mapping[str, Any]
    ) -> list[tuple[Any, ...]]:
        """Every statement of the file, each with the parameters it names; rows of the last one."""
        rows: list[tuple[Any, ...]] = []
        for sql in statements(self.dialect, name):
            wanted = {p: params[p] for p in _PARAM.findall(sql)}
            result = session.execute(sql, wanted) if wanted else session.execute(sql)
            rows = result.fetchall() if result.description else []
        return rows

    def _load(
        self,
        session: duckdb.DuckDBPyConnection,
        table: str,
        columns: Sequence[Column],
        rows: Iterable[Sequence[Any]],
    ) -> None:
        # DuckDB's bulk path without extra packages: a temporary CSV read by read_csv. Texts are
        # quoted (CR, LF, commas, quotes and "\\N" survive); NULL is written and read as the
        # empty field, so an empty text is stored as NULL, which is what every column wants.
        # The line limit covers the parser's 16 Mi-character fields.
        spec = {name: _TYPES[kind] for name, kind in columns}
        with tempfile.NamedTemporaryFile("w", suffix=".csv", newline="", encoding="utf-8") as handle:
            csv.writer(handle, quoting=csv.QUOTE_NONNUMERIC, lineterminator="\n").writerows(rows)
            handle.flush()
            session.execute(
                f"CREATE OR REPLACE TEMP TABLE {table} AS SELECT * FROM read_csv($path, header = false,"  # noqa: S608 - fixed table names
                " auto_detect = false, quote = '\"', escape = '\"', new_line = '\\n',"
                " max_line_size = $max_line, columns = $columns)",
                {"path": handle.name, "columns": spec, "max_line": _MAX_LINE_BYTES},
            )

    def _read(self, name: str, params: Mapping[str, Any]) -> tuple[list[str], list[tuple[Any, ...]]]:
        self.apply_schema()
        session = self._con.cursor()
        try:
            result = None
            for sql in statements(self.dialect, name):
                wanted = {p: params[p] for p in _PARAM.findall(sql)}
                result = session.execute(sql, wanted) if wanted else session.execute(sql)
            if result is None or result.description is None:
                return [], []
            return [d[0] for d in result.description], result.fetchall()
        finally:
            session.close()
