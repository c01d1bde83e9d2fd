"""Warehouse on an embedded DuckDB file: the local default for Azure SQL.

The schema (contract section 8): the local app creates its own file (LOCAL_DATA_DIR/
warehouse.duckdb) and keeps it at sql/duckdb/schema.sql itself, recording its version
(SCHEMA_VERSIONS["duckdb"]) as Azure SQL does; an upgrade DuckDB cannot write as a guarded ALTER
is a step of sql/duckdb/upgrades/, run while its condition holds. A file is the app's when it has the version table, or the fingerprint comment
every version of the app has written, or nothing at all (a new file). Any other file, and any
file opened read-only, is never changed: a version other than this app's fails the first SQL
work with one line (for an older file of the app's: the next write upgrades it), and
`python -m shared.cli init-db` is the command that applies the schema. The health probe
changes nothing.
"""

from __future__ import annotations

import contextlib
import csv
import hashlib
import re
import tempfile
import threading
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from functools import cache
from pathlib import Path
from types import ModuleType
from typing import TYPE_CHECKING, Any

from shared.adapters.native_import import import_uninterrupted
from shared.adapters.sql_files import statements
from shared.adapters.warehouse_sql import (
    INIT_DB,
    Column,
    SqlName,
    SqlWarehouse,
    T,
    probe_detail,
    recorded_version,
    version_mismatch,
)
from shared.domain.errors import PermanentError
from shared.ports import SchemaVersionMismatch, WarehouseOutOfMemory, WarehouseUnavailable

if TYPE_CHECKING:  # imported on first use: a command that never opens the warehouse never loads it
    import duckdb

_PARAM = re.compile(r"\$([A-Za-z_][A-Za-z0-9_]*)")
_HOLDER = re.compile(r"\(PID (\d+)\)")  # in DuckDB's "Conflicting lock is held in ... (PID 123)"
_TYPES = {"text": "VARCHAR", "int": "INTEGER", "date": "DATE", "timestamp": "TIMESTAMP"}
# Every row reaching the warehouse is checked first (shared/domain/text_limits.py): an id of at
# most 64 and three texts of at most 400 UTF-16 code units, a few KB at most. DuckDB sizes its CSV
# buffers after this limit, so a generous one costs memory on every load.
_MAX_LINE_BYTES = 1024 * 1024


def _duckdb() -> ModuleType:
    """DuckDB, loaded on first use; a stop signal meanwhile acts once it has loaded."""
    return import_uninterrupted("duckdb")


FINGERPRINT_PREFIX = "Company Activity schema "
# Version 2's condition: a table still has the primary key version 1 gave it.
_KEYED_TABLES = (
    "SELECT count(*) FROM duckdb_constraints() WHERE database_name = current_database()"
    " AND constraint_type = 'PRIMARY KEY' AND (schema_name, table_name) IN"
    " (('analytics', 'company_daily_activity'), ('stg', 'product_usage_daily'))"
)
_USER_INDEXES = (
    "SELECT schema_name, index_name, sql FROM duckdb_indexes() WHERE database_name = current_database()"
    " AND (schema_name, table_name) IN"
    " (('analytics', 'company_daily_activity'), ('stg', 'product_usage_daily'))"
)
# How the uniqueness checks of build_days.sql and stage_usage_day.sql start their error (DuckDB
# puts its own words before it).
DUPLICATE_ROWS = "duplicate rows: "


class DuplicateRows(PermanentError):
    """A build or a staging would have left two rows for one company and day in the analytics
    table or the staged usage, which hold one (contract section 3). DuckDB's tables have no key,
    so the SQL checks it; the transaction is rolled back. Trying again cannot help: a row was
    written by something else."""

    kind = "duplicate_rows"


def _quoted(identifier: str) -> str:
    return '"' + identifier.replace('"', '""') + '"'


def _schema_fingerprint() -> str:
    digest = hashlib.sha256("\n;\n".join(statements("duckdb", "schema")).encode()).hexdigest()
    return f"{FINGERPRINT_PREFIX}{digest[:16]}"


