"""`utc_day_that_lasts`: the day a test names is still the day when it ends."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta

from tests.support import utc_day_that_lasts


class FakeClock:
    """A clock that moves only when slept on."""

    def __init__(self, at: datetime) -> None:
        self.at = at
        self.slept: list[float] = []

    def now(self) -> datetime:
        return self.at

    def sleep(self, seconds: float) -> None:
        self.slept.append(seconds)
        self.at += timedelta(seconds=seconds)


def test_midday_is_today_at_once() -> None:
    clock = FakeClock(datetime(2026, 3, 29, 12, 0, tzinfo=UTC))
    assert utc_day_that_lasts(clock.now, clock.sleep) == date(2026, 3, 29)
    assert clock.slept == []


def test_a_minute_before_midnight_waits_for_it_and_is_the_next_day() -> None:
    clock = FakeClock(datetime(2026, 12, 31, 23, 59, tzinfo=UTC))
    assert utc_day_that_lasts(clock.now, clock.sleep) == date(2027, 1, 1)
    assert clock.slept and sum(clock.slept) < 61  # to midnight, no further


def test_more_than_the_margin_before_midnight_is_today() -> None:
    clock = FakeClock(datetime(2026, 10, 25, 23, 57, 59, tzinfo=UTC))
    assert utc_day_that_lasts(clock.now, clock.sleep) == date(2026, 10, 25)
    assert clock.slept == []
