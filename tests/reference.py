"""A deliberately simple, from-scratch oracle of ``analytics.company_daily_activity``.

This module re-derives the analytics table from *staged* inputs with plain Python
loops, straight from the rules of ``docs/contract.md`` section 3. It shares
no code with the SQL pipeline on purpose: tests compare the two. The one exception
is the churn rule's decision, declared once in ``shared/domain/churn_rule.py``
(pure, no SQL): the oracle asks it, and tests/infra/test_churn_rule_dialects.py
holds both dialects' SQL to it over every combination of its inputs.

Inputs are the staged datasets, already validated and de-duplicated:

* ``usage``: ``activity_date -> company_id -> (active_users, events)``. A day present
  with an empty mapping is a staged usage dataset with zero records.
* ``snapshots``: ``snapshot_date -> company_id -> (name, country, industry_tag,
  last_contact_at)`` with ``last_contact_at`` a naive UTC ``datetime`` or ``None``.

What the oracle does *not* model: the quality gate of contract section 5 (a day
whose usage fails it is not built unless forced). Pass ``days=`` to leave such days
out; by default every day whose usage is staged and that has an effective snapshot
is built, as the table rules say.
"""

from __future__ import annotations

import csv
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from decimal import ROUND_HALF_UP, Decimal, InvalidOperation, localcontext
from pathlib import Path
from typing import Any

from shared.domain.churn_rule import ChurnRule

UsageByDay = Mapping[date, Mapping[str, tuple[int, int]]]
CrmRow = tuple[str | None, str | None, str | None, datetime | None]
SnapshotsByDate = Mapping[date, Mapping[str, CrmRow]]
# Companies whose usage on a day is unknown (a record refused for its counts, none staged).
UnknownByDay = Mapping[date, frozenset[str] | set[str]]

COLUMNS: tuple[str, ...] = (
    "company_id",
    "activity_date",
    "company_name",
    "country",
    "industry_tag",
    "last_contact_at",
    "crm_snapshot_date",
    "active_users",
    "events",
    "events_per_user",
    "rolling_7d_active_users",
    "rolling_7d_events",
    "usage_days_observed_7d",
    "usage_unknown_7d",
    "days_since_last_contact",
    "is_churn_risk",
)

DATE_COLUMNS = frozenset({"activity_date", "crm_snapshot_date"})
DATETIME_COLUMNS = frozenset({"last_contact_at"})
INT_COLUMNS = frozenset(
    {
        "active_users",
        "events",
        "rolling_7d_active_users",
        "rolling_7d_events",
        "usage_days_observed_7d",
        "usage_unknown_7d",
        "days_since_last_contact",
    }
)
DECIMAL_COLUMNS = frozenset({"events_per_user"})
BOOL_COLUMNS = frozenset({"is_churn_risk"})
TEXT_COLUMNS = frozenset({"company_id", "company_name", "country", "industry_tag"})

WINDOW_DAYS = 7
FOUR_PLACES = Decimal("0.0001")


@dataclass(frozen=True)
class Settings:
    churn_min_rolling_users: int = 10
    churn_max_contact_age_days: int = 30
    crm_max_snapshot_age_days: int = 7


# --------------------------------------------------------------------------- rules


def effective_snapshot_date(snapshots: SnapshotsByDate, day: date, settings: Settings) -> date | None:
    """The latest snapshot date <= ``day``, if it is at most ``crm_max_snapshot_age_days`` old."""
    latest: date | None = None
    for snapshot_date in snapshots:
        if snapshot_date <= day and (latest is None or snapshot_date > latest):
            latest = snapshot_date
    if latest is None:
        return None
    if (day - latest).days > settings.crm_max_snapshot_age_days:
        return None
    return latest


def buildable_days(usage: UsageByDay, snapshots: SnapshotsByDate, settings: Settings) -> list[date]:
    """Days whose usage dataset is staged (even with zero records) and that have an effective snapshot."""
    return sorted(day for day in usage if effective_snapshot_date(snapshots, day, settings) is not None)


def events_per_user(active_users: int, events: int) -> Decimal | None:
    if active_users == 0:
        return None
    with localcontext() as ctx:
        ctx.prec = 50
        return (Decimal(events) / Decimal(active_users)).quantize(FOUR_PLACES, rounding=ROUND_HALF_UP)


