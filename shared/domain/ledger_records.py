"""The run ledger's entries as typed records, one frozen dataclass per partition, and one codec.

A record's field names are the stored keys (an entry written by an earlier version reads the
same). The codec is tolerant both ways:

* `from_data` gives a missing field its default and keeps the fields it does not know in
  `unknown_fields`, which `to_data` writes back: an entry written by a newer version, or by
  another writer of the same entry, loses nothing.
* `to_data` writes a record read from the ledger in the shape it was read in (its stored fields
  and any field set since to a value other than its default); a record made from scratch is
  written whole.
* Lists are JSON text in the ledger (its values are flat); `tuple[str, ...]` fields are decoded
  and encoded here and nowhere else.
"""

from __future__ import annotations

import dataclasses
import json
import types
import typing
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, ClassVar, Literal, TypeVar, get_args, get_origin

from shared.domain import names

# --- states -----------------------------------------------------------------------------------

FetchStatus = Literal["", "running", "complete", "failed", "waiting"]
CheckResult = Literal["", "unchanged", "changed", "failed"]  # a lookback re-check's finding
FileStatus = Literal["", "staged", "unchanged", "superseded", "rejected", "failed"]
DayStatus = Literal["", "built", "waiting", "gate_failed", "failed"]  # "": never decided yet
PendingNeed = Literal["", "build", "gate"]  # "": nothing pending

# --- field names other modules read from a decoded entry (status views, reconcile) -------------

STATUS = "status"
REASON = "reason"
ERRORS = "errors"
WARNINGS = "warnings"
RULES = "rules"
UNKNOWN_COMPANIES = "unknown_companies"
PENDING = "pending"  # "build", "gate", or "" once settled
PENDING_TOKEN = "pending_token"  # changes with every mark
PENDING_RUN_ID = "pending_run_id"  # the run whose input asked for the rebuild
PENDING_SINCE = "pending_since"  # when the day was first marked since it was last settled
PENDING_FIELDS = (PENDING, PENDING_TOKEN, PENDING_RUN_ID, PENDING_SINCE)


@dataclass(frozen=True, kw_only=True)
class LedgerRecord:
    """What every record carries besides its own fields; none of it is a stored key."""

    PARTITION: ClassVar[str]

    # Stored fields this version does not know, written back as read.
    unknown_fields: Mapping[str, Any] = field(default_factory=dict, repr=False)
    # The fields the entry was read with; None for a record made from scratch.
    read_fields: frozenset[str] | None = field(default=None, repr=False, compare=False)


R = TypeVar("R", bound=LedgerRecord)
_OWN_FIELDS = frozenset({"unknown_fields", "read_fields"})


def new_entry(cls: type[R], **values: Any) -> R:
    """A record made from scratch that stores only the fields given (a default one among them
    too), as a dict literal did; a field set later is stored once it is not its default."""
    return cls(**values, read_fields=frozenset(values))


def without(record: R, *names: str) -> R:
    """The record with the fields `names` back at their defaults and no longer stored (until set
    again): what deleting the keys from the entry did. A name it does not know is dropped from
    `unknown_fields`."""
    known = _stored_fields(type(record))
    stored = frozenset(known) if record.read_fields is None else record.read_fields
    return dataclasses.replace(
        record,
        **{name: known[name][1] for name in names if name in known},
        unknown_fields={k: v for k, v in record.unknown_fields.items() if k not in names},
        read_fields=stored - frozenset(names),
    )


def from_data(cls: type[R], data: Mapping[str, Any] | None) -> R:
    """The record of a stored entry (None: nothing stored); never fails on an entry's shape."""
    data = data or {}
    known = _stored_fields(cls)
    values = {
        name: _decode(hint, data[name], default) for name, (hint, default) in known.items() if name in data
    }
    unknown = {k: v for k, v in data.items() if k not in known}
    return cls(**values, unknown_fields=unknown, read_fields=frozenset(data) & frozenset(known))


def to_data(record: LedgerRecord) -> dict[str, Any]:
    """The flat mapping to store: `unknown_fields` first, so that a known field always wins."""
    return _fields_of(record, _encode)


def to_view(record: LedgerRecord) -> dict[str, Any]:
    """The mapping `to_data` stores, with lists as lists: what status views show."""
    return _fields_of(record, lambda hint, value: list(value) if _is_list(hint) else value)


def _fields_of(record: LedgerRecord, encode: Callable[[Any, Any], Any]) -> dict[str, Any]:
    data = dict(record.unknown_fields)
    read = record.read_fields
    for name, (hint, default) in _stored_fields(type(record)).items():
        value = getattr(record, name)
        if read is None or name in read or value != default:
            data[name] = encode(hint, value)
    return data


def _stored_fields(cls: type[LedgerRecord]) -> dict[str, tuple[Any, Any]]:
    """Stored field name -> (type hint, default), worked out once per record type."""
    found = _FIELDS.get(cls)
    if found is None:
        hints, blank = typing.get_type_hints(cls), cls()
        found = {
            f.name: (hints[f.name], getattr(blank, f.name))
            for f in dataclasses.fields(cls)
            if f.name not in _OWN_FIELDS
        }
        _FIELDS[cls] = found
    return found


