"""Warehouse on Azure SQL through pyodbc (imported lazily: the local default never needs it).

* Connection: ODBC Driver 18 for SQL Server, falling back to 17; either a full connection
  string (SQL auth, from Key Vault) or the server and database with a managed-identity access
  token.
* Each `sql/mssql/<name>.sql` file is one batch. Its parameters are declared at the top as
  `DECLARE @name TYPE = ?;` and bound in that order from the same names the DuckDB files use.
* Bulk loads go into `#temp` tables with `fast_executemany`, in bounded chunks.
* Transient errors (throttling, failover, deadlock victim, dropped connections) retry the whole
  transaction on a fresh connection.
* The app never sends DDL (contract section 8): its database user reads and writes rows only.
  Its first SQL work reads the schema version that `sql/mssql/schema.sql` recorded and fails
  with SchemaVersionMismatch unless it is SCHEMA_VERSIONS["mssql"]. Only `apply_schema` (init-db, run with
  an administrator's rights) runs schema.sql; the post-provision hook runs it with sqlcmd.
"""

from __future__ import annotations

import logging
import re
import struct
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from functools import cache
from typing import Any, TypeVar

from tenacity import RetryCallState, Retrying, retry_if_exception, wait_exponential

from shared.adapters.sql_files import SQL_ROOT
from shared.adapters.warehouse_sql import (
    INIT_DB,
    Column,
    SqlName,
    SqlWarehouse,
    probe_detail,
    recorded_version,
    version_mismatch,
)
from shared.config import Settings
from shared.ports import SchemaVersionMismatch, WarehouseProbeFailed

log = logging.getLogger(__name__)
T = TypeVar("T")

DRIVERS = ("ODBC Driver 18 for SQL Server", "ODBC Driver 17 for SQL Server")
SQL_COPT_SS_ACCESS_TOKEN = 1256  # msodbcsql.h: pass an Entra access token instead of a password
TOKEN_SCOPE = "https://database.windows.net/.default"
# Azure SQL's transient errors: 40613 database unavailable, 40197 service error (failover),
# 40501 service busy, 49918-49920 not enough resources, 4060 cannot open database, 10928/10929
# resource limits, 1205 deadlock victim, 10053/10054/10060/233/64 the connection went away.
TRANSIENT_ERRORS = frozenset(
    {40613, 40197, 40501, 49918, 49919, 49920, 4060, 10928, 10929, 1205, 10053, 10054, 10060, 233, 64}
)
TRANSIENT_SQLSTATES = frozenset({"08S01", "08001", "HYT00", "HYT01", "40001"})
# 40613 is also what an auto-paused serverless database answers while it resumes (about a
# minute): those are waited for up to RESUME_BUDGET_S, in steps of RESUME_WAIT_S.
RESUMING_ERRORS = frozenset({40613})
RESUME_BUDGET_S = 120.0
RESUME_WAIT_S = 10.0
_DECLARE = re.compile(r"^\s*DECLARE\s+@(\w+)\s+[^=;]+=\s*\?\s*;", re.IGNORECASE | re.MULTILINE)
_ERROR_NUMBER = re.compile(r"\((\d{2,5})\)")
_TYPES = {"text": "NVARCHAR(400)", "int": "INT", "date": "DATE", "timestamp": "DATETIME2(6)"}
# ODBC SQL types for setinputsizes (SQL_WVARCHAR, SQL_INTEGER, SQL_TYPE_DATE, SQL_TYPE_TIMESTAMP):
# declaring them spares the driver from describing parameters of a #temp table, which it cannot
# always do (pyodbc issues 295 and 415), and keeps fast_executemany's buffers bounded.
_INPUT_SIZES = {"text": (-9, 400, 0), "int": (4, 0, 0), "date": (91, 0, 0), "timestamp": (93, 27, 6)}
WHERE = "the Azure SQL database"
APPLY = f"`azd provision` (or `{INIT_DB}` as the database's administrator)"
# What a probe's failure means, by SQL Server error number: the fix, in one line.
_PROBE_FIXES = {
    18456: "login failed: the app's identity has no database user yet (azd provision creates it)"
    " or SQL_CONNECTION_STRING's login is wrong",
    40615: "the server's firewall refuses this address (allow Azure services, or the client's IP)",
    40613: "the database is not available yet (a serverless database resumes in about a minute): try again",
    4060: "the database in the settings does not exist or the login may not open it (SQL_DATABASE)",
    229: "the app's database user may not read a table: grant db_datareader (azd provision does)",
    208: f"a table is missing: apply the schema with {APPLY}",
}


