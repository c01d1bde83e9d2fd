"""What a run reads of the ledger grows with the days it works on, not with the history."""

from __future__ import annotations

from datetime import date, timedelta

import pytest
from hypothesis import given
from hypothesis import strategies as st

from shared.adapters.ledger_sqlite import SqliteLedger
from shared.domain import names
from shared.services.ledger import entries_between


@given(st.dates(), st.dates())
def test_iso_dates_sort_as_text_as_they_do_as_dates(a: date, b: date) -> None:
    assert (a <= b) == (a.isoformat() <= b.isoformat())


@given(
    days=st.sets(st.dates(date(1970, 1, 1), date(2100, 12, 31)), max_size=30),
    first=st.dates(date(1969, 12, 1), date(2101, 1, 31)),
    span=st.integers(0, 20_000),
)
def test_entries_between_are_the_days_in_the_range(
    tmp_path_factory: pytest.TempPathFactory, days: set[date], first: date, span: int
) -> None:
    ledger = SqliteLedger(tmp_path_factory.mktemp("ledger") / "ledger.sqlite3")
    for day in days:
        ledger.put(names.USAGE, day.isoformat(), {"staged": 1})
    ledger.put(names.USAGE, "quota:x", {"staged": 0})  # a key that is no date sorts after them
    ledger.put(names.DAYS, first.isoformat(), {"status": "built"})
    last = first + timedelta(days=span) if span < (date.max - first).days else date.max
    got = entries_between(ledger, names.USAGE, first, last)
    assert [e.key for e in got] == [d.isoformat() for d in sorted(days) if first <= d <= last]