_FIELDS: dict[type[LedgerRecord], dict[str, tuple[Any, Any]]] = {}


def _is_list(hint: Any) -> bool:
    return get_origin(hint) is tuple


def _encode(hint: Any, value: Any) -> Any:
    return json.dumps(list(value), ensure_ascii=False) if _is_list(hint) else value


def _decode(hint: Any, value: Any, default: Any) -> Any:
    """A stored value as the field's type; what cannot be read as it takes the default."""
    if _is_list(hint):
        return _decode_list(value)
    if value is None:
        return None if _allows_none(hint) else default
    base = _base_type(hint)
    if isinstance(value, base) and not (base is int and isinstance(value, bool)):
        return value
    try:
        return base(value) if base in (int, float, str) else bool(value)
    except (TypeError, ValueError):
        return default


def _decode_list(value: Any) -> tuple[Any, ...]:
    if isinstance(value, list | tuple):
        return tuple(value)
    if not value:
        return ()
    try:
        decoded = json.loads(value) if isinstance(value, str) else value
    except ValueError:
        return (value,)  # not JSON: the text itself is the one item
    return tuple(decoded) if isinstance(decoded, list) else (decoded,)


def _allows_none(hint: Any) -> bool:
    return isinstance(hint, types.UnionType) and type(None) in get_args(hint)


def _base_type(hint: Any) -> type:
    """str, int, float or bool: a Literal's values are str, an optional's is its other type."""
    if get_origin(hint) is Literal:
        return str
    if isinstance(hint, types.UnionType):
        return next(a for a in get_args(hint) if a is not type(None))  # type: ignore[no-any-return]
    return hint  # type: ignore[no-any-return]


# --- the partitions ---------------------------------------------------------------------------


@dataclass(frozen=True, kw_only=True)
class FetchRecord(LedgerRecord):
    """fetch/<activity date>: one fetch run's progress, and the day's lookback re-checks."""

    PARTITION: ClassVar[str] = names.FETCH

    run_id: str = ""
    status: FetchStatus = ""
    force: bool = False
    generation: int = 0  # the day's count of fetch runs: orders re-fetches, never the clock
    started_at: str = ""
    lease_until: str = ""  # past it, a running fetch shows as interrupted
    alive_at: str = ""  # the holder's heartbeat; cleared when the fetch stops by raising
    interrupted_at: str = ""  # a stop signal let go of the fetch then
    finished_at: str = ""
    manifest: str = ""
    pages: int = 0
    records: int = 0
    requests: int = 0  # HTTP requests of the run, retries included, over all its deliveries
    retry_s: float = 0.0  # seconds spent on failed requests and backoff, over all deliveries
    waited_s: float = 0.0  # seconds waited for the API's Retry-After, in this delivery's run
    attempts: int = 0  # deliveries of the run that ended in a transient error
    page_size: int = 0  # every page of the run is asked at this size, resumed or not
    lookback_fetch: str = ""  # why the lookback fetched the day (never fetched, or failed)
    lookback_fetch_at: str = ""
    error: str = ""  # why the run failed
    last_error: str = ""  # why the run is unfinished (it is redelivered)
    last_checked_at: str = ""
    last_check: CheckResult = ""
    last_check_error: str = ""
    retry_at: str = ""  # the API asked to wait until then
    waiting_for: str = ""
    retry_message_id: str = ""  # the scheduled request sent for that wait
    retry_message_at: str = ""


@dataclass(frozen=True, kw_only=True)
class UsageRecord(LedgerRecord):
    """usage/<activity date>: the staged usage dataset."""

    PARTITION: ClassVar[str] = names.USAGE

    version: str = ""  # orders a day's manifests: the later one wins
    run_id: str = ""
    manifest: str = ""
    checksum: str = ""
    received: int = 0
    staged: int = 0
    quarantined: int = 0
    unknown: int = 0
    unknown_companies: tuple[str, ...] = ()  # the first few companies whose usage is unknown
    duplicates: int = 0
    quarantine_summary: str = ""  # JSON text of the quality gate's summary, "" when none
    force: bool = False
    loaded_at: str = ""
    days_marked: bool = False  # the days it affects are marked for the transform


@dataclass(frozen=True, kw_only=True)
class CrmRecord(LedgerRecord):
    """crm/<snapshot date>: the staged snapshot."""

    PARTITION: ClassVar[str] = names.CRM

    version: str = ""
    run_id: str = ""
    blob: str = ""
    checksum: str = ""
    data_rows: int = 0
    staged: int = 0
    quarantined: int = 0
    loaded_at: str = ""
    days_marked: bool = False


@dataclass(frozen=True, kw_only=True)
class FileRecord(LedgerRecord):
    """files/<hash of the blob name>: what happened to a dropped CRM file."""

    PARTITION: ClassVar[str] = names.FILES

    blob: str = ""
    status: FileStatus = ""
    reason: str = ""  # why it was rejected, or failed
    snapshot_date: str = ""
    run_id: str = ""
    data_rows: int = 0
    staged: int = 0
    quarantined: int = 0
    quarantine: str = ""  # where its rejected rows (or the whole file) are
    warnings: tuple[str, ...] = ()
    loaded_at: str = ""


