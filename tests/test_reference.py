"""The from-scratch oracle (``tests/reference.py``) against the golden case and hand-computed rows.

The golden raw files are staged here by a minimal, independent re-implementation of
the contract's validation rules (sections 1 and 2), so that this test depends on
nothing in the pipeline itself.
"""

from __future__ import annotations

import csv
import json
import re
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta, timezone
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

from tests.reference import (
    COLUMNS,
    CrmRow,
    Settings,
    diff_tables,
    expected_table,
    load_expected_csv,
)
from tests.support import GOLDEN

EXPECTED_CSV = GOLDEN.expected_csv

CRM_REQUIRED = ("company_id", "name", "country", "industry_tag", "last_contact_at")
CRM_MAX_QUARANTINED_SHARE = 0.05
DATE_IN_NAME = re.compile(r"\d{4}-\d{2}-\d{2}")


# ----------------------------------------------------------- minimal staging


@dataclass
class StageStats:
    records: int = 0
    staged: int = 0
    dropped: dict[str, int] = field(default_factory=dict)

    def drop(self, reason: str) -> None:
        self.dropped[reason] = self.dropped.get(reason, 0) + 1

    @property
    def dropped_total(self) -> int:
        return sum(self.dropped.values())


def _date_in_name(path: Path) -> date:
    match = DATE_IN_NAME.search(path.name)
    assert match is not None, path
    return date.fromisoformat(match.group(0))


def _is_count(value: Any) -> bool:
    return type(value) is int and value >= 0  # bool is not a count


def stage_usage_file(path: Path) -> tuple[date, dict[str, tuple[int, int]], StageStats]:
    day = _date_in_name(path)
    records = json.loads(path.read_text(encoding="utf-8"))
    assert isinstance(records, list), path
    stats = StageStats(records=len(records))
    staged: dict[str, tuple[int, int]] = {}
    for record in records:
        company_id = record.get("company_id") if isinstance(record, dict) else None
        if not isinstance(company_id, str) or not company_id.strip():
            stats.drop("blank company_id")
        elif not (_is_count(record.get("active_users")) and _is_count(record.get("events"))):
            stats.drop("bad counts")
        elif record.get("date") != day.isoformat():
            stats.drop("wrong date")
        elif company_id in staged:
            stats.drop("duplicate")
        else:
            staged[company_id] = (record["active_users"], record["events"])
    stats.staged = len(staged)
    return day, staged, stats


def parse_last_contact(text: str | None) -> datetime | None:
    """ISO date or date-time, optional offset (none = UTC) -> naive UTC. Raises ValueError."""
    if text is None:
        return None
    if len(text) == 10:
        return datetime.combine(date.fromisoformat(text), datetime.min.time())
    parsed = datetime.fromisoformat(text)
    if parsed.tzinfo is not None:
        parsed = parsed.astimezone(UTC).replace(tzinfo=None)
    return parsed


def stage_crm_file(path: Path) -> tuple[date, dict[str, CrmRow] | None, StageStats]:
    """Returns ``None`` as the snapshot when the whole file is rejected."""
    snapshot_date = _date_in_name(path)
    with path.open(encoding="utf-8-sig", newline="") as handle:
        rows = list(csv.reader(handle))
    header = [cell.strip().lower() for cell in rows[0]]
    header = ["name" if cell == "company_name" else cell for cell in header]
    assert all(column in header for column in CRM_REQUIRED), (path, header)
    position = {column: header.index(column) for column in CRM_REQUIRED}

    stats = StageStats(records=len(rows) - 1)
    snapshot: dict[str, CrmRow] = {}
    for cells in rows[1:]:
        values: dict[str, str | None] = {}
        for column, index in position.items():
            text = cells[index].strip() if index < len(cells) else ""
            values[column] = text or None
        company_id = values["company_id"]
        if company_id is None:
            stats.drop("blank company_id")
            continue
        try:
            last_contact = parse_last_contact(values["last_contact_at"])
        except ValueError:
            stats.drop("bad last_contact_at")
            continue
        if company_id in snapshot:
            stats.drop("earlier duplicate")
            del snapshot[company_id]  # re-insert: the last valid row wins
        snapshot[company_id] = (values["name"], values["country"], values["industry_tag"], last_contact)
    stats.staged = len(snapshot)
    if stats.records == 0 or stats.dropped_total > CRM_MAX_QUARANTINED_SHARE * stats.records:
        return snapshot_date, None, stats
    return snapshot_date, snapshot, stats