def churn_rule(settings: Settings) -> ChurnRule:
    """The declared rule (shared/domain/churn_rule.py) at the settings' thresholds."""
    return ChurnRule(settings.churn_min_rolling_users, settings.churn_max_contact_age_days)


def is_churn_risk(
    rolling_active_users: int, days_since_last_contact: int | None, settings: Settings, unknown_days: int = 0
) -> bool | None:
    """The rule, or None (cannot tell) when it would flag a company whose usage is unknown on a
    day of the window: more users could only make it false."""
    return churn_rule(settings).is_churn_risk(rolling_active_users, days_since_last_contact, unknown_days)


def _build_row(
    company_id: str,
    day: date,
    snapshot_date: date,
    crm: CrmRow | None,
    usage: UsageByDay,
    settings: Settings,
    unknown: UnknownByDay,
) -> dict[str, Any]:
    day_usage = usage.get(day, {})
    is_unknown = company_id not in day_usage and company_id in unknown.get(day, ())
    active_users: int | None
    events: int | None
    active_users, events = (None, None) if is_unknown else day_usage.get(company_id, (0, 0))

    rolling_users = 0
    rolling_events = 0
    observed = 0
    unknown_days = 0
    for back in range(WINDOW_DAYS):
        window_day = day - timedelta(days=back)
        if window_day in usage:
            observed += 1
            users_then, events_then = usage[window_day].get(company_id, (0, 0))
            rolling_users += users_then
            rolling_events += events_then
        if company_id in unknown.get(window_day, ()) and company_id not in usage.get(window_day, {}):
            unknown_days += 1

    if crm is None:
        name = country = industry = None
        last_contact: datetime | None = None
    else:
        name, country, industry, last_contact = crm

    days_since: int | None = None
    if last_contact is not None:
        days_since = max((day - last_contact.date()).days, 0)

    return {
        "company_id": company_id,
        "activity_date": day,
        "company_name": name,
        "country": country,
        "industry_tag": industry,
        "last_contact_at": last_contact,
        "crm_snapshot_date": snapshot_date,
        "active_users": active_users,
        "events": events,
        "events_per_user": None if is_unknown else events_per_user(active_users or 0, events or 0),
        "rolling_7d_active_users": rolling_users,
        "rolling_7d_events": rolling_events,
        "usage_days_observed_7d": observed,
        "usage_unknown_7d": unknown_days,
        "days_since_last_contact": days_since,
        "is_churn_risk": is_churn_risk(rolling_users, days_since, settings, unknown_days),
    }


def expected_table(
    usage: UsageByDay,
    snapshots: SnapshotsByDate,
    settings: Settings = Settings(),
    days: Iterable[date] | None = None,
    unknown: UnknownByDay | None = None,
) -> list[dict[str, Any]]:
    """Every row of the analytics table for the given (default: every buildable) day.
    ``unknown``: the companies whose usage is unknown on a day (contract section 3); they add no
    row of their own.

    Days in ``days`` that are not buildable (usage not staged, or no effective
    snapshot) produce no rows. Rows are sorted by (activity_date, company_id).
    """
    buildable = buildable_days(usage, snapshots, settings)
    wanted = buildable if days is None else sorted(set(days) & set(buildable))

    rows: list[dict[str, Any]] = []
    for day in wanted:
        snapshot_date = effective_snapshot_date(snapshots, day, settings)
        assert snapshot_date is not None
        snapshot = snapshots[snapshot_date]
        companies = set(snapshot) | set(usage.get(day, {}))
        for company_id in sorted(companies):
            rows.append(
                _build_row(
                    company_id, day, snapshot_date, snapshot.get(company_id), usage, settings, unknown or {}
                )
            )
    rows.sort(key=lambda row: (row["activity_date"], row["company_id"]))
    return rows


# ----------------------------------------------------------------- expected CSV


def _parse_bool(text: str) -> bool:
    lowered = text.strip().lower()
    if lowered in ("true", "1"):
        return True
    if lowered in ("false", "0"):
        return False
    raise ValueError(f"not a boolean: {text!r}")


def _parse_cell(column: str, text: str) -> Any:
    if text == "":
        return None
    if column in DATE_COLUMNS:
        return date.fromisoformat(text)
    if column in DATETIME_COLUMNS:
        return datetime.fromisoformat(text)
    if column in INT_COLUMNS:
        return int(text)
    if column in DECIMAL_COLUMNS:
        return Decimal(text)
    if column in BOOL_COLUMNS:
        return _parse_bool(text)
    return text


