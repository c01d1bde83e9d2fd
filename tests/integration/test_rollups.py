"""The weekly and monthly views against the golden table: every figure computed independently
here, from the expected daily rows, and compared exactly."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable
from datetime import date, timedelta
from decimal import ROUND_HALF_UP, Decimal
from typing import Any

import pytest

from shared.local.pipeline import LocalPipeline
from tests.reference import load_expected_csv
from tests.support import GOLDEN

Key = Callable[[date], tuple[Any, ...]]


def iso_week(day: date) -> tuple[Any, ...]:
    monday = day - timedelta(days=day.weekday())
    year, week, _ = day.isocalendar()
    return (year, week, monday, monday + timedelta(days=6))


def month(day: date) -> tuple[Any, ...]:
    first = day.replace(day=1)
    following = (first + timedelta(days=32)).replace(day=1)
    return (day.year, day.month, first, following - timedelta(days=1))


def average(total: int, days: int) -> Decimal:
    return (Decimal(total) / Decimal(days)).quantize(Decimal("0.0001"), rounding=ROUND_HALF_UP)


def expected_rollup(rows: list[dict[str, Any]], period: Key) -> dict[tuple[str, date], dict[str, Any]]:
    """Every company and period, from the daily rows, the way the data dictionary words it."""
    groups: dict[tuple[str, tuple[Any, ...]], list[dict[str, Any]]] = defaultdict(list)
    for row in rows:
        groups[(row["company_id"], period(row["activity_date"]))].append(row)
    out = {}
    for (company, key), days in groups.items():
        last = max(days, key=lambda r: r["activity_date"])
        users = sum(r["active_users"] for r in days)
        events = sum(r["events"] for r in days)
        out[(company, key[2])] = {
            "key": key,
            "days_built": len(days),
            "active_days": sum(1 for r in days if r["active_users"] > 0),
            "active_user_days": users,
            "avg_daily_active_users": average(users, len(days)),
            "total_events": events,
            "avg_daily_events": average(events, len(days)),
            "last_activity_date": last["activity_date"],
            "is_churn_risk": last["is_churn_risk"],
            "company_name": last["company_name"],
            "country": last["country"],
            "industry_tag": last["industry_tag"],
            "last_contact_at": last["last_contact_at"],
            "crm_snapshot_date": last["crm_snapshot_date"],
        }
    return out


@pytest.fixture(scope="module")
def golden_rows() -> list[dict[str, Any]]:
    return load_expected_csv(GOLDEN.expected_csv)


def build_golden(pipeline: LocalPipeline) -> None:
    for path in GOLDEN.crm_files():
        pipeline.drop_crm(path.read_bytes(), path.name)
    pipeline.replay({"from": "2026-10-01", "to": "2026-10-10"})


@pytest.mark.parametrize(
    ("view", "period", "key_columns"),
    [
        ("company_weekly_activity", iso_week, ("iso_year", "iso_week", "week_start", "week_end")),
        ("company_monthly_activity", month, ("year", "month", "month_start", "month_end")),
    ],
)
def test_the_views_hold_what_the_daily_rows_add_up_to(
    pipeline: LocalPipeline,
    golden_rows: list[dict[str, Any]],
    view: str,
    period: Key,
    key_columns: tuple[str, ...],
) -> None:
    build_golden(pipeline)
    expected = expected_rollup(golden_rows, period)
    con = pipeline.services.warehouse._con  # type: ignore[attr-defined]
    result = con.execute(f"SELECT * FROM analytics.{view}")  # noqa: S608 - fixed names
    columns = [d[0] for d in result.description]
    actual = [dict(zip(columns, row, strict=True)) for row in result.fetchall()]

    assert_rollup(view, actual, expected, key_columns)


def assert_rollup(
    view: str,
    actual: list[dict[str, Any]],
    expected: dict[tuple[str, date], dict[str, Any]],
    key_columns: tuple[str, ...],
) -> None:
    """Every row of the view is the expected period, column by column (the SQL Server suite too)."""
    assert len(actual) == len(expected) > 0
    for row in actual:
        want = expected[(row["company_id"], row[key_columns[2]])]
        assert tuple(row[c] for c in key_columns) == want["key"]
        for column, value in want.items():
            if column != "key":
                assert row[column] == value, (view, row["company_id"], column)


def test_a_week_spanning_two_months_is_one_week(
    pipeline: LocalPipeline, golden_rows: list[dict[str, Any]]
) -> None:
    """The golden days 2026-10-01..04 are the end of ISO week 40, which began in September."""
    build_golden(pipeline)
    con = pipeline.services.warehouse._con  # type: ignore[attr-defined]
    weeks = con.execute(
        "SELECT DISTINCT iso_week, week_start, week_end FROM analytics.company_weekly_activity ORDER BY 1"
    ).fetchall()
    assert weeks == [
        (40, date(2026, 9, 28), date(2026, 10, 4)),
        (41, date(2026, 10, 5), date(2026, 10, 11)),
    ]
    [(days,)] = con.execute(
        "SELECT MAX(days_built) FROM analytics.company_weekly_activity WHERE iso_week = 40"
    ).fetchall()
    assert days == 4  # only the four October days are built
