"""Reconcile reads the day's ledger entry as a DayRecord: as status shows it, or as stored."""

from __future__ import annotations

from datetime import date
from typing import Any

from shared.domain.reconcile import DaySources, reconcile_day


def sources(day_state: dict[str, Any] | None) -> DaySources:
    return DaySources(date(2026, 10, 1), None, "not asked", None, [], {}, {}, None, {}, day_state)


def test_a_blocked_day_names_its_errors_whether_decoded_or_stored_as_json_text() -> None:
    for errors in (["zero usage records", "coverage 40%"], '["zero usage records", "coverage 40%"]'):
        found = reconcile_day(sources({"status": "gate_failed", "errors": errors, "pending": "build"}))
        blocked = next(f for f in found.findings if f.kind == "blocked")
        assert "(zero usage records; coverage 40%)" in blocked.text, errors
        assert any(f.kind == "rebuild_pending" for f in found.findings)
        assert found.summary["day_state"] == "gate_failed"


def test_a_day_never_decided_is_not_built() -> None:
    assert reconcile_day(sources(None)).summary["day_state"] == "not built"
    assert reconcile_day(sources({"pending": "gate"})).summary["day_state"] == "not built"
