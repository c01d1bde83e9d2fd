"""The ports the services talk to, and `Services`, the set of them a process runs on.

Each port has an Azure implementation and an embedded local one in `shared/adapters/`; the
services depend only on what is written here, so the same code runs on Azure (Blob, Table
storage, Service Bus, Azure SQL) and locally (a folder, SQLite, an in-process bus, DuckDB).
`shared/bootstrap.py` decides which adapter plugs into which port.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from typing import Any, BinaryIO, Literal, Protocol

from shared.config import Settings
from shared.domain.alerts import Alert
from shared.domain.days import ROLLING_DAYS
from shared.domain.errors import PermanentError
from shared.domain.usage_page import Page
from shared.domain.usage_records import UsageRow

# --- Blob store ---------------------------------------------------------------------------


class BlobNotFound(KeyError):
    """The named blob does not exist."""


class BlobExists(FileExistsError):
    """`put(..., overwrite=False)` found the blob already there."""


@dataclass(frozen=True)
class BlobInfo:
    container: str
    name: str
    size: int
    created_at: datetime  # UTC; the snapshot-date fallback of a CRM file
    last_modified: datetime  # UTC; orders two drops of the same snapshot date
    # The blob's metadata (names lower-cased); a CRM drop uploaded with force=true overrides
    # the loader's size check.
    metadata: Mapping[str, str] = field(default_factory=dict)


class BlobStore(Protocol):
    def put(
        self,
        container: str,
        name: str,
        data: bytes | BinaryIO,
        *,
        overwrite: bool = True,
        metadata: Mapping[str, str] | None = None,
    ) -> None:
        """Write the blob whole: bytes, or an open binary file read to its end (a large upload
        is never held in memory)."""
        ...

    def get(self, container: str, name: str) -> bytes: ...
    def chunks(self, container: str, name: str) -> Iterator[bytes]:
        """The blob's bytes in pieces of a few MiB, so a large file is read without holding it."""
        ...

    def info(self, container: str, name: str) -> BlobInfo: ...
    def exists(self, container: str, name: str) -> bool: ...
    def list(self, container: str, prefix: str = "") -> list[str]: ...
    def delete(self, container: str, name: str) -> None:
        """Remove the blob; BlobNotFound if it is not there."""
        ...


# --- Run ledger ---------------------------------------------------------------------------


class ConcurrencyConflict(RuntimeError):
    """A conditional ledger write lost a race: re-read and try again."""


@dataclass(frozen=True)
class LedgerEntry:
    partition: str
    key: str
    data: Mapping[str, Any]  # flat: str, int, float, bool or None values
    etag: str


class RunLedger(Protocol):
    def get(self, partition: str, key: str) -> LedgerEntry | None: ...

    def put(
        self, partition: str, key: str, data: Mapping[str, Any], *, etag: str | None = None
    ) -> LedgerEntry:
        """Write the whole entry. With `etag`, only if the stored entry still has that etag
        (the empty string means "only if it does not exist yet"); otherwise ConcurrencyConflict."""
        ...

    def query(self, partition: str) -> list[LedgerEntry]:
        """All entries of a partition, ordered by key."""
        ...

    def query_range(self, partition: str, first: str, last: str) -> list[LedgerEntry]:
        """The entries of a partition whose key is from `first` to `last` (both included), ordered
        by key. Keys compare as strings, character by character (Table storage's RowKey order), so
        ISO dates compare as the dates do: a read of some days costs those days, not the history."""
        ...


# --- Message bus --------------------------------------------------------------------------


@dataclass(frozen=True)
class OutgoingMessage:
    body: Mapping[str, Any]
    message_id: str
    properties: Mapping[str, str | int | bool] = field(default_factory=dict)
    delay_s: float = 0.0
    # Delivered not before this time (UTC): a Service Bus scheduled message; the local bus's
    # journal keeps it, and the first command after that time delivers it.
    scheduled_enqueue_time_utc: datetime | None = None


class MessageBus(Protocol):
    def send(self, queue: str, messages: Iterable[OutgoingMessage]) -> None: ...

    def peek(self, queue: str) -> int:
        """Look at the queue's next message without receiving it (nothing is locked, settled or
        sent): how many were seen, 0 or 1. Raises if the queue cannot be reached with this
        process's rights (GET /api/health)."""
        ...

    def close(self) -> None: ...