@cache
def _parameters_of(name: str) -> frozenset[str]:
    """The $names the statements of sql/duckdb/<name>.sql use."""
    return frozenset(p for sql in statements("duckdb", name) for p in _PARAM.findall(sql))


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
                duckdb = _duckdb()

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
        duckdb = _duckdb()

        try:
            return work()
        except duckdb.Error as exc:
            if self._invalidated:  # the next attempt opens the database again
                self._invalidated = False
                with contextlib.suppress(duckdb.Error):
                    self.close()
            if isinstance(exc, duckdb.OutOfMemoryException) or "could not allocate" in str(exc):
                raise WarehouseOutOfMemory(self._out_of_memory(exc)) from None
            said = str(exc)
            if isinstance(exc, duckdb.InvalidInputException) and DUPLICATE_ROWS in said:
                raise DuplicateRows(said[said.index(DUPLICATE_ROWS) :].splitlines()[0]) from None
            raise

    def _out_of_memory(self, exc: Exception) -> str:
        cap = f"LOCAL_WAREHOUSE_MEMORY_MB={self.memory_mb}" if self.memory_mb else "the machine's memory"
        lines = str(exc).splitlines() or [""]
        said = next((line for line in lines if "allocate" in line or "Out of Memory" in line), lines[0])
        return (
            f"the local warehouse needed more memory than {cap} allows ({said.strip()[:160]});"
            " set LOCAL_WAREHOUSE_MEMORY_MB higher (a CRM snapshot of 2,000,000 rows fits in 256, and a"
            " build of 1,000,000 companies a day), then drop the file again, or `rebuild` the days"
        )

    def apply_schema(self) -> None:
        """`init-db`: bring the file to sql/duckdb/schema.sql, whoever made it (a person asked),
        unless a newer version of the app has upgraded it."""
        with self._write_lock:
            if self.read_only:  # nothing may change it: only check
                self.check_schema()
                return
            found, _owned, fingerprint = self._schema_state()
            if found is not None and found > self.schema_version:
                raise version_mismatch(found, self.schema_version, self._where, f"`{INIT_DB}`")
            self._apply(fingerprint)
            self._schema_ready = True

    def check_schema(self) -> None:
        """Before the first SQL work. A file the app made is brought to the current schema; its
        views are replaced only when the schema's fingerprint (kept as the table's comment)
        differs, so a command that only reads (`report`) leaves the file as it was. Any other
        file, or one opened read-only, must already have this app's version."""
        with self._write_lock:
            if self._schema_ready:
                return
            found, owned, fingerprint = self._schema_state()
            if self.read_only or not self._upgradable(found, owned):
                if found != self.schema_version:
                    raise self._mismatch(found, owned)
            else:
                self._apply(fingerprint)
            self._schema_ready = True

    def _upgradable(self, found: int | None, owned: bool) -> bool:
        """The app's own file at its version or an older one: the next write brings it up."""
        return owned and (found is None or found <= self.schema_version)

    def _mismatch(self, found: int | None, owned: bool) -> SchemaVersionMismatch:
        """The one line for a file this open cannot use. An older file the app made, opened
        read-only, is upgraded in place by the next command that writes: that is what to say."""
        if self._upgradable(found, owned) and found != self.schema_version:
            has = f"schema version {found}" if found is not None else "no schema version"
            return SchemaVersionMismatch(
                f"{self._where} has {has}, this app needs schema version {self.schema_version}:"
                f" `{INIT_DB}` (or the next `run` or `rebuild`) upgrades it in place, keeping every row"
            )
        return version_mismatch(found, self.schema_version, self._where, f"`{INIT_DB}`")

    @property
    def _where(self) -> str:
        return f"the warehouse {self.path}"

    def _schema_state(self) -> tuple[int | None, bool, str | None]:
        """(recorded version or None, made by this app, the fingerprint comment or None)."""
        con = self._con
        tables = con.execute(
            "SELECT schema_name || '.' || table_name, comment FROM duckdb_tables() WHERE NOT internal"
            " AND database_name = current_database()"
        ).fetchall()
        views = con.execute(
            "SELECT count(*) FROM duckdb_views() WHERE NOT internal AND database_name = current_database()"
        ).fetchall()
        comments = dict(tables)
        fingerprint = comments.get("analytics.company_daily_activity")
        if "analytics.schema_version" in comments:
            return recorded_version(self._read_statements(con, "schema_version")[1]), True, fingerprint
        made_by_app = isinstance(fingerprint, str) and fingerprint.startswith(FINGERPRINT_PREFIX)
        blank = not tables and not views[0][0]
        return None, made_by_app or blank, fingerprint

    def _apply(self, fingerprint: str | None) -> None:
        """Run schema.sql (its last statements record the version), the upgrade steps it cannot
        hold, and the fingerprint, in one transaction, when the file's fingerprint is not this
        schema's."""
        wanted = _schema_fingerprint()
        if fingerprint == wanted:
            return
        duckdb = _duckdb()

        indexes: list[tuple[str, str, str]] = []
        try:
            with self._begin() as con:
                # An index a user made (a dashboard's) would stop schema.sql's guarded ALTERs and
                # the upgrade's rename: DuckDB refuses to alter a table something depends on.
                # Each is dropped first and made again at the end, in the same transaction.
                indexes = con.execute(_USER_INDEXES).fetchall()
                for schema, name, _sql in indexes:
                    con.execute(f"DROP INDEX {_quoted(schema)}.{_quoted(name)}")
                self._run(con, "schema", {})
                self._drop_keys(con)
                for _schema, _name, sql in indexes:
                    con.execute(sql)
                con.execute(f"COMMENT ON TABLE analytics.company_daily_activity IS '{wanted}'")
        except (duckdb.CatalogException, duckdb.DependencyException) as exc:
            if not indexes:
                raise
            # Some changes (a column's type) stay blocked by an index dropped in the same
            # transaction; nothing was changed, and the person who made the index decides.
            named = ", ".join(f"{schema}.{name}" for schema, name, _sql in indexes)
            raise SchemaVersionMismatch(
                f"the index {named} blocks the upgrade of {self._where} to schema version"
                f" {self.schema_version} ({str(exc).splitlines()[0]}): drop it, run"
                f" `{INIT_DB}`, then make it again"
            ) from None

    def _drop_keys(self, con: duckdb.DuckDBPyConnection) -> None:
        """Version 2: tables that still have their keys are replaced by keyless copies (DuckDB
        cannot drop a key in place). schema.sql, applied again in between, creates the copies."""
        if not con.execute(_KEYED_TABLES).fetchall()[0][0]:
            return
        self._run_upgrade(con, "2_set_keyed_table_aside")
        self._run(con, "schema", {})
        self._run_upgrade(con, "2_copy_keyed_rows")

    def _run_upgrade(self, con: duckdb.DuckDBPyConnection, step: str) -> None:
        """A step of sql/duckdb/upgrades/: DuckDB only, no parameters."""
        for sql in statements(self.dialect, f"upgrades/{step}"):
            con.execute(sql)

    def probe(self) -> str:
        """The health check: open the file (another program holding it is one line), check the
        schema version as the first SQL work would, read each table once; it changes nothing (an
        older file of the app's is said, left to the next write to upgrade). A file not made yet
        is fine: the first run makes it. Leaves the file closed if it found it closed."""
        if not self.read_only and not Path(self.path).exists():
            return f"no warehouse yet: the first run creates {self.path}"
        with self._write_lock:
            was_open = self._connection is not None
            try:
                found, owned, _fingerprint = self._schema_state()
                if found != self.schema_version:
                    return self._older_file(found, owned)
                columns, rows = self._read_statements(self._con, "probe_tables")
            finally:
                if not was_open:
                    self.close()
        return probe_detail(found, rows, columns)

    def _older_file(self, found: int | None, owned: bool) -> str:
        """The probe of a file not at this app's version: an older one of the app's is fine (the
        next write upgrades it; health creates nothing), any other is the first SQL work's line."""
        if self.read_only or not self._upgradable(found, owned):
            raise self._mismatch(found, owned)
        has = f"schema {found}" if found is not None else "no schema version yet"
        return f"{has}; the next command that writes upgrades it to schema {self.schema_version}"

    @contextmanager
    def _transaction(self) -> Iterator[duckdb.DuckDBPyConnection]:
        with self._write_lock, tempfile.TemporaryDirectory(prefix="warehouse-load-") as spool:
            self.check_schema()
            self._spool = Path(spool)  # the CSV files `_load` writes live as long as the transaction
            with self._begin() as con:
                yield con

    @contextmanager
    def _begin(self) -> Iterator[duckdb.DuckDBPyConnection]:
        """One transaction on a cursor of its own (a cursor is a session: its temp tables are its
        own), committed when the block ends, rolled back when it raises."""
        con = self._con.cursor()
        try:
            con.execute("BEGIN TRANSACTION")
            try:
                yield con
                con.execute("COMMIT")
            except BaseException as exc:
                self._roll_back(con)
                if _interrupted(exc):
                    raise KeyboardInterrupt from None
                raise
        finally:
            con.close()

    def _roll_back(self, con: duckdb.DuckDBPyConnection) -> None:
        """Roll back, keeping the error that caused it: a COMMIT that failed for want of memory
        leaves DuckDB's database invalidated ("fatal"), and its ROLLBACK fails too."""
        duckdb = _duckdb()

        try:
            con.execute("ROLLBACK")
        except duckdb.FatalException:
            self._invalidated = True
        except duckdb.Error:
            pass  # no transaction left to roll back

    def _run(
        self, session: duckdb.DuckDBPyConnection, name: SqlName, params: Mapping[str, Any]
    ) -> list[tuple[Any, ...]]:
        return self._execute(session, name, params)[1]

    def _parameters(self, name: SqlName) -> Iterable[str]:
        return _parameters_of(name)

    def _execute(
        self, session: duckdb.DuckDBPyConnection, name: SqlName, params: Mapping[str, Any]
    ) -> tuple[list[str], list[tuple[Any, ...]]]:
        """Every statement of the file, each with the parameters it names: the last one's column
        names and rows."""
        self._check(name, params)
        result = None
        for sql in statements(self.dialect, name):
            wanted = {p: params[p] for p in _PARAM.findall(sql)}
            result = session.execute(sql, wanted) if wanted else session.execute(sql)
        if result is None or result.description is None:
            return [], []
        return [d[0] for d in result.description], result.fetchall()

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

    def _read(self, name: SqlName, params: Mapping[str, Any]) -> tuple[list[str], list[tuple[Any, ...]]]:
        self.check_schema()
        return self._read_statements(self._con, name, params)

    def _read_statements(
        self, con: duckdb.DuckDBPyConnection, name: SqlName, params: Mapping[str, Any] | None = None
    ) -> tuple[list[str], list[tuple[Any, ...]]]:
        """The file on a cursor of its own, outside any transaction."""
        session = con.cursor()
        try:
            return self._execute(session, name, params or {})
        except Exception as exc:
            if _interrupted(exc):
                raise KeyboardInterrupt from None
            raise
        finally:
            session.close()


def _interrupted(exc: BaseException) -> bool:
    """Whether DuckDB stopped a query for Ctrl-C: it turns the signal into a RuntimeError of
    its own ("Query interrupted"), or an InterruptException when asked by interrupt(). Said as
    KeyboardInterrupt, the command stops as Ctrl-C anywhere else stops it."""
    duckdb = _duckdb()

    return isinstance(exc, duckdb.InterruptException) or (
        type(exc) is RuntimeError and str(exc).startswith("Query interrupted")
    )