@dataclass(frozen=True, kw_only=True)
class DayRecord(LedgerRecord):
    """days/<activity date>: the analytics day's build state and its pending mark. Two writers
    share it (the loaders' marks, the transform's state), through compare-and-swap."""

    PARTITION: ClassVar[str] = names.DAYS

    status: DayStatus = ""
    reason: str = ""
    run_id: str = ""
    rules: str = ""  # the rules it was decided under, as `Rules.encode` gives them
    snapshot_date: str = ""
    rows: int = 0
    inserted: int = 0
    updated: int = 0
    deleted: int = 0
    warnings: tuple[str, ...] = ()
    errors: tuple[str, ...] = ()
    built_at: str = ""
    memory_mb: int | None = None  # the warehouse's memory cap a failed build ran under
    usage_rows: int = 0
    updated_at: str = ""
    pending: PendingNeed = ""
    pending_token: str = ""
    pending_run_id: str = ""
    pending_since: str = ""


# What the transform decides of a day, each state with exactly the fields it sets: settling a day
# writes them over its entry, and the entry's other fields (the pending mark's) stay.


@dataclass(frozen=True, kw_only=True)
class DayBuilt(LedgerRecord):
    status: Literal["built"] = "built"
    snapshot_date: str = ""
    rows: int = 0
    inserted: int = 0
    updated: int = 0
    deleted: int = 0
    warnings: tuple[str, ...] = ()
    errors: tuple[str, ...] = ()
    run_id: str = ""
    built_at: str = ""
    rules: str = ""


@dataclass(frozen=True, kw_only=True)
class DayWaiting(LedgerRecord):
    """No effective snapshot. A waiting day holds no rows: nothing of an earlier build may show."""

    status: Literal["waiting"] = "waiting"
    reason: str = ""
    run_id: str = ""
    rules: str = ""
    snapshot_date: str = ""
    rows: int = 0
    built_at: str = ""


@dataclass(frozen=True, kw_only=True)
class DayBlocked(LedgerRecord):
    """The quality gate blocked the day; its rows, if any, are an earlier build's."""

    status: Literal["gate_failed"] = "gate_failed"
    errors: tuple[str, ...] = ()
    warnings: tuple[str, ...] = ()
    run_id: str = ""
    rules: str = ""


@dataclass(frozen=True, kw_only=True)
class DayFailed(LedgerRecord):
    """The build did not fit in the warehouse's memory cap."""

    status: Literal["failed"] = "failed"
    reason: str = ""
    memory_mb: int | None = None
    usage_rows: int = 0


DayState = DayBuilt | DayWaiting | DayBlocked | DayFailed


@dataclass(frozen=True, kw_only=True)
class AlertRecord(LedgerRecord):
    """alerts/<fingerprint>: the last delivery of an alert, for its repeat window."""

    PARTITION: ClassVar[str] = names.ALERTS

    kind: str = ""
    stage: str = ""
    activity_date: str = ""
    message: str = ""
    last_sent: str = ""
    suppressed: int = 0  # repeats not sent within the window


@dataclass(frozen=True, kw_only=True)
class ReplayRecord(LedgerRecord):
    """replays/<activity date>: the fetch request queued for the day and not started yet."""

    PARTITION: ClassVar[str] = names.REPLAYS

    request_id: str = ""
    force: bool = False
    queued_at: str = ""


@dataclass(frozen=True, kw_only=True)
class QuotaRecord(LedgerRecord):
    """replays/quota:<key hash>: forced days one caller queued in one minute."""

    PARTITION: ClassVar[str] = names.REPLAYS

    window: str = ""  # the minute counted
    count: int = 0


@dataclass(frozen=True, kw_only=True)
class LockRecord(LedgerRecord):
    """locks/<what>: a lease."""

    PARTITION: ClassVar[str] = names.LOCKS

    holder: str = ""  # "" when free
    expires_at: str = ""


@dataclass(frozen=True, kw_only=True)
class ApiRecord(LedgerRecord):
    """api/unreachable: the last time the Product Usage API did not answer at all."""

    PARTITION: ClassVar[str] = names.API

    url: str = ""  # public: never its password
    until: str = ""
    message: str = ""
    day: str = ""


@dataclass(frozen=True, kw_only=True)
class HealthRecord(LedgerRecord):
    """health/probe: written and read back by GET /api/health."""

    PARTITION: ClassVar[str] = names.HEALTH

    checked_at: str = ""


def stamp_time(stamp: str) -> datetime:
    """A time the ledger stored (ISO 8601, UTC when it names no zone). One that cannot be read
    counts as long ago: an entry that cannot say when it expires has expired."""
    try:
        when = datetime.fromisoformat(stamp)
    except ValueError:
        return datetime.min.replace(tzinfo=UTC)
    return when if when.tzinfo else when.replace(tzinfo=UTC)
