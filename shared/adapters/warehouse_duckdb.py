"""Warehouse on an embedded DuckDB file: the local default for Azure SQL."""

from __future__ import annotations

import csv
import hashlib
import re
import tempfile
import threading
from collections.abc import Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

from shared.adapters.sql_files import statements
from shared.adapters.warehouse_sql import Column, SqlWarehouse

if TYPE_CHECKING:  # imported on first use: a command that never opens the warehouse never loads it
    import duckdb

_PARAM = re.compile(r"\$([A-Za-z_][A-Za-z0-9_]*)")
_TYPES = {"text": "VARCHAR", "int": "INTEGER", "date": "DATE", "timestamp": "TIMESTAMP"}
# Every row reaching the warehouse is checked first (shared/domain/text_limits.py): an id of at
# most 64 and three texts of at most 400 UTF-16 code units, a few KB at most. DuckDB sizes its CSV
# buffers after this limit, so a generous one costs memory on every load.
_MAX_LINE_BYTES = 1024 * 1024


def _schema_fingerprint() -> str:
    digest = hashlib.sha256("\n;\n".join(statements("duckdb", "schema")).encode()).hexdigest()
    return f"Company Activity schema {digest[:16]}"


class DuckDbWarehouse(SqlWarehouse):
    dialect = "duckdb"

    def __init__(self, path: Path | str, *, memory_mb: int | None = None, read_only: bool = False) -> None:
        """`read_only`: open an existing file only to read, schema as it is (`reconcile`)."""
        if isinstance(path, Path) and not read_only:
            path.parent.mkdir(parents=True, exist_ok=True)
        self.path = str(path)
        self.memory_mb = memory_mb  # None: DuckDB's own default
        self.read_only = read_only
        # Opened on first use and closed by close(): DuckDB lets one process hold a file, so a
        # process holds it only while it works (`serve` between requests, `status` never).
        self._connection: duckdb.DuckDBPyConnection | None = None
        # One writer at a time: two builds of overlapping days must not interleave, and
        # DuckDB's optimistic concurrency would otherwise abort one of them.
        self._write_lock = threading.RLock()
        self._schema_ready = False
        self._spool = Path(tempfile.gettempdir())

    @property
    def _con(self) -> duckdb.DuckDBPyConnection:
        with self._write_lock:
            if self._connection is None:
                import duckdb

                config: dict[str, Any] = {"memory_limit": f"{self.memory_mb}MB"} if self.memory_mb else {}
                self._connection = duckdb.connect(self.path, read_only=self.read_only, config=config)
            return self._connection

    def close(self) -> None:
        """Let go of the file; the next use opens it again."""
        with self._write_lock:
            if self._connection is not None:
                self._connection.close()
                self._connection = None
                self._schema_ready = False

    def apply_schema(self) -> None:
        """Bring the file to sql/duckdb/schema.sql. A file already there is not written: its
        tables are created IF NOT EXISTS, but its views are replaced, which rewrites the file,
        so the schema's fingerprint is kept as the table's comment and the views are replaced
        only when it differs: a command that only reads (`report`) leaves the file as it was."""
        with self._write_lock:
            if self._schema_ready or self.read_only:
                return
            wanted = _schema_fingerprint()
            applied = self._con.execute(
                "SELECT comment FROM duckdb_tables() WHERE schema_name = 'analytics'"
                " AND table_name = 'company_daily_activity'"
            ).fetchall()
            if applied != [(wanted,)]:
                self._run(self._con, "schema", {})
                self._con.execute(f"COMMENT ON TABLE analytics.company_daily_activity IS '{wanted}'")
            self._schema_ready = True

    @contextmanager
    def _transaction(self) -> Iterator[duckdb.DuckDBPyConnection]:
        with self._write_lock, tempfile.TemporaryDirectory(prefix="warehouse-load-") as spool:
            self.apply_schema()
            self._spool = Path(spool)  # the CSV files `_load` writes live as long as the transaction
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
        # DuckDB's bulk path without extra packages: the rows are streamed into a CSV file, and
        # `table` is a view that reads it, so a two-million-row snapshot is never held in memory,
        # neither here nor in a temp table. Texts are quoted (CR, LF, commas, quotes and "\\N"
        # survive); NULL is written and read as the empty field, so an empty text is stored as
        # NULL, which is what every column wants.
        path = self._spool / f"{table}.csv"
        with path.open("w", newline="", encoding="utf-8") as handle:
            csv.writer(handle, quoting=csv.QUOTE_NONNUMERIC, lineterminator="\n").writerows(rows)
        spec = ", ".join(f"'{name}': '{_TYPES[kind]}'" for name, kind in columns)
        literal = str(path).replace("'", "''")
        session.execute(
            f"CREATE OR REPLACE TEMP VIEW {table} AS SELECT * FROM read_csv('{literal}', header = false,"  # noqa: S608 - fixed names, our own temp path
            " auto_detect = false, quote = '\"', escape = '\"', new_line = '\\n',"
            f" max_line_size = {_MAX_LINE_BYTES}, columns = {{{spec}}})"
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
