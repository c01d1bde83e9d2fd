"""What a run reads of the ledger grows with the days it works on, not with the history."""

from __future__ import annotations

from datetime import date, timedelta
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from shared.adapters.ledger_sqlite import SqliteLedger
from shared.domain import names
from shared.domain.ledger_records import DayRecord, from_data
from shared.ports import LedgerEntry
from shared.services import pending
from shared.services.ledger import entries_between
from shared.services.pending import PendingDay, pending_days

FIRST = date(2024, 1, 1)


def _settled(n: int) -> dict[str, Any]:
    """A settled day as the transform leaves it, in the stored shapes a settled mark takes."""
    data: dict[str, Any] = {"status": "built", "rows": 12, "rules": "r", "warnings": '["w"]'}
    shape = n % 3
    if shape == 1:
        data.update(pending="", pending_token="", pending_run_id="", pending_since="")
    elif shape == 2:
        data["pending"] = None
    return data


def _decoded_marks(entries: list[LedgerEntry]) -> dict[date, PendingDay]:
    """pending_days' answer worked out the slow way: every entry decoded."""
    found = {}
    for entry in entries:
        record = from_data(DayRecord, entry.data)
        if record.pending:
            day = date.fromisoformat(entry.key)
            found[day] = PendingDay(day, record.pending, record.pending_token, record.pending_run_id)
    return found


def test_finding_the_marks_decodes_only_the_marked_days(monkeypatch: pytest.MonkeyPatch) -> None:
    history = [
        LedgerEntry(names.DAYS, (FIRST + timedelta(days=n)).isoformat(), _settled(n), f"e{n}")
        for n in range(730)
    ]
    marks = {
        "2026-01-01": {"pending": "build", "pending_token": "t1", "pending_run_id": "fetch-1"},
        "2026-01-02": {"status": "built", "pending": "gate", "pending_token": "t2"},
        "2026-01-03": {"pending": 0},  # a value no writer stores: decoded as the codec reads it
    }
    entries = history + [LedgerEntry(names.DAYS, k, v, "m") for k, v in marks.items()]
    decoded: list[object] = []

    def counting(cls: type, data: Any) -> Any:
        decoded.append(data)
        return from_data(cls, data)

    monkeypatch.setattr(pending, "from_data", counting)
    found = pending_days(entries)
    assert found == _decoded_marks(entries)
    assert sorted(found) == [date(2026, 1, 1), date(2026, 1, 2), date(2026, 1, 3)]
    assert len(decoded) == len(marks)  # not one decode per day of history


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
