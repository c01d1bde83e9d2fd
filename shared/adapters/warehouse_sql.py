"""What the DuckDB and Azure SQL warehouses share: the order of operations around the SQL files.

A dialect adapter says how to open a transaction, run a file from `sql/<dialect>/`, and
bulk-load rows into a temporary table. The staging and build logic is written once, here.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass
from datetime import UTC, date, datetime
from typing import Any, Literal, TypeVar

from shared.domain.usage_records import UsageRow
from shared.ports import (
    BuildParams,
    BuildResult,
    BuiltDay,
    Dialect,
    Lineage,
    QueryName,
    SchemaVersionMismatch,
    StageStatus,
)

T = TypeVar("T")
# The version of each dialect's warehouse schema this code is written for: the one place it is
# set. sql/<dialect>/schema.sql records it in analytics.schema_version as its last statement,
# with the number written out (tests/infra/test_sql_dialects.py keeps them equal). A dialect's
# number is raised with every change to its schema.sql, written as an upgrade; the two move
# apart when a change is one dialect's only (docs/architecture.md, "The schema and its version").
SCHEMA_VERSIONS: Mapping[Dialect, int] = {
    "mssql": 1,
    "duckdb": 2,  # 2: analytics.company_daily_activity, stg.product_usage_daily without keys
}
INIT_DB = "python -m shared.cli init-db"
Column = tuple[str, str]  # name, logical type: text, int, date, timestamp
USAGE_COLUMNS: Sequence[Column] = (("company_id", "text"), ("active_users", "int"), ("events", "int"))
UNKNOWN_COLUMNS: Sequence[Column] = (("company_id", "text"), ("reason", "text"))
CRM_COLUMNS: Sequence[Column] = (
    ("company_id", "text"),
    ("company_name", "text"),
    ("country", "text"),
    ("industry_tag", "text"),
    ("last_contact_at", "timestamp"),
)
BUILD_DAY_COLUMNS: Sequence[Column] = (("activity_date", "date"), ("run_id", "text"))
# The adapters' own files of sql/<dialect>/: the schema and its probes, staging, the build.
# With QueryName (what callers may read) they are every file there, in both dialects.
StatementName = Literal[
    "build_days",
    "crm_snapshot_state",
    "probe_tables",
    "schema",
    "schema_version",
    "stage_crm_snapshot",
    "stage_usage_day",
    "usage_dataset_state",
]
SqlName = QueryName | StatementName


class SqlParameterMismatch(TypeError):
    """A file of sql/<dialect>/ was run with other parameters than the ones it takes: the code
    that runs it is wrong, and binding by name would fail later, or pass something unused."""


def check_parameters(where: str, takes: Iterable[str], given: Mapping[str, Any]) -> None:
    """Before a file runs: the parameters given must be exactly the ones it takes."""
    wanted = set(takes)
    missing, extra = sorted(wanted - set(given)), sorted(set(given) - wanted)
    if missing or extra:
        said = [f"missing parameter {', '.join(missing)}"] if missing else []
        said += [f"unexpected parameter {', '.join(extra)}"] if extra else []
        takes_text = ", ".join(sorted(wanted)) or "none"
        raise SqlParameterMismatch(f"{where}: {'; '.join(said)} (it takes: {takes_text})")


@dataclass(frozen=True)
class Load:
    """Rows bulk-loaded into a temp table before a staging file runs. `rows` are iterated once
    per attempt (a retried transaction reads them again), so they must start over when iterated
    again: a list, or a reader of the file."""

    table: str
    columns: Sequence[Column]
    rows: Iterable[Sequence[Any]]


@dataclass(frozen=True)
class Replacement:
    """How one staged input is replaced: the file that reads what is staged now, the loads, and
    the file that swaps them in."""

    state_file: StatementName
    loads: Sequence[Load]
    stage_file: StatementName


def compare(state: list[tuple[Any, ...]], checksum: str, version: str) -> StageStatus:
    """Is a load a change, a repeat of what is staged, or older than what is staged?"""
    if not state:
        return "staged"
    staged_checksum, staged_version = state[0]
    if version < staged_version:
        return "stale"
    return "unchanged" if staged_checksum == checksum else "staged"


def recorded_version(rows: list[tuple[Any, ...]]) -> int | None:
    """The version a `schema_version` read returned; None when none is recorded."""
    return int(rows[0][0]) if rows and rows[0][0] is not None else None


def version_mismatch(found: int | None, wanted: int, where: str, apply: str) -> SchemaVersionMismatch:
    """The one line the first SQL work fails with: both versions and what to run."""
    has = f"schema version {found}" if found is not None else "no schema version"
    if found is not None and found > wanted:  # a schema never goes back: the app must go forward
        fix = (
            "the schema is newer than this app: run (or deploy) the newer version of the app that applied it"
        )
    else:
        fix = f"apply the schema with {apply}"
    return SchemaVersionMismatch(f"{where} has {has}, this app needs schema version {wanted}: {fix}")


def probe_detail(found: int | None, rows: list[tuple[Any, ...]], columns: list[str]) -> str:
    """ "schema 1, 5 tables read (3 hold rows)" from a `probe_tables` read."""
    held = sum(1 for value in rows[0] if value) if rows else 0
    return f"schema {found}, {len(columns)} tables read ({held} hold rows)"


def naive_utc(value: datetime) -> datetime:
    """Both warehouses hold UTC in zone-less timestamp columns."""
    return value.astimezone(UTC).replace(tzinfo=None) if value.tzinfo else value


class SqlWarehouse(ABC):
    dialect: Dialect

    @property
    def schema_version(self) -> int:
        """The version of its dialect's schema.sql, the only one this app works with."""
        return SCHEMA_VERSIONS[self.dialect]

    # --- what a dialect provides ---
    @abstractmethod
    def _transaction(self) -> AbstractContextManager[Any]:
        """A session inside one transaction, committed on success; builds and loads serialize."""

    @abstractmethod
    def _run(self, session: Any, name: SqlName, params: Mapping[str, Any]) -> list[tuple[Any, ...]]:
        """Run `sql/<dialect>/<name>.sql`; the rows of its result set (or [])."""

    @abstractmethod
    def _load(
        self, session: Any, table: str, columns: Sequence[Column], rows: Iterable[Sequence[Any]]
    ) -> None:
        """Create the temp table `table` and bulk-load the rows (no row-by-row inserts)."""

    @abstractmethod
    def _read(self, name: SqlName, params: Mapping[str, Any]) -> tuple[list[str], list[tuple[Any, ...]]]:
        """Run a read-only file outside any write transaction: column names and rows."""

    @abstractmethod
    def _parameters(self, name: SqlName) -> Iterable[str]:
        """The names of the parameters `sql/<dialect>/<name>.sql` takes."""

    @abstractmethod
    def apply_schema(self) -> None: ...

    @abstractmethod
    def check_schema(self) -> None: ...

    @abstractmethod
    def probe(self) -> str: ...

    @abstractmethod
    def close(self) -> None: ...

    def _attempt(self, work: Callable[[], T]) -> T:
        """Run one whole transaction; a dialect may retry it on transient errors."""
        return work()

    def _check(self, name: SqlName, params: Mapping[str, Any]) -> None:
        """What a dialect does before it runs a file: bind by name only what the file takes."""
        check_parameters(f"sql/{self.dialect}/{name}.sql", self._parameters(name), params)

    # --- the Warehouse port ---
    def replace_usage_day(
        self,
        day: date,
        rows: Iterable[UsageRow],
        lineage: Lineage,
        *,
        checksum: str,
        quarantined: int,
        version: str,
        unknown: Sequence[tuple[str, str]] = (),
    ) -> StageStatus:
        loads = (
            Load("incoming_usage", USAGE_COLUMNS, rows),
            Load("incoming_unknown", UNKNOWN_COLUMNS, unknown),
        )
        return self._replace(
            Replacement("usage_dataset_state", loads, "stage_usage_day"),
            {"activity_date": day},
            lineage,
            checksum,
            version,
            quarantined_count=quarantined,
        )

    def replace_crm_snapshot(
        self,
        snapshot_date: date,
        rows: Iterable[tuple[Any, ...]],
        lineage: Lineage,
        *,
        checksum: str,
        version: str,
    ) -> StageStatus:
        return self._replace(
            Replacement(
                "crm_snapshot_state", (Load("incoming_crm", CRM_COLUMNS, rows),), "stage_crm_snapshot"
            ),
            {"snapshot_date": snapshot_date},
            lineage,
            checksum,
            version,
        )

    def _replace(
        self,
        replacement: Replacement,
        keys: dict[str, Any],
        lineage: Lineage,
        checksum: str,
        version: str,
        **details: Any,
    ) -> StageStatus:
        """Replace a staged input as a whole unless it is a repeat or older than what is staged.
        The state file reads what is staged under `keys`; the stage file also records `details`."""
        params = {
            **keys,
            **details,
            "run_id": lineage.run_id,
            "source_blob": lineage.source_blob,
            "loaded_at": naive_utc(lineage.loaded_at),
            "checksum": checksum,
            "source_version": version,
        }

        def work() -> StageStatus:
            with self._transaction() as session:
                status = compare(self._run(session, replacement.state_file, keys), checksum, version)
                if status == "staged":
                    for load in replacement.loads:
                        self._load(session, load.table, load.columns, load.rows)
                    self._run(session, replacement.stage_file, params)
                return status

        return self._attempt(work)

    def build_days(self, days: list[date], params: BuildParams) -> BuildResult:
        if not days:
            return BuildResult()

        def work() -> list[tuple[Any, ...]]:
            with self._transaction() as session:
                rows = [(d, params.run_of(d)) for d in sorted(set(days))]
                self._load(session, "build_day", BUILD_DAY_COLUMNS, rows)
                return self._run(
                    session,
                    "build_days",
                    {
                        "loaded_at": datetime.now(UTC).replace(tzinfo=None),
                        "churn_min_rolling_users": params.churn_min_rolling_users,
                        "churn_max_contact_age_days": params.churn_max_contact_age_days,
                        "crm_max_snapshot_age_days": params.crm_max_snapshot_age_days,
                        "rolling_days": params.rolling_days,
                    },
                )

        summary = self._attempt(work)
        return BuildResult([BuiltDay(_day(r[0]), _day(r[1]), *(int(v) for v in r[2:6])) for r in summary])

    def fetch_rows(
        self, sql_name: QueryName, params: Mapping[str, Any] | None = None
    ) -> Iterator[dict[str, Any]]:
        columns, rows = self._read(sql_name, params or {})
        return iter([dict(zip(columns, row, strict=True)) for row in rows])


def _day(value: Any) -> date:
    return value.date() if isinstance(value, datetime) else value
