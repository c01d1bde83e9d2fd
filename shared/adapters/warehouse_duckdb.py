"""Warehouse on an embedded DuckDB file: the local default for Azure SQL."""

from __future__ import annotations

import contextlib
import csv
import hashlib
import re
import tempfile
import threading
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

from shared.adapters.sql_files import statements
from shared.adapters.warehouse_sql import Column, SqlWarehouse, T
from shared.domain.errors import PermanentError
from shared.ports import WarehouseUnavailable

if TYPE_CHECKING:  # imported on first use: a command that never opens the warehouse never loads it
    import duckdb

_PARAM = re.compile(r"\$([A-Za-z_][A-Za-z0-9_]*)")
_HOLDER = re.compile(r"\(PID (\d+)\)")  # in DuckDB's "Conflicting lock is held in ... (PID 123)"
_TYPES = {"text": "VARCHAR", "int": "INTEGER", "date": "DATE", "timestamp": "TIMESTAMP"}
# Every row reaching the warehouse is checked first (shared/domain/text_limits.py): an id of at
# most 64 and three texts of at most 400 UTF-16 code units, a few KB at most. DuckDB sizes its CSV
# buffers after this limit, so a generous one costs memory on every load.
_MAX_LINE_BYTES = 1024 * 1024


class WarehouseOutOfMemory(PermanentError):
    """DuckDB needed more memory than LOCAL_WAREHOUSE_MEMORY_MB lets it have. Trying again
    with the same cap fails the same way, so the message settles at once, with the fix."""

    kind = "warehouse_out_of_memory"


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
        self._invalidated = False  # DuckDB said the database must be opened again
        self._spool = Path(tempfile.gettempdir())

    @property
    def _con(self) -> duckdb.DuckDBPyConnection:
        with self._write_lock:
            if self._connection is None:
                import duckdb

                config: dict[str, Any] = {"memory_limit": f"{self.memory_mb}MB"} if self.memory_mb else {}
                try:
                    self._connection = duckdb.connect(self.path, read_only=self.read_only, config=config)
                except duckdb.IOException as exc:
                    if "lock" not in str(exc).lower():
                        raise
                    holder = _HOLDER.search(str(exc))
                    raise WarehouseUnavailable(
                        f"{self.path} is open in another program"
                        + (f" (PID {holder.group(1)})" if holder else "")
                        + ": DuckDB lets one program write it at a time; close it there, or wait, and try again"
                    ) from None
            return self._connection

    def close(self) -> None:
        """Let go of the file; the next use opens it again."""
        with self._write_lock:
            connection, self._connection = self._connection, None
            self._schema_ready = False
            if connection is not None:
                connection.close()

    def _attempt(self, work: Callable[[], T]) -> T:
        import duckdb

        try:
            return work()
        except duckdb.Error as exc:
            if self._invalidated:  # the next attempt opens the database again
                self._invalidated = False
                with contextlib.suppress(duckdb.Error):
                    self.close()
            if isinstance(exc, duckdb.OutOfMemoryException) or "could not allocate" in str(exc):
                raise WarehouseOutOfMemory(self._out_of_memory(exc)) from None
            raise

    def _out_of_memory(self, exc: Exception) -> str:
        cap = f"LOCAL_WAREHOUSE_MEMORY_MB={self.memory_mb}" if self.memory_mb else "the machine's memory"
        said = next((line for line in str(exc).splitlines() if "allocate" in line), str(exc))
        return (
            f"the local warehouse needed more memory than {cap} allows ({said.strip()[:160]});"
            " set LOCAL_WAREHOUSE_MEMORY_MB higher (a CRM snapshot of 2,000,000 rows fits in 256),"
            " then drop the file again or run the day again"
        )

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

    def probe(self) -> str:
        """As SqlWarehouse's, but a warehouse file that does not exist yet is not made: the
        first load makes it (a health check changes nothing another command would see)."""
        if self.path != ":memory:" and not Path(self.path).exists():
            import duckdb

            return f"duckdb {duckdb.__version__}: no warehouse yet; the first load creates {self.path}"
        return super().probe()

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
                    self._roll_back(con)
                    raise
            finally:
                con.close()

    def _roll_back(self, con: duckdb.DuckDBPyConnection) -> None:
        """Roll back, keeping the error that caused it: a COMMIT that failed for want of memory
        leaves DuckDB's database invalidated ("fatal"), and its ROLLBACK fails too."""
        import duckdb

        try:
            con.execute("ROLLBACK")
        except duckdb.FatalException:
            self._invalidated = True
        except duckdb.Error:
            pass  # no transaction left to roll back

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
