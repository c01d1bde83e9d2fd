"""The `days` entry's two writers, on typed records: the loaders' marks and the transform's state."""

from __future__ import annotations

from collections.abc import Callable
from datetime import date

import pytest

from shared.domain import names
from shared.domain.ledger_records import DayBuilt, DayRecord, DayWaiting
from shared.ports import Services
from shared.services.ledger import read_record
from shared.services.pending import mark_days, pending_days, settle_day

DAY = date(2026, 10, 1)


@pytest.fixture
def services(make_services: Callable[..., Services], api) -> Services:
    return make_services(api)


def test_a_mark_on_a_new_day_writes_the_mark_alone(services: Services) -> None:
    mark_days(services, {DAY: "gate"}, "fetch-1")
    stored = services.ledger.get(names.DAYS, DAY.isoformat())
    assert stored is not None and set(stored.data) == {
        "pending",
        "pending_token",
        "pending_run_id",
        "pending_since",
    }


def test_a_state_settled_while_marked_again_keeps_the_new_mark(services: Services) -> None:
    mark_days(services, {DAY: "build"}, "fetch-1")
    seen = pending_days(services.ledger.query(names.DAYS))[DAY]
    settle_day(services, DAY, seen, DayBuilt(rows=12, snapshot_date="2026-09-30", warnings=("w",)))
    mark_days(services, {DAY: "gate"}, "crm-2")
    settle_day(services, DAY, seen, DayWaiting(reason="no CRM snapshot within 7 days", run_id="crm-2"))
    day = read_record(services.ledger, DayRecord, DAY.isoformat())
    assert day is not None
    assert (day.status, day.rows, day.snapshot_date, day.warnings) == ("waiting", 0, "", ("w",))
    assert (day.pending, day.pending_run_id) == ("gate", "crm-2")  # the later mark stands


def test_settling_with_nothing_to_say_writes_nothing(services: Services) -> None:
    settle_day(services, DAY, None)
    assert services.ledger.get(names.DAYS, DAY.isoformat()) is None
