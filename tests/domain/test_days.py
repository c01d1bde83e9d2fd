"""Day rules: the rolling window, the effective snapshot, the days a change affects."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta

import pytest
from hypothesis import given
from hypothesis import strategies as st

from shared.domain.days import (
    ROLLING_DAYS,
    days_affected_by_snapshot,
    days_affected_by_usage,
    effective_snapshot,
    parse_day,
    yesterday,
)
from shared.domain.quality import BASELINE_DAYS
from tests.support import day

SNAPSHOTS = [day("2026-10-01"), day("2026-10-04"), day("2026-10-20")]


def test_the_window_is_seven_calendar_days() -> None:
    assert ROLLING_DAYS == 7


@pytest.mark.parametrize(
    ("on", "expected"),
    [
        ("2026-09-30", None),  # before every snapshot: waits
        ("2026-10-01", "2026-10-01"),  # the snapshot's own day
        ("2026-10-03", "2026-10-01"),
        ("2026-10-04", "2026-10-04"),  # a newer one takes over on its day
        ("2026-10-11", "2026-10-04"),  # 7 days old: still effective
        ("2026-10-12", None),  # 8 days old: too old, the day waits
        ("2026-10-20", "2026-10-20"),
    ],
)
def test_effective_snapshot(on: str, expected: str | None) -> None:
    assert effective_snapshot(day(on), SNAPSHOTS, 7) == (day(expected) if expected else None)


def test_a_usage_change_reaches_the_rolling_window_and_the_gate_baseline() -> None:
    affected = days_affected_by_usage(day("2026-10-01"))
    assert affected[0] == day("2026-10-01")
    assert affected[-1] == day("2026-10-01") + timedelta(days=max(ROLLING_DAYS - 1, BASELINE_DAYS))
    assert affected == [day("2026-10-01") + timedelta(days=n) for n in range(8)]


def test_a_snapshot_affects_the_days_up_to_the_next_one_within_its_age() -> None:
    assert days_affected_by_snapshot(day("2026-10-01"), SNAPSHOTS, 7) == [
        day("2026-10-01") + timedelta(days=n) for n in range(3)
    ]
    assert days_affected_by_snapshot(day("2026-10-04"), SNAPSHOTS, 7) == [
        day("2026-10-04") + timedelta(days=n) for n in range(8)
    ]
    # A new snapshot between two takes over their days: the earlier one's reach shrinks.
    assert days_affected_by_snapshot(day("2026-10-02"), SNAPSHOTS, 7) == [
        day("2026-10-02"),
        day("2026-10-03"),
    ]


dates = st.dates(min_value=date(2026, 1, 1), max_value=date(2026, 3, 1))


@given(snapshot=dates, others=st.lists(dates, max_size=6), max_age=st.integers(0, 20))
def test_a_snapshot_affects_exactly_the_days_it_is_effective_for(
    snapshot: date, others: list[date], max_age: int
) -> None:
    affected = set(days_affected_by_snapshot(snapshot, others, max_age))
    known = {*others, snapshot}
    everything = [snapshot + timedelta(days=n) for n in range(-30, 60)]
    assert affected == {d for d in everything if effective_snapshot(d, known, max_age) == snapshot}


def test_yesterday_is_the_last_finished_utc_day() -> None:
    assert yesterday(datetime(2026, 11, 21, 0, 5, tzinfo=UTC)) == day("2026-11-20")


@pytest.mark.parametrize("text", ["2026-11-20", "2024-02-29"])
def test_a_day_is_written_yyyy_mm_dd(text: str) -> None:
    assert parse_day(text).isoformat() == text


@pytest.mark.parametrize(
    "text",
    [
        "20261120",
        "2026-W47-5",
        "2026-11-31",
        "2026-1-20",
        " 2026-11-20",
        "\uff12\uff10\uff12\uff16-11-20",  # full-width digits
        "",
        None,
        20261120,
    ],
)
def test_anything_else_is_refused_in_one_line(text: object) -> None:
    with pytest.raises(ValueError, match="not a date YYYY-MM-DD"):
        parse_day(text)


def test_days_before_1970_are_out_of_range_everywhere() -> None:
    from shared.domain.days import snapshot_day_problem, too_early
    from shared.domain.replay_request import BadReplayRequest, ReplayRequest
    from shared.domain.transform_plan import BadTransformMessage, TransformRequest

    today = date(2026, 12, 4)
    assert too_early(date(1970, 1, 1)) is None and too_early(date(1969, 12, 31))
    with pytest.raises(BadReplayRequest, match="before 1970-01-01"):
        ReplayRequest.parse({"date": "0001-01-01"}, today)
    with pytest.raises(BadTransformMessage, match="before 1970-01-01"):
        TransformRequest.from_json({"kind": "crm", "date": "0001-01-01"})
    assert snapshot_day_problem(today + timedelta(days=1), today) is None  # late evening west of UTC
    assert "in the future" in str(snapshot_day_problem(today + timedelta(days=2), today))