@dataclass
class StagedGolden:
    usage: dict[date, dict[str, tuple[int, int]]]
    snapshots: dict[date, dict[str, CrmRow]]
    stats: dict[str, StageStats]


def stage_golden(root: Path = GOLDEN.root) -> StagedGolden:
    usage: dict[date, dict[str, tuple[int, int]]] = {}
    snapshots: dict[date, dict[str, CrmRow]] = {}
    stats: dict[str, StageStats] = {}
    for path in sorted((root / "api").glob("usage_*.json")):
        day, records, file_stats = stage_usage_file(path)
        usage[day] = records
        stats[f"api/{path.name}"] = file_stats
    for path in sorted((root / "crm").glob("companies_*.csv")):
        snapshot_date, snapshot, file_stats = stage_crm_file(path)
        if snapshot is not None:
            snapshots[snapshot_date] = snapshot
        stats[f"crm/{path.name}"] = file_stats
    return StagedGolden(usage, snapshots, stats)


def _report(problems: list[str], limit: int = 25) -> str:
    shown = "\n".join(problems[:limit])
    more = f"\n... and {len(problems) - limit} more" if len(problems) > limit else ""
    return f"{len(problems)} difference(s):\n{shown}{more}"


# ------------------------------------------------------------------- golden


@pytest.fixture(scope="module")
def golden() -> StagedGolden:
    # Deliberately not a skip: a missing golden case must fail, not pass silently.
    assert EXPECTED_CSV.is_file(), f"no golden case at {GOLDEN}"
    return stage_golden()


def test_golden_staging_counts(golden: StagedGolden) -> None:
    for name, stats in sorted(golden.stats.items()):
        print(f"{name}: {stats.records} records, {stats.staged} staged, dropped {stats.dropped}")
    assert sorted(golden.usage) == [date(2026, 10, day) for day in range(1, 11)]
    # No drop for 2026-10-05 and 2026-10-09 (README); none of the others is rejected.
    assert sorted(golden.snapshots) == [date(2026, 10, day) for day in (1, 2, 3, 4, 6, 7, 8, 10)]
    dropped = {name: stats.dropped for name, stats in golden.stats.items() if stats.dropped}
    assert dropped == {
        "api/usage_2026-10-02.json": {"blank company_id": 1},
        "api/usage_2026-10-03.json": {"bad counts": 1},
        "api/usage_2026-10-04.json": {"wrong date": 1},
        "api/usage_2026-10-05.json": {"blank company_id": 1},
        "api/usage_2026-10-08.json": {"blank company_id": 1, "bad counts": 1},
        "crm/companies_2026-10-02.csv": {"blank company_id": 1, "earlier duplicate": 1},
        "crm/companies_2026-10-03.csv": {"blank company_id": 1, "earlier duplicate": 1},
        "crm/companies_2026-10-04.csv": {"bad last_contact_at": 1},
        "crm/companies_2026-10-07.csv": {"blank company_id": 1, "earlier duplicate": 1},
        "crm/companies_2026-10-08.csv": {"blank company_id": 1, "earlier duplicate": 1},
        "crm/companies_2026-10-10.csv": {"bad last_contact_at": 1},
    }
    # The later row of a duplicate is the one staged.
    assert golden.snapshots[date(2026, 10, 2)]["c-010023"][:2] == ("Zoë & Co 23", "DE")
    assert golden.snapshots[date(2026, 10, 3)]["c-010015"][:2] == ("Initech 15", "JP")


def test_golden_expected_table_matches_oracle(golden: StagedGolden) -> None:
    actual = expected_table(golden.usage, golden.snapshots)
    expected = load_expected_csv(EXPECTED_CSV)
    problems = diff_tables(actual, expected)
    assert problems == [], _report(problems)
    assert len(actual) == 454


