"""Usage record rules (contract section 1), with the same text limits as CRM rows (section 2)."""

from __future__ import annotations

from typing import Any

import pytest

from shared.domain.usage_records import ValidatedDay, record_problem, validate_page

DAY = "2026-11-20"
EMOJI = "\U0001f600"  # one character, two UTF-16 code units


def record(**fields: Any) -> dict[str, Any]:
    return {"company_id": "c-1", "date": DAY, "active_users": 3, "events": 9, **fields}


@pytest.mark.parametrize(
    ("fields", "problem"),
    [
        ({"company_id": "x" * 65}, "company_id longer than 64 characters"),
        ({"company_id": EMOJI * 33}, "company_id longer than 64 UTF-16 code units"),  # 33 characters
        ({"company_id": "  "}, "missing or blank company_id"),
        ({"active_users": -1}, "active_users is negative: -1"),
        ({"events": 1.5}, "events is not an integer: 1.5"),
        ({"events": True}, "events is not an integer: True"),
        ({"events": 2**31}, "events is out of range"),
        ({"date": "2026-11-21"}, "is not the requested date"),
    ],
)
def test_invalid_records_say_why(fields: dict[str, Any], problem: str) -> None:
    reason = record_problem(record(**fields), DAY)
    assert reason is not None and problem in reason


@pytest.mark.parametrize("company_id", ["x" * 64, EMOJI * 32, "Zoë & Co"])
def test_ids_up_to_64_units_are_valid(company_id: str) -> None:
    assert record_problem(record(company_id=company_id), DAY) is None


def test_page_drift_is_staged_once_and_a_conflicting_repeat_is_quarantined() -> None:
    day = ValidatedDay()
    validate_page(day, DAY, "page-1", [record(), record(company_id="c-2")])
    validate_page(day, DAY, "page-2", [record(), record(company_id="c-2", events=10)])
    assert day.staged_rows() == [("c-1", 3, 9), ("c-2", 3, 9)]
    assert (day.received, day.duplicates, day.conflicts) == (4, 1, 1)
    assert [r.reason for r in day.rejected] == ["conflicting duplicate of company_id c-2"]