def load_expected_csv(path: Path) -> list[dict[str, Any]]:
    """Parse a golden expected CSV (empty cell = NULL) into the shape ``expected_table`` returns."""
    with path.open(encoding="utf-8-sig", newline="") as handle:
        reader = csv.DictReader(handle)
        missing = [column for column in COLUMNS if column not in (reader.fieldnames or [])]
        if missing:
            raise ValueError(f"{path}: missing columns {missing}")
        rows = []
        for raw in reader:
            rows.append({column: _parse_cell(column, raw[column]) for column in COLUMNS})
    rows.sort(key=lambda row: (row["activity_date"], row["company_id"]))
    return rows


# ------------------------------------------------------------------------- diff


def _normalize(column: str, value: Any) -> Any:
    """Bring a value from either side (Python, DuckDB, CSV text) to one comparable form."""
    if value is None:
        return None
    if column in DATE_COLUMNS:
        if isinstance(value, datetime):
            return value.date()
        if isinstance(value, str):
            return date.fromisoformat(value)
        return value
    if column in DATETIME_COLUMNS:
        if isinstance(value, str):
            value = datetime.fromisoformat(value)
        if isinstance(value, datetime) and value.tzinfo is not None:
            value = value.astimezone(UTC).replace(tzinfo=None)
        return value
    if column in DECIMAL_COLUMNS:
        try:
            return Decimal(str(value))
        except InvalidOperation:
            return value
    if column in BOOL_COLUMNS:
        if isinstance(value, str):
            return _parse_bool(value)
        return bool(value)
    if column in INT_COLUMNS and not isinstance(value, bool):
        try:
            return int(value)
        except (TypeError, ValueError):
            return value
    return value


def _same(column: str, actual: Any, expected: Any, tolerance: Decimal) -> bool:
    if actual is None or expected is None:
        return actual is None and expected is None
    if column in DECIMAL_COLUMNS and isinstance(actual, Decimal) and isinstance(expected, Decimal):
        return abs(actual - expected) <= tolerance
    return type(actual) is type(expected) and actual == expected


def _index(
    rows: list[dict[str, Any]], side: str, problems: list[str]
) -> dict[tuple[Any, Any], dict[str, Any]]:
    indexed: dict[tuple[Any, Any], dict[str, Any]] = {}
    for row in rows:
        key = (row.get("company_id"), _normalize("activity_date", row.get("activity_date")))
        if key in indexed:
            problems.append(f"{key[0]} {key[1]}: duplicate row in {side}")
        indexed[key] = row
    return indexed


def diff_tables(
    actual: list[dict[str, Any]],
    expected: list[dict[str, Any]],
    tolerance: Decimal = Decimal(0),
) -> list[str]:
    """Human-readable differences keyed by (company_id, activity_date); ``[]`` if the tables agree.

    Only the columns of ``COLUMNS`` are compared (lineage columns such as
    ``pipeline_run_id`` / ``loaded_at`` are ignored), exactly after light normalisation
    (``events_per_user`` is compared as a Decimal: 6.0313 and 6.03130 are the same number).
    """
    problems: list[str] = []
    actual_rows = _index(actual, "actual", problems)
    expected_rows = _index(expected, "expected", problems)

    def sort_key(key: tuple[Any, Any]) -> tuple[str, str]:
        return (str(key[1]), str(key[0]))

    for key in sorted(set(actual_rows) | set(expected_rows), key=sort_key):
        label = f"{key[0]} {key[1]}"
        if key not in expected_rows:
            problems.append(f"{label}: unexpected row in actual")
            continue
        if key not in actual_rows:
            problems.append(f"{label}: row missing from actual")
            continue
        actual_row = actual_rows[key]
        expected_row = expected_rows[key]
        for column in COLUMNS:
            if column not in actual_row:
                problems.append(f"{label}: column {column} missing from actual")
                continue
            if column not in expected_row:
                problems.append(f"{label}: column {column} missing from expected")
                continue
            a = _normalize(column, actual_row[column])
            e = _normalize(column, expected_row[column])
            if not _same(column, a, e, tolerance):
                problems.append(f"{label}: {column}: actual={a!r} expected={e!r}")
    return problems