# ------------------------------------------------------ hand-computed cases

D1 = date(2026, 10, 1)
PLUS_TWO = timezone(timedelta(hours=2))


def _d(day: int) -> date:
    return date(2026, 10, day)


def _row(rows: list[dict[str, Any]], company_id: str, day: date) -> dict[str, Any]:
    matches = [row for row in rows if row["company_id"] == company_id and row["activity_date"] == day]
    assert len(matches) == 1, (company_id, day, matches)
    return matches[0]


def test_company_absent_from_snapshot_gets_null_crm_columns() -> None:
    usage = {D1: {"c-usage-only": (4, 10)}}
    snapshots = {D1: {"c-crm-only": ("Acme", "NL", "saas", datetime(2026, 9, 29, 23, 30))}}

    rows = expected_table(usage, snapshots)

    assert [(row["company_id"], row["activity_date"]) for row in rows] == [
        ("c-crm-only", D1),
        ("c-usage-only", D1),
    ]
    assert set(rows[0]) == set(COLUMNS)
    assert rows[0] == {
        "company_id": "c-crm-only",
        "activity_date": D1,
        "company_name": "Acme",
        "country": "NL",
        "industry_tag": "saas",
        "last_contact_at": datetime(2026, 9, 29, 23, 30),
        "crm_snapshot_date": D1,
        "active_users": 0,
        "events": 0,
        "events_per_user": None,
        "rolling_7d_active_users": 0,
        "rolling_7d_events": 0,
        "usage_days_observed_7d": 1,
        "usage_unknown_7d": 0,
        "days_since_last_contact": 2,
        "is_churn_risk": True,  # rolling users = 0
    }
    assert rows[1] == {
        "company_id": "c-usage-only",
        "activity_date": D1,
        "company_name": None,
        "country": None,
        "industry_tag": None,
        "last_contact_at": None,
        "crm_snapshot_date": D1,
        "active_users": 4,
        "events": 10,
        "events_per_user": Decimal("2.5000"),
        "rolling_7d_active_users": 4,
        "rolling_7d_events": 10,
        "usage_days_observed_7d": 1,
        "usage_unknown_7d": 0,
        "days_since_last_contact": None,
        "is_churn_risk": True,  # 4 < 10 and never contacted
    }


def test_snapshot_older_than_max_age_means_day_not_built() -> None:
    usage = {_d(d): {"c-1": (20, 40)} for d in (1, 8, 9)}
    snapshots = {_d(1): {"c-1": ("Acme", "NL", "saas", None)}}

    rows = expected_table(usage, snapshots)

    # 10-08 is 7 days after the snapshot (allowed), 10-09 is 8 days (too old: waits).
    assert [(row["activity_date"], row["crm_snapshot_date"]) for row in rows] == [
        (_d(1), _d(1)),
        (_d(8), _d(1)),
    ]
    older_allowed = expected_table(usage, snapshots, Settings(crm_max_snapshot_age_days=8))
    assert [row["activity_date"] for row in older_allowed] == [_d(1), _d(8), _d(9)]
    assert expected_table(usage, snapshots, days=[_d(9)]) == []


def test_latest_snapshot_on_or_before_the_day_is_used() -> None:
    usage = {_d(3): {"c-1": (1, 1)}}
    snapshots = {
        _d(1): {"c-1": ("Old", "NL", "saas", None)},
        _d(2): {"c-1": ("New", "DE", "edu", None)},
        _d(4): {"c-1": ("Future", "FR", "media", None)},
    }
    (row,) = expected_table(usage, snapshots)
    assert (row["company_name"], row["country"], row["crm_snapshot_date"]) == ("New", "DE", _d(2))


def test_day_without_staged_usage_is_not_built() -> None:
    usage = {_d(1): {"c-1": (20, 40)}}
    snapshots = {_d(1): {"c-1": ("Acme", "NL", "saas", None)}, _d(2): {"c-1": ("Acme", "NL", "saas", None)}}
    assert [row["activity_date"] for row in expected_table(usage, snapshots)] == [_d(1)]


