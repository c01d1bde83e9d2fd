"""Day rules (contract section 3): the rolling window, the effective CRM snapshot, and which
analytics days a change to a staged input affects. Each rule is written here once; the build
SQL receives the window length and the snapshot age limit as parameters."""

from __future__ import annotations

from collections.abc import Iterable
from datetime import date, datetime, timedelta
from typing import Any

from shared.domain.quality import BASELINE_DAYS

ROLLING_DAYS = 7  # rolling_7d_* sum the 7 calendar days ending on activity_date


def parse_day(value: Any) -> date:
    """A calendar day written YYYY-MM-DD and nothing else: not 20261120, not a week date
    (2026-W47-5), which `date.fromisoformat` also takes. The CLI, HTTP and messages share it."""
    if (
        isinstance(value, str)
        and len(value) == 10
        and value[4] == "-"
        and value[7] == "-"
        and value.isascii()
    ):
        try:
            return date.fromisoformat(value)
        except ValueError:
            pass
    raise ValueError(f"not a date YYYY-MM-DD: {str(value)[:40]!r}")


def effective_snapshot(day: date, snapshot_dates: Iterable[date], max_age: int) -> date | None:
    """The latest snapshot on or before `day`, if it is at most `max_age` days old; else None
    (the day waits for a snapshot)."""
    candidates = [s for s in snapshot_dates if s <= day and (day - s).days <= max_age]
    return max(candidates) if candidates else None


def days_rebuilt_by_usage(day: date) -> list[date]:
    """Days whose rows may change when `day`'s usage changes: those whose rolling window holds
    it (D..D+6)."""
    return [day + timedelta(days=n) for n in range(ROLLING_DAYS)]


def days_rechecked_by_usage(day: date) -> list[date]:
    """Days whose quality-gate baseline holds `day` but whose rolling window does not (D+7):
    their gate is checked again; their rows cannot change."""
    return [day + timedelta(days=n) for n in range(ROLLING_DAYS, BASELINE_DAYS + 1)]


def days_affected_by_usage(day: date) -> list[date]:
    """Every day a change to `day`'s usage reaches: rows (D..D+6) or gate (up to D+7)."""
    return days_rebuilt_by_usage(day) + days_rechecked_by_usage(day)


def days_affected_by_snapshot(snapshot: date, snapshot_dates: Iterable[date], max_age: int) -> list[date]:
    """Days whose effective snapshot is `snapshot` once it is staged: derived from
    `effective_snapshot` itself, so the two cannot disagree."""
    known = {*snapshot_dates, snapshot}
    candidates = (snapshot + timedelta(days=n) for n in range(max(max_age, 0) + 1))
    return [d for d in candidates if effective_snapshot(d, known, max_age) == snapshot]


# The earliest day the pipeline works with. Earlier dates are typing mistakes (0001-01-01), and
# the rolling window and the snapshot age reach days before the ones asked for.
EARLIEST_DAY = date(1970, 1, 1)


def too_early(day: date) -> str | None:
    """Why `day` is out of the supported range, or None."""
    if day < EARLIEST_DAY:
        return f"{day} is before {EARLIEST_DAY}, the earliest day the pipeline works with"
    return None


def snapshot_day_problem(snapshot: date, today: date) -> str | None:
    """Why a CRM snapshot cannot be dated `snapshot` (from its file name), or None. Tomorrow is
    allowed: an export made early in the morning east of UTC (Asia, Oceania) carries its local
    date, which is tomorrow in UTC."""
    if problem := too_early(snapshot):
        return f"snapshot date {problem}"
    if snapshot > today + timedelta(days=1):
        return f"snapshot date {snapshot} (from the file name) is in the future; name the file after the day it describes"
    return None


def unfinished_day(day: date, today: date) -> str | None:
    """Why `day` cannot be run yet, or None. Only finished UTC days are fetched (contract
    section 3): a build of today would be marked done with half a day in it, and nothing
    would ever rebuild it."""
    if day >= today:
        when = "today" if day == today else "in the future"
        return f"{day} is {when}: only finished UTC days can be run (the last one is {today - timedelta(days=1)})"
    return None


def yesterday(now: datetime) -> date:
    """The day the daily timer fetches: the last finished UTC day."""
    return (now - timedelta(days=1)).date()