# --- Warehouse ----------------------------------------------------------------------------


class WarehouseUnavailable(RuntimeError):
    """The warehouse cannot be opened now: another program holds it. The message says which
    and what to do; trying again once it lets go works."""


class WarehouseProbeFailed(RuntimeError):
    """The health probe of a warehouse failed; the message is the cause and its fix, in one line
    (the ODBC driver missing, the firewall, the login, a table that cannot be read)."""


class SchemaVersionMismatch(PermanentError):
    """The warehouse's recorded schema version is not the one this app was written for (or none
    is recorded). The app never changes a schema it did not create (contract section 8), so
    only a person or the deployment can fix it: the message, one line, names both versions and
    the command that applies the schema. Retrying cannot help until then, so a message that
    meets it settles at once with an alert."""

    kind = "schema_version_mismatch"


class WarehouseOutOfMemory(PermanentError):
    """The warehouse needed more memory than its cap lets it have (DuckDB's
    LOCAL_WAREHOUSE_MEMORY_MB; the message names the setting). Trying again with the same cap
    fails the same way, so the message settles at once, with the fix."""

    kind = "warehouse_out_of_memory"


@dataclass(frozen=True)
class Lineage:
    run_id: str
    source_blob: str
    loaded_at: datetime  # UTC


# "staged" (replaced), "unchanged" (same content), "stale" (older than what is staged)
StageStatus = Literal["staged", "unchanged", "stale"]
Dialect = Literal["duckdb", "mssql"]
# The read-only queries of sql/<dialect>/ that `fetch_rows` runs by name. The other files there
# are the adapters' own (schema, staging, the build): shared/adapters/warehouse_sql.py names them.
QueryName = Literal[
    "churn_risk_on_day",
    "company_daily_activity",
    "coverage_day",
    "reconcile_company_window",
    "reconcile_daily_rows",
    "reconcile_observed_days",
    "reconcile_snapshot_companies",
    "reconcile_staged_usage",
    "reconcile_unknown_days",
    "report_crm_snapshots",
    "report_daily_trend",
    "report_freshness",
    "report_top_churn_risk",
    "report_weekly_trend",
    "summary_days",
    "summary_not_in_crm",
    "summary_rows_since",
]


@dataclass(frozen=True)
class BuildParams:
    run_id: str
    churn_min_rolling_users: int
    churn_max_contact_age_days: int
    crm_max_snapshot_age_days: int
    rolling_days: int = ROLLING_DAYS
    # The run each day's changed rows are attributed to (pipeline_run_id); `run_id` otherwise.
    day_run_ids: Mapping[date, str] = field(default_factory=dict)

    def run_of(self, day: date) -> str:
        return self.day_run_ids.get(day, self.run_id)


@dataclass(frozen=True)
class BuiltDay:
    activity_date: date
    snapshot_date: date
    rows: int  # rows the day holds now
    inserted: int
    updated: int
    deleted: int


@dataclass(frozen=True)
class BuildResult:
    days: list[BuiltDay] = field(default_factory=list)  # the requested days that could be built

    @property
    def rows(self) -> int:
        return sum(d.rows for d in self.days)

    @property
    def changed(self) -> int:
        return sum(d.inserted + d.updated + d.deleted for d in self.days)