def test_zero_rolling_users_is_churn_even_when_recently_contacted() -> None:
    contacted = datetime(2026, 10, 9, 8, 0)
    usage = {_d(3): {"c-1": (5, 50)}, _d(10): {"c-1": (0, 7)}}
    snapshots = {_d(10): {"c-1": ("Acme", "NL", "saas", contacted)}}

    (row,) = expected_table(usage, snapshots)

    # The window is 10-04..10-10: the 10-03 usage has dropped out of it.
    assert row["rolling_7d_active_users"] == 0
    assert row["rolling_7d_events"] == 7
    assert row["events_per_user"] is None
    assert row["usage_days_observed_7d"] == 1
    assert row["days_since_last_contact"] == 1
    assert row["is_churn_risk"] is True


def test_churn_thresholds_on_rolling_users_and_contact_age() -> None:
    usage = {_d(d): {"low-recent": (3, 3), "low-stale": (3, 3), "high-stale": (5, 5)} for d in (9, 10)}
    snapshots = {
        _d(10): {
            "low-recent": (None, None, None, datetime(2026, 9, 10, 23, 59)),  # 30 days before 10-10
            "low-stale": (None, None, None, datetime(2026, 9, 9, 0, 0)),  # 31 days
            "high-stale": (None, None, None, datetime(2026, 1, 1)),
        }
    }
    rows = expected_table(usage, snapshots)
    by_company = {row["company_id"]: row for row in rows}
    assert by_company["low-recent"]["days_since_last_contact"] == 30
    assert by_company["low-recent"]["rolling_7d_active_users"] == 6
    assert by_company["low-recent"]["is_churn_risk"] is False
    assert by_company["low-stale"]["days_since_last_contact"] == 31
    assert by_company["low-stale"]["is_churn_risk"] is True
    assert by_company["high-stale"]["rolling_7d_active_users"] == 10  # not < 10
    assert by_company["high-stale"]["is_churn_risk"] is False
    custom = expected_table(usage, snapshots, Settings(churn_min_rolling_users=11))
    assert {row["company_id"]: row["is_churn_risk"] for row in custom}["high-stale"] is True


def test_days_since_last_contact_null_when_never_contacted() -> None:
    usage = {_d(5): {"c-1": (50, 100)}}
    snapshots = {_d(4): {"c-1": ("Acme", "NL", "saas", None), "c-2": ("Beta", "DE", "edu", None)}}
    rows = expected_table(usage, snapshots)
    assert [row["days_since_last_contact"] for row in rows] == [None, None]
    assert [row["last_contact_at"] for row in rows] == [None, None]
    # Plenty of users: not at risk even though never contacted; c-2 has none: at risk.
    assert [row["is_churn_risk"] for row in rows] == [False, True]
    assert [row["crm_snapshot_date"] for row in rows] == [_d(4), _d(4)]


def test_usage_days_observed_counts_a_zero_record_dataset() -> None:
    usage: dict[date, dict[str, tuple[int, int]]] = {
        _d(1): {"c-1": (2, 3)},  # outside the 7-day window of 10-08
        _d(2): {"c-1": (4, 8)},
        _d(4): {},  # staged, zero records
        _d(8): {"c-1": (1, 0)},
    }
    snapshots = {_d(1): {"c-1": ("Acme", "NL", "saas", None)}, _d(6): {"c-1": ("Acme", "NL", "saas", None)}}

    rows = expected_table(usage, snapshots)

    assert [row["activity_date"] for row in rows] == [_d(1), _d(2), _d(4), _d(8)]
    zero_day = _row(rows, "c-1", _d(4))
    assert (zero_day["active_users"], zero_day["events"]) == (0, 0)
    assert zero_day["rolling_7d_active_users"] == 6
    assert zero_day["usage_days_observed_7d"] == 3  # 10-01, 10-02, 10-04
    day8 = _row(rows, "c-1", _d(8))
    assert day8["rolling_7d_active_users"] == 5  # 10-02..10-08: 4 + 0 + 1
    assert day8["rolling_7d_events"] == 8
    assert day8["usage_days_observed_7d"] == 3  # 10-02, 10-04, 10-08
    assert day8["events_per_user"] == Decimal("0.0000")
    assert day8["crm_snapshot_date"] == _d(6)