@cache
def sql_file(name: str) -> tuple[str, tuple[str, ...]]:
    """The batch text and the parameter names it declares, in binding order."""
    text = (SQL_ROOT / "mssql" / f"{name}.sql").read_text(encoding="utf-8")
    return text, tuple(_DECLARE.findall(text))


def pick_driver(installed: Iterable[str]) -> str:
    available = set(installed)
    for driver in DRIVERS:
        if driver in available:
            return driver
    raise RuntimeError(
        "no SQL Server ODBC driver found (need 'ODBC Driver 18 for SQL Server' or 17); installed: "
        + (", ".join(sorted(available)) or "none")
    )


def probe_failure(error: BaseException) -> str:
    """One line for a failed probe: the fix when the error number is known, else the driver's
    first line (pyodbc's text repeats the SQLSTATE and the driver's names)."""
    for number in sorted(_error_numbers(error)):
        if number in _PROBE_FIXES:
            return f"Azure SQL: {_PROBE_FIXES[number]} ({number})"
    args = getattr(error, "args", ())
    said = str(args[-1]) if args else str(error)
    said = re.sub(r"(\[[^\]]*\])+\s*", "", said.splitlines()[0] if said else type(error).__name__)
    return f"Azure SQL: {said.strip()[:300]}"


def access_token_struct(token: str) -> bytes:
    """The ODBC driver wants the token as length-prefixed UTF-16-LE bytes."""
    raw = token.encode("utf-16-le")
    return struct.pack(f"<I{len(raw)}s", len(raw), raw)


def _error_numbers(error: BaseException) -> set[int]:
    return {int(n) for n in _ERROR_NUMBER.findall(" ".join(str(a) for a in getattr(error, "args", ())))}


def is_transient(error: BaseException) -> bool:
    args = getattr(error, "args", ())
    sqlstate = str(args[0]) if args else ""
    return sqlstate in TRANSIENT_SQLSTATES or bool(_error_numbers(error) & TRANSIENT_ERRORS)


def is_resuming(error: BaseException | None) -> bool:
    """The database is not available yet, as a serverless database is while it resumes."""
    return error is not None and bool(_error_numbers(error) & RESUMING_ERRORS)


def connection_factory(settings: Settings, credential: Any = None) -> Callable[[], Any]:
    """A function that opens a connection. Nothing happens until the first SQL work: pyodbc
    (which needs unixODBC), the driver choice and the settings check would otherwise fail
    every function of the app, the alert function included, when only SQL cannot work."""
    chosen: dict[str, Any] = {}

    def connect() -> Any:
        if not chosen:
            chosen.update(_connector(settings, credential))
        return chosen["connect"]()

    return connect


def _connector(settings: Settings, credential: Any) -> dict[str, Any]:
    try:
        import pyodbc
    except ImportError as exc:  # libodbc.so.2 missing: unixODBC is not installed
        raise RuntimeError(f"cannot load pyodbc for Azure SQL: {exc}") from None

    driver = pick_driver(pyodbc.drivers())
    if settings.sql_connection_string:
        text = settings.sql_connection_string
        if "driver=" not in text.lower():
            text = f"Driver={{{driver}}};{text}"
        return {"connect": lambda: pyodbc.connect(text, autocommit=False)}
    if not (settings.sql_server and settings.sql_database):
        raise RuntimeError("set SQL_SERVER and SQL_DATABASE (managed identity) or SQL_CONNECTION_STRING")
    base = (
        f"Driver={{{driver}}};Server=tcp:{settings.sql_server},1433;Database={settings.sql_database};"
        "Encrypt=yes;TrustServerCertificate=no;Connection Timeout=30"
    )
    if credential is None:
        from azure.identity import DefaultAzureCredential

        credential = DefaultAzureCredential()

    def connect() -> Any:
        token = credential.get_token(TOKEN_SCOPE).token  # the credential caches and refreshes it
        return pyodbc.connect(
            base, autocommit=False, attrs_before={SQL_COPT_SS_ACCESS_TOKEN: access_token_struct(token)}
        )

    return {"connect": connect}


