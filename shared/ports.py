"""The four ports the core talks to. Each has an Azure and an embedded local implementation.

The services in `shared/` depend only on these protocols, so the same code runs on Azure
(Blob, Table storage, Service Bus, Azure SQL) and locally (a folder, SQLite, an in-process
bus, DuckDB).
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from datetime import date, datetime
from typing import Any, Protocol

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


class BlobStore(Protocol):
    def put(self, container: str, name: str, data: bytes, *, overwrite: bool = True) -> None: ...
    def get(self, container: str, name: str) -> bytes: ...
    def info(self, container: str, name: str) -> BlobInfo: ...
    def exists(self, container: str, name: str) -> bool: ...
    def list(self, container: str, prefix: str = "") -> list[str]: ...


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


# --- Message bus --------------------------------------------------------------------------


@dataclass(frozen=True)
class OutgoingMessage:
    body: Mapping[str, Any]
    message_id: str
    properties: Mapping[str, str | int | bool] = field(default_factory=dict)
    delay_s: float = 0.0


class MessageBus(Protocol):
    def send(self, queue: str, messages: Iterable[OutgoingMessage]) -> None: ...


# --- Warehouse ----------------------------------------------------------------------------


@dataclass(frozen=True)
class Lineage:
    run_id: str
    source_blob: str
    loaded_at: datetime  # UTC


StageStatus = str  # "staged" (replaced), "unchanged" (same content), "stale" (older than staged)


@dataclass(frozen=True)
class BuildParams:
    run_id: str
    churn_min_rolling_users: int
    churn_max_contact_age_days: int
    crm_max_snapshot_age_days: int


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


UsageRow = tuple[str, int, int]  # company_id, active_users, events


class Warehouse(Protocol):
    def apply_schema(self) -> None: ...

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
        """Replace the day's staged usage as a whole, in one transaction, unless what is staged
        has the same checksum ("unchanged") or a newer version ("stale")."""
        ...

    def replace_crm_snapshot(
        self,
        snapshot_date: date,
        rows: Iterable[tuple[Any, ...]],
        lineage: Lineage,
        *,
        checksum: str,
        version: str,
    ) -> StageStatus: ...

    def build_days(self, days: list[date], params: BuildParams) -> BuildResult:
        """Recompute the given days from staging and MERGE them into the analytics table.
        Days without staged usage or an effective snapshot are skipped."""
        ...

    def fetch_rows(self, sql_name: str, params: Mapping[str, Any] | None = None) -> Iterator[dict[str, Any]]:
        """Run a named read-only query from sql/<dialect>/ (status, reports, tests)."""
        ...