def test_events_per_user_rounds_half_up_to_four_places() -> None:
    usage = {D1: {"a": (3, 2), "b": (8, 1), "c": (32, 1), "d": (32, 3)}}  # 0.66.., 0.125, 0.03125, 0.09375
    snapshots: dict[date, dict[str, CrmRow]] = {D1: {}}
    values = [row["events_per_user"] for row in expected_table(usage, snapshots)]
    assert [str(value) for value in values] == ["0.6667", "0.1250", "0.0313", "0.0938"]


# --------------------------------------------------- load_expected_csv / diff


def _sample_rows() -> list[dict[str, Any]]:
    usage = {D1: {"c-1": (3, 10), "c-2": (0, 1)}}
    snapshots = {D1: {"c-1": ('Stark\nIndustries, "1"', "JP", "saas", datetime(2026, 9, 30, 22, 5))}}
    return expected_table(usage, snapshots)


def test_load_expected_csv_round_trip(tmp_path: Path) -> None:
    rows = _sample_rows()
    path = tmp_path / "expected.csv"
    with path.open("w", encoding="utf-8", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(COLUMNS))
        writer.writeheader()
        for row in rows:
            cells = {key: "" if value is None else value for key, value in row.items()}
            cells["is_churn_risk"] = "true" if row["is_churn_risk"] else "false"
            last_contact = row["last_contact_at"]
            cells["last_contact_at"] = last_contact.isoformat(sep=" ") if last_contact else ""
            writer.writerow(cells)
    loaded = load_expected_csv(path)
    assert loaded == rows
    assert loaded[0]["company_name"] == 'Stark\nIndustries, "1"'
    assert loaded[1]["events_per_user"] is None and loaded[1]["is_churn_risk"] is True


def test_diff_tables_reports_each_kind_of_difference() -> None:
    expected = _sample_rows()
    assert diff_tables([dict(row) for row in expected], expected) == []

    same_number = [dict(row) for row in expected]
    same_number[0]["events_per_user"] = Decimal("3.33330")  # the same number, another scale
    assert diff_tables(same_number, expected) == []

    close = [dict(row) for row in expected]
    close[0]["events_per_user"] = Decimal("3.3334")  # the contract asks for exact: no tolerance
    assert diff_tables(close, expected) == [
        "c-1 2026-10-01: events_per_user: actual=Decimal('3.3334') expected=Decimal('3.3333')"
    ]

    changed = [dict(row) for row in expected]
    changed[0]["events_per_user"] = Decimal("3.3350")
    changed[0]["country"] = None
    changed[1]["is_churn_risk"] = False
    assert diff_tables(changed, expected) == [
        "c-1 2026-10-01: country: actual=None expected='JP'",
        "c-1 2026-10-01: events_per_user: actual=Decimal('3.3350') expected=Decimal('3.3333')",
        "c-2 2026-10-01: is_churn_risk: actual=False expected=True",
    ]

    extra = {**expected[0], "company_id": "c-9"}
    problems = diff_tables([expected[0], extra], expected)
    assert problems == ["c-2 2026-10-01: row missing from actual", "c-9 2026-10-01: unexpected row in actual"]


def test_diff_tables_ignores_lineage_and_accepts_database_shapes() -> None:
    expected = _sample_rows()
    from_db = []
    for row in expected:
        db_row = dict(row, pipeline_run_id="run-1", loaded_at=datetime(2026, 10, 2))
        db_row["activity_date"] = datetime.combine(row["activity_date"], datetime.min.time())
        db_row["is_churn_risk"] = int(row["is_churn_risk"])  # BIT
        if row["last_contact_at"] is not None:  # the same instant, offset-aware (e.g. TIMESTAMPTZ)
            db_row["last_contact_at"] = row["last_contact_at"].replace(tzinfo=UTC).astimezone(PLUS_TWO)
        from_db.append(db_row)
    assert diff_tables(from_db, expected) == []
    from_db[0]["rolling_7d_events"] = 11
    assert diff_tables(from_db, expected) == ["c-1 2026-10-01: rolling_7d_events: actual=11 expected=10"]