class MssqlWarehouse(SqlWarehouse):
    dialect = "mssql"
    temp_prefix = "#"  # session temp tables: #incoming_usage is this connection's own

    def __init__(
        self,
        connect: Callable[[], Any],
        *,
        fast_executemany: bool = True,
        chunk_size: int = 5_000,
        attempts: int = 5,
        backoff_s: float = 1.0,
        resume_budget_s: float = RESUME_BUDGET_S,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self._connect = connect
        self.fast_executemany = fast_executemany
        self.chunk_size = chunk_size
        self.attempts = attempts
        self.backoff_s = backoff_s
        self.resume_budget_s = resume_budget_s
        self.sleep = sleep
        self._local = threading.local()  # one connection per worker thread
        self._schema_ready = False

    @classmethod
    def from_settings(cls, settings: Settings, credential: Any = None) -> MssqlWarehouse:
        return cls(connection_factory(settings, credential))

    # --- connections and retries ---
    def _connection(self) -> Any:
        connection = getattr(self._local, "connection", None)
        if connection is None:
            connection = self._local.connection = self._connect()
        return connection

    def _discard_connection(self) -> None:
        connection = getattr(self._local, "connection", None)
        self._local.connection = None
        if connection is not None:
            try:
                connection.close()
            except Exception:  # already broken: nothing to do
                log.debug("closing a broken connection failed", exc_info=True)

    def _retry(self, work: Callable[[], T]) -> T:
        """Run `work`, again on a fresh connection after a transient error: up to `attempts`
        times with exponential backoff, or, while the database resumes, for up to
        `resume_budget_s` of waiting."""
        backoff = wait_exponential(multiplier=self.backoff_s, max=30.0)

        def last_error(state: RetryCallState) -> BaseException | None:
            return state.outcome.exception() if state.outcome else None

        def stop(state: RetryCallState) -> bool:
            if is_resuming(last_error(state)):
                return state.idle_for >= self.resume_budget_s
            return state.attempt_number >= self.attempts

        def wait(state: RetryCallState) -> float:
            return RESUME_WAIT_S if is_resuming(last_error(state)) else float(backoff(state))

        retrying = Retrying(
            stop=stop,
            wait=wait,
            retry=retry_if_exception(is_transient),
            sleep=self.sleep,
            before_sleep=self._before_retry,
            reraise=True,
        )
        return retrying(work)

    def _before_retry(self, state: RetryCallState) -> None:
        self._discard_connection()
        error = state.outcome.exception() if state.outcome else None
        log.warning(
            "Azure SQL transient error (attempt %d of %d), retrying in %.1f s: %s",
            state.attempt_number,
            self.attempts,
            state.upcoming_sleep,
            str(error).splitlines()[0][:300] if error else "?",
        )

    # --- SqlWarehouse ---
    @contextmanager
    def _transaction(self) -> Iterator[Any]:
        self.check_schema()
        connection = self._connection()
        cursor = connection.cursor()
        try:
            yield cursor
            connection.commit()
        except BaseException:
            try:
                connection.rollback()
            except Exception:  # a dead connection cannot roll back; the server already did
                self._discard_connection()
            raise
        finally:
            cursor.close()

    def _attempt(self, work: Callable[[], T]) -> T:
        return self._retry(work)  # the whole transaction, on a fresh connection

    def _run(self, session: Any, name: SqlName, params: Mapping[str, Any]) -> list[tuple[Any, ...]]:
        return self._execute(session, name, params)[1]

    def _parameters(self, name: SqlName) -> Iterable[str]:
        return sql_file(name)[1]

    def _execute(
        self, cursor: Any, name: SqlName, params: Mapping[str, Any]
    ) -> tuple[list[str], list[tuple[Any, ...]]]:
        """The file as one batch, its parameters bound in the order it declares them: the last
        result set's column names and rows."""
        self._check(name, params)
        text, names = sql_file(name)
        cursor.execute(text, [params[n] for n in names])
        columns: list[str] = []
        rows: list[tuple[Any, ...]] = []
        while True:  # the last result set wins; SET NOCOUNT ON keeps row counts out of the way
            if cursor.description:
                columns = [d[0] for d in cursor.description]
                rows = [tuple(r) for r in cursor.fetchall()]
            if not cursor.nextset():
                return columns, rows

    def _load(
        self, session: Any, table: str, columns: Sequence[Column], rows: Iterable[Sequence[Any]]
    ) -> None:
        # Fixed names and types from the code, never from data.
        temp = self.temp_prefix + table
        ddl = ", ".join(f"{name} {_TYPES[kind]}" for name, kind in columns)
        session.execute(f"DROP TABLE IF EXISTS {temp}")
        session.execute(f"CREATE TABLE {temp} ({ddl})")
        insert = f"INSERT INTO {temp} ({', '.join(n for n, _ in columns)}) VALUES ({', '.join('?' * len(columns))})"  # noqa: S608
        # A cursor of its own: pyodbc keeps input sizes for every later execute() on a cursor,
        # so on the session cursor the batches that follow would bind their text parameters as
        # INT or DATE (SQLSTATE 22018 on SQL Server). The temp table is the connection's, so
        # this cursor sees it.
        loader = session.connection.cursor()
        try:
            loader.fast_executemany = self.fast_executemany
            loader.setinputsizes([_INPUT_SIZES[kind] for _, kind in columns])
            chunk: list[Sequence[Any]] = []
            for row in rows:
                chunk.append(row)
                if len(chunk) >= self.chunk_size:
                    loader.executemany(insert, chunk)
                    chunk = []
            if chunk:
                loader.executemany(insert, chunk)
        finally:
            loader.close()

    def _read(self, name: SqlName, params: Mapping[str, Any]) -> tuple[list[str], list[tuple[Any, ...]]]:
        def work() -> tuple[list[str], list[tuple[Any, ...]]]:
            self.check_schema()
            return self._read_once(name, params)

        return self._retry(work)

    def _read_once(self, name: SqlName, params: Mapping[str, Any]) -> tuple[list[str], list[tuple[Any, ...]]]:
        connection = self._connection()
        cursor = connection.cursor()
        try:
            result = self._execute(cursor, name, params)
            connection.commit()
            return result
        finally:
            cursor.close()

    def _recorded_version(self) -> int | None:
        return recorded_version(self._read_once("schema_version", {})[1])

    def check_schema(self) -> None:
        """Before the first SQL work: the database's schema version must be this app's. Read
        once per process while it matches; a mismatch is read again by the next work, so the
        app works again as soon as someone applies the schema."""
        if self._schema_ready:
            return
        found = self._retry(self._recorded_version)
        if found != self.schema_version:
            raise version_mismatch(found, self.schema_version, WHERE, APPLY)
        self._schema_ready = True

    def apply_schema(self) -> None:
        """`init-db`: run sql/mssql/schema.sql (tables, views, indexes, then the version record)
        with the connection's rights, which must be an administrator's, then read the version
        back. Refuses a database that a newer version of the app has upgraded."""
        found = self._retry(self._recorded_version)
        if found is not None and found > self.schema_version:
            raise version_mismatch(found, self.schema_version, WHERE, APPLY)

        def work() -> None:
            connection = self._connection()
            cursor = connection.cursor()
            try:
                self._run(cursor, "schema", {})
                connection.commit()
            finally:
                cursor.close()

        self._retry(work)
        self._schema_ready = False
        self.check_schema()

    def probe(self) -> str:
        """One attempt, no retries (the health check has its own short timeout): connect, the
        schema version, one read of each table. A failure is one line saying what to fix."""
        try:
            found = self._recorded_version()
            if found != self.schema_version:
                raise version_mismatch(found, self.schema_version, WHERE, APPLY)
            columns, rows = self._read_once("probe_tables", {})
        except SchemaVersionMismatch:
            raise
        except Exception as exc:
            self._discard_connection()
            raise WarehouseProbeFailed(probe_failure(exc)) from None
        self._schema_ready = True
        return probe_detail(found, rows, columns)

    def close(self) -> None:
        self._discard_connection()