class Warehouse(Protocol):
    @property
    def dialect(self) -> Dialect:
        """Which sql/<dialect>/ files it runs."""
        ...

    def apply_schema(self) -> None:
        """Apply sql/<dialect>/schema.sql and record its version: `init-db`, run by a person or
        the deployment with an administrator's rights. The app itself never calls it."""
        ...

    def check_schema(self) -> None:
        """What the first SQL work does first: the warehouse's schema version must be this
        app's, else SchemaVersionMismatch. Only a local DuckDB file the app created itself is
        brought to the current schema here; nothing else is ever changed."""
        ...

    def probe(self) -> str:
        """The health check's look at the warehouse: connect (the ODBC driver found, the login
        accepted), check the schema version, read each table once. A short one-line detail
        ("schema 1, 5 tables read"), or an exception whose text says in one line what to fix."""
        ...

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
        """Replace the day's staged usage as a whole, in one transaction, unless what is staged
        has the same checksum ("unchanged") or a newer version ("stale"). `unknown`: (company_id,
        reason) of the companies whose usage on the day is unknown (contract section 3)."""
        ...

    def replace_crm_snapshot(
        self,
        snapshot_date: date,
        rows: Iterable[tuple[Any, ...]],
        lineage: Lineage,
        *,
        checksum: str,
        version: str,
    ) -> StageStatus:
        """The same for a CRM snapshot. `rows` may be a file's worth: they are streamed into
        staging, never held, and iterated again (from the start) if the transaction is retried."""
        ...

    def build_days(self, days: list[date], params: BuildParams) -> BuildResult:
        """Recompute the given days from staging and MERGE them into the analytics table.
        Days without staged usage or an effective snapshot are skipped."""
        ...

    def fetch_rows(
        self, sql_name: QueryName, params: Mapping[str, Any] | None = None
    ) -> Iterator[dict[str, Any]]:
        """Run a named read-only query from sql/<dialect>/ (status, reports, tests) with exactly
        the parameters it takes."""
        ...

    def close(self) -> None: ...


# --- Product Usage API --------------------------------------------------------------------


class UsageApiError(PermanentError, RuntimeError):
    """A permanent failure: retrying will not help. The message names the status, never the key."""

    kind = "fetch_failed"


class TransientApiError(RuntimeError):
    """Worth asking again later; `retry_after_s` is the server's wish, when it said one."""

    def __init__(self, message: str, retry_after_s: float | None = None) -> None:
        super().__init__(message)
        self.retry_after_s = retry_after_s


class ApiUnreachable(TransientApiError):
    """No answer at all: refused, DNS, TLS or a connect timeout, after the retry budget. A first
    page that cannot be reached fails the run at once (redelivering for minutes more would
    only delay the alert); a later page is redelivered like any transient error."""

    def __init__(self, message: str, page: int) -> None:
        super().__init__(message)
        self.page = page


class ApiAsksToWait(RuntimeError):
    """The API asked (Retry-After) for a longer wait than USAGE_API_MAX_WAIT_S: the fetch is not
    held for it but asked for again at that time (contract section 1)."""

    def __init__(
        self, message: str, wait_s: float, page: int, retry_after: str = "", waited_s: float = 0.0
    ) -> None:
        super().__init__(message)
        self.wait_s = wait_s
        self.page = page
        self.retry_after = retry_after  # the header as the API sent it, for messages
        self.waited_s = waited_s  # the waits already spent: a short wait that tips the total over


class UsageApi(Protocol):
    """One day's fetch: a client asks for pages (retrying what is transient) and paces itself."""

    page_size: int
    attempts: int  # HTTP requests made so far, retries included
    retry_s: float  # seconds spent on failed requests and backoff so far
    retry_budget_s: float  # past it, nothing is tried again
    waited_s: float  # seconds waited because the API asked; past USAGE_API_MAX_WAIT_S: ApiAsksToWait

    def fetch_page(self, day: date, number: int) -> Page:
        """The page, or UsageApiError (permanent) or TransientApiError (retries exhausted)."""
        ...

    def stop(self) -> None:
        """End every wait and backoff now (a Ctrl-C while pages are fetched by other threads)."""
        ...


# --- Alert sink ---------------------------------------------------------------------------


class AlertSink(Protocol):
    # Where alerts go, in words and without a secret ("webhook https://host", "file <path>").
    target: str

    def deliver(self, alert: Alert) -> None:
        """Deliver one alert (a webhook post, a line in a file or in the log); raise if it failed."""
        ...


# --- The set a process runs on ------------------------------------------------------------


def utc_now() -> datetime:
    return datetime.now(UTC)


@dataclass
class Services:
    settings: Settings
    blobs: BlobStore
    ledger: RunLedger
    bus: MessageBus
    warehouse: Warehouse
    # Built from the settings in force when called: a new API client per fetch (its pacing is
    # that fetch's own), a sink per alert delivery.
    usage_api: Callable[[Settings], UsageApi]
    alert_sink: Callable[[Settings], AlertSink]
    clock: Callable[[], datetime] = utc_now
