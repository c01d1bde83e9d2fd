"""Warehouse on an embedded DuckDB file: the local default for Azure SQL."""

from __future__ import annotations

import csv
import re
import tempfile
import threading
from collections.abc import Iterable, Iterator, Mapping
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any

import duckdb

from shared.ports import BuildParams, BuildResult, BuiltDay, Lineage, StageStatus, UsageRow
from shared.sql_files import statements

DIALECT = "duckdb"
_BUILD_TEMP_TABLES = ("build_day", "build_plan", "build_source", "build_changes", "build_removed")
_PARAM = re.compile(r"\$([A-Za-z_][A-Za-z0-9_]*)")


class DuckDbWarehouse:
    def __init__(self, path: Path | str) -> None:
        if isinstance(path, Path):
            path.parent.mkdir(parents=True, exist_ok=True)
        self.path = str(path)
        self._con = duckdb.connect(self.path)
        # One writer at a time: two builds of overlapping days must not interleave, and
        # DuckDB's optimistic concurrency would otherwise abort one of them.
        self._write_lock = threading.RLock()
        self._schema_ready = False

    def close(self) -> None:
        self._con.close()

    # --- plumbing ---
    def _run(self, con: duckdb.DuckDBPyConnection, name: str, params: Mapping[str, Any]) -> list[tuple]:
        """Run every statement of a SQL file with the parameters it names; rows of the last one."""
        rows: list[tuple] = []
        for sql in statements(DIALECT, name):
            wanted = {p: params[p] for p in _PARAM.findall(sql)}
            result = con.execute(sql, wanted) if wanted else con.execute(sql)
            rows = result.fetchall() if result.description else []
        return rows

    def _transaction(self, work: Any) -> Any:
        with self._write_lock:
            self.apply_schema()
            con = self._con.cursor()
            try:
                con.execute("BEGIN TRANSACTION")
                try:
                    result = work(con)
                    con.execute("COMMIT")
                except BaseException:
                    con.execute("ROLLBACK")
                    raise
                return result
            finally:
                con.close()

    # --- Warehouse port ---
    def apply_schema(self) -> None:
        with self._write_lock:
            if not self._schema_ready:
                self._run(self._con, "schema", {})
                self._schema_ready = True

    def replace_usage_day(
        self,
        day: date,
        rows: Iterable[UsageRow],
        lineage: Lineage,
        *,
        checksum: str,
        quarantined: int,
        version: str,
    ) -> StageStatus:
        def work(con: duckdb.DuckDBPyConnection) -> StageStatus:
            status = _compare(
                self._run(con, "usage_dataset_state", {"activity_date": day}), checksum, version
            )
            if status != "staged":
                return status
            with _csv_file(rows) as path:
                con.execute(
                    "CREATE OR REPLACE TEMP TABLE incoming_usage AS SELECT * FROM read_csv($path,"
                    " header = false, auto_detect = false, quote = '\"', escape = '\"',"
                    " columns = {'company_id': 'VARCHAR', 'active_users': 'INTEGER', 'events': 'INTEGER'})",
                    {"path": str(path)},
                )
            self._run(
                con,
                "stage_usage_day",
                {
                    "activity_date": day,
                    "run_id": lineage.run_id,
                    "source_blob": lineage.source_blob,
                    "loaded_at": _naive(lineage.loaded_at),
                    "checksum": checksum,
                    "quarantined_count": quarantined,
                    "source_version": version,
                },
            )
            con.execute("DROP TABLE incoming_usage")
            return status

        return self._transaction(work)

    def replace_crm_snapshot(
        self,
        snapshot_date: date,
        rows: Iterable[tuple[Any, ...]],
        lineage: Lineage,
        *,
        checksum: str,
        version: str,
    ) -> StageStatus:
        def work(con: duckdb.DuckDBPyConnection) -> StageStatus:
            state = self._run(con, "crm_snapshot_state", {"snapshot_date": snapshot_date})
            status = _compare(state, checksum, version)
            if status != "staged":
                return status
            with _csv_file(rows) as path:
                con.execute(
                    "CREATE OR REPLACE TEMP TABLE incoming_crm AS SELECT * FROM read_csv($path,"
                    " header = false, auto_detect = false, quote = '\"', escape = '\"', nullstr = '\\N',"
                    " columns = {'company_id': 'VARCHAR', 'company_name': 'VARCHAR', 'country': 'VARCHAR',"
                    " 'industry_tag': 'VARCHAR', 'last_contact_at': 'TIMESTAMP'})",
                    {"path": str(path)},
                )
            self._run(
                con,
                "stage_crm_snapshot",
                {
                    "snapshot_date": snapshot_date,
                    "run_id": lineage.run_id,
                    "source_blob": lineage.source_blob,
                    "loaded_at": _naive(lineage.loaded_at),
                    "checksum": checksum,
                    "source_version": version,
                },
            )
            con.execute("DROP TABLE incoming_crm")
            return status

        return self._transaction(work)

    def build_days(self, days: list[date], params: BuildParams) -> BuildResult:
        if not days:
            return BuildResult()

        def work(con: duckdb.DuckDBPyConnection) -> BuildResult:
            con.execute("CREATE OR REPLACE TEMP TABLE build_day (activity_date DATE PRIMARY KEY)")
            con.executemany("INSERT INTO build_day VALUES (?)", [(d,) for d in sorted(set(days))])
            summary = self._run(
                con,
                "build_days",
                {
                    "run_id": params.run_id,
                    "loaded_at": datetime.now(UTC).replace(tzinfo=None),
                    "churn_min_rolling_users": params.churn_min_rolling_users,
                    "churn_max_contact_age_days": params.churn_max_contact_age_days,
                    "crm_max_snapshot_age_days": params.crm_max_snapshot_age_days,
                },
            )
            for table in _BUILD_TEMP_TABLES:
                con.execute(f"DROP TABLE IF EXISTS {table}")  # fixed names, no data
            return BuildResult([BuiltDay(*row) for row in summary])

        return self._transaction(work)

    def fetch_rows(self, sql_name: str, params: Mapping[str, Any] | None = None) -> Iterator[dict[str, Any]]:
        self.apply_schema()
        con = self._con.cursor()
        try:
            for sql in statements(DIALECT, sql_name):
                wanted = {p: (params or {})[p] for p in _PARAM.findall(sql)}
                result = con.execute(sql, wanted) if wanted else con.execute(sql)
            columns = [d[0] for d in result.description or []]
            rows = result.fetchall()
        finally:
            con.close()
        return iter([dict(zip(columns, row, strict=True)) for row in rows])


class _csv_file:
    """Rows written to a temporary CSV for DuckDB's bulk reader (no row-by-row inserts)."""

    def __init__(self, rows: Iterable[tuple[Any, ...]]) -> None:
        self.rows = rows

    def __enter__(self) -> Path:
        handle = tempfile.NamedTemporaryFile("w", suffix=".csv", delete=False, newline="", encoding="utf-8")
        with handle:
            writer = csv.writer(handle, lineterminator="\n")
            for row in self.rows:
                writer.writerow(["\\N" if v is None else v for v in row])
        self.path = Path(handle.name)
        return self.path

    def __exit__(self, *exc: object) -> None:
        self.path.unlink(missing_ok=True)


def _compare(state: list[tuple], checksum: str, version: str) -> StageStatus:
    """Is a load a change, a repeat of what is staged, or older than what is staged?"""
    if not state:
        return "staged"
    staged_checksum, staged_version = state[0]
    if version < staged_version:
        return "stale"
    return "unchanged" if staged_checksum == checksum else "staged"


def _naive(value: Any) -> Any:
    """DuckDB TIMESTAMP columns hold naive UTC."""
    return value.replace(tzinfo=None) if getattr(value, "tzinfo", None) else value
