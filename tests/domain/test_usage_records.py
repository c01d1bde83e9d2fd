"""Usage record rules (contract section 1), with the same text limits as CRM rows (section 2)."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from shared.domain.usage_records import ValidatedDay, record_problem, valid_row, validate_page

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


_values = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-5, max_value=2**31 + 5) | st.sampled_from([2**31 - 1, 2**31, -(2**63), 2**64]),
    st.floats(allow_nan=True),
    st.text(max_size=70),
    st.sampled_from(["", "  ", " c-1 ", "x" * 32, "x" * 33, EMOJI * 32, EMOJI * 33, "\u3000c-1\u3000", DAY]),
    st.lists(st.integers(), max_size=2),
)
_records = st.one_of(
    st.dictionaries(st.sampled_from(["company_id", "date", "active_users", "events", "extra"]), _values),
    st.builds(
        lambda cid, users, events, date: {
            "company_id": cid,
            "date": date,
            "active_users": users,
            "events": events,
        },
        _values,
        _values,
        _values,
        st.sampled_from([DAY, "2026-11-21", None]),
    ),
    _values,
)


@settings(max_examples=600)
@given(_records)
def test_the_fast_path_accepts_exactly_what_the_rule_accepts_and_stages_the_same_row(record: Any) -> None:
    fast = valid_row(record, DAY)
    if record_problem(record, DAY) is not None:
        assert fast is None
    elif fast is not None:
        assert fast == (record["company_id"].strip(), record["active_users"], record["events"])
    day = ValidatedDay()
    validate_page(day, DAY, "page-1", [record])
    assert day.received == 1 and len(day.rows) + len(day.rejected) == 1
