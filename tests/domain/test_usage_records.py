"""Usage record rules (contract section 1), with the same text limits as CRM rows (section 2)."""

from __future__ import annotations

import gc
from types import MappingProxyType
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from shared.domain.usage_page import parse_page
from shared.domain.usage_records import (
    INT_MAX,
    LongInteger,
    ValidatedDay,
    fold_records,
    plainly_valid_columns,
    reason_kind,
    record_problem,
    refused_for_counts,
    row_of,
    valid_row,
    validate_page,
)

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
        ({"events": 2**31}, "events is out of range"),
        ({"date": "2026-11-21"}, "is not the requested date"),
    ],
)
def test_invalid_records_say_why(fields: dict[str, Any], problem: str) -> None:
    reason = record_problem(record(**fields), DAY)
    assert reason is not None and problem in reason


# Issue 22: a reason says what was there, starting with the field (so its kind can be counted).
@pytest.mark.parametrize(
    ("fields", "reason"),
    [
        ({"active_users": "14"}, 'active_users is a string: "14"'),
        ({"events": 1.5}, "events is a fraction: 1.5"),
        ({"active_users": True}, "active_users is a boolean: true"),
        ({"events": None}, "events is null"),
        ({"active_users": 3_000_000_000}, "active_users is out of range: 3000000000"),
        ({"events": 1e300}, "events is out of range: 1e+300"),
        ({"events": float("inf")}, "events is out of range: Infinity"),
        ({"events": float("nan")}, "events is not a number: NaN"),
        ({"events": -2.0}, "events is negative: -2.0"),
        ({"events": [1]}, "events is an array: [1]"),
        ({"active_users": {"n": 1}}, 'active_users is an object: {"n": 1}'),
        ({"active_users": 10**400}, "active_users is out of range: an integer of about 401 digits"),
        ({"events": LongInteger("9" * 10_000)}, "events is out of range: 999999999999... (10000 digits)"),
        ({"company_id": 123}, "company_id is a number: 123"),
        ({"company_id": None}, "company_id is null"),
        ({"company_id": "\ud800x"}, 'company_id is not valid Unicode text (a lone surrogate): "\\ud800x"'),
        ({"date": "2026/11/20"}, 'date is not the requested date 2026-11-20: "2026/11/20"'),
    ],
)
def test_a_reason_says_what_was_there(fields: dict[str, Any], reason: str) -> None:
    assert record_problem(record(**fields), DAY) == reason
    assert reason_kind(reason) == reason.split(": ")[0].split(" (")[0]


def test_a_missing_count_and_a_record_that_is_no_object() -> None:
    incomplete = record()
    del incomplete["events"]
    assert record_problem(incomplete, DAY) == "events is missing"
    assert record_problem(12, DAY) == "record is not an object: 12"


@pytest.mark.parametrize("count", [12, 12.0, 0.0, -0.0, float(INT_MAX)])
def test_an_integral_number_is_a_count_and_is_staged_as_an_int(count: float) -> None:
    rec = record(active_users=count, events=count)
    assert record_problem(rec, DAY) is None
    for row in (valid_row(rec, DAY), row_of(rec)):
        assert row == ("c-1", int(count), int(count))
        assert row is not None and type(row[1]) is int and type(row[2]) is int
    day = ValidatedDay()
    validate_page(day, DAY, "page-1", [rec])
    assert day.staged_rows() == [("c-1", int(count), int(count))] and not day.rejected


def test_refused_for_counts_names_the_company_only_when_its_counts_are_the_problem() -> None:
    assert refused_for_counts(record(company_id="  H-001 ", active_users="14"), DAY) == "H-001"
    assert refused_for_counts(record(events=None), DAY) == "c-1"
    assert refused_for_counts(record(), DAY) is None  # valid
    assert refused_for_counts(record(active_users=12.0), DAY) is None  # valid too
    assert refused_for_counts(record(company_id=" ", events="1"), DAY) is None  # no company to name
    assert refused_for_counts(record(company_id=7, events="1"), DAY) is None
    assert refused_for_counts(record(company_id="\ud800", events="1"), DAY) is None
    assert refused_for_counts(record(date="2026-11-21", events="1"), DAY) is None  # another day's
    assert refused_for_counts(["c-1"], DAY) is None


def test_a_page_with_an_integer_too_long_to_convert_is_read_and_the_record_refused() -> None:
    body = b'{"data": [{"company_id": "c-1", "date": "%s", "active_users": %s, "events": 1},' % (
        DAY.encode(),
        b"7" * 100_000,
    )
    body += (
        b' {"company_id": "c-2", "date": "%s", "active_users": 2, "events": 3}], "has_next_page": false}'
        % (DAY.encode())
    )
    day = ValidatedDay()
    validate_page(day, DAY, "page-1", parse_page(1, body).records)
    assert day.staged_rows() == [("c-2", 2, 3)]
    assert [r.reason for r in day.rejected] == [
        "active_users is out of range: 777777777777... (100000 digits)"
    ]


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
    st.integers(min_value=0, max_value=2**31 + 5).map(float),
    st.sampled_from([12.0, -0.0, 0.5, 1e300, float(2**31 - 1), float(2**31), float("inf")]),
    st.text(max_size=70),
    st.sampled_from(["\ud800", "c-\udfff", " \ud83d "]),
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
        assert fast == row_of(record)
        assert type(fast[1]) is int and type(fast[2]) is int
    day = ValidatedDay()
    validate_page(day, DAY, "page-1", [record])
    assert day.received == 1 and len(day.staged_rows()) + len(day.rejected) == 1


# "One record can never stop a page, a day or a build" (contract section 1): any JSON value at
# all, as json.loads can return it (lone surrogates, huge and non-finite numbers, nesting).
_json_leaves = st.one_of(
    st.none(),
    st.booleans(),
    st.integers() | st.sampled_from([2**31, 10**300, -(10**30)]),
    st.floats(allow_nan=True, allow_infinity=True),
    st.text(),
    st.sampled_from(["\ud800", "\udfff-x", DAY, "c-1", " ", "12", LongInteger("1" * 5000)]),
)
_json_values = st.recursive(
    _json_leaves,
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=5), inner, max_size=3),
    max_leaves=8,
)
_json_records = st.one_of(
    _json_values,
    st.fixed_dictionaries(
        {},
        optional={
            "company_id": _json_values | st.sampled_from(["c-1", " c-2 ", "\ud800"]),
            "date": _json_values | st.just(DAY),
            "active_users": _json_values | st.sampled_from([0, 12, 12.0, INT_MAX]),
            "events": _json_values | st.sampled_from([0, 7, 7.0]),
        },
    ),
)


@settings(max_examples=400)
@given(st.lists(_json_records, max_size=6))
def test_any_json_at_all_is_staged_or_quarantined_never_an_exception(records: list[Any]) -> None:
    day = ValidatedDay()
    validate_page(day, DAY, "page-1", records)
    assert day.received == len(records)
    assert len(day.staged_rows()) + day.duplicates + len(day.rejected) == len(records)
    for company_id, users, events in day.staged_rows():
        assert type(users) is int and type(events) is int and min(users, events) >= 0
        company_id.encode("utf-8")  # valid text: every warehouse takes it
    for rejected in day.rejected:
        rejected.reason.encode("utf-8")  # printable anywhere
        assert len(rejected.reason) < 300
        company = refused_for_counts(rejected.record, DAY)
        assert company is None or rejected.reason.startswith(("active_users ", "events ", "conflicting"))


# Issue 24: a page is checked a field at a time (`plainly_valid_columns`); a page it does not
# take is folded record by record. Both must give the day the record rules give.
_valid_records = st.builds(
    lambda cid, users, events: {"company_id": cid, "date": DAY, "active_users": users, "events": events},
    st.sampled_from(["c-1", "c-2", "c-3", " c-4", "c-5\t", "x" * 64]),
    st.integers(min_value=0, max_value=3) | st.just(INT_MAX),
    st.integers(min_value=0, max_value=3),
)
# A valid record with one field changed to what is just beside the rule (or removed).
_edge_values = {
    "company_id": ["", "  ", "x" * 65, " " + "x" * 64, "c\x7f", "c\x1f", "Zoë", EMOJI, "\ud800", 7, None],
    "active_users": [-1, INT_MAX + 1, True, 3.0, None, "7", LongInteger("1" * 30)],
    "events": [-1, INT_MAX + 1, False, 0.0, 2.5, "0", [1]],
    "date": ["2026-11-21", None, 20261120],
}
_REMOVED = object()
_edges = st.sampled_from(
    [(name, value) for name, values in _edge_values.items() for value in values]
    + [(name, _REMOVED) for name in _edge_values]
)
_one_off_records = st.builds(
    lambda valid, edge: {
        **{k: v for k, v in valid.items() if k != edge[0]},
        **({} if edge[1] is _REMOVED else {edge[0]: edge[1]}),
    },
    _valid_records,
    _edges,
)
_pages = st.one_of(
    st.lists(_valid_records, min_size=1, max_size=4),
    st.builds(
        lambda valid, odd, at: [*valid[:at], odd, *valid[at:]],
        st.lists(_valid_records, max_size=4),
        _one_off_records,
        st.integers(min_value=0, max_value=4),
    ),
    st.lists(_valid_records | _one_off_records | _records, max_size=4),
)


@settings(max_examples=600)
@given(_pages)
def test_the_page_check_takes_only_pages_the_rule_accepts_whole_and_stages_the_same_rows(
    records: list[Any],
) -> None:
    columns = plainly_valid_columns(records, DAY)
    if columns is not None:
        assert all(record_problem(r, DAY) is None for r in records)
        assert list(zip(*columns, strict=True)) == [row_of(r) for r in records]
        assert all(type(n) is int for n in columns[1] + columns[2])


def test_a_page_of_plain_records_is_taken_by_the_page_check_not_record_by_record(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The fast path must be taken, not only be right when taken: a typo in one of its field
    names would send every page record by record, and every other test would stay green."""
    import shared.domain.usage_records as usage_records

    page = [record(company_id=f"c-{n}", active_users=n, events=2 * n) for n in range(50)]
    assert plainly_valid_columns(page, DAY) is not None
    monkeypatch.setattr(usage_records, "fold_records", lambda *a, **k: pytest.fail("record by record"))
    day = ValidatedDay()
    validate_page(day, DAY, "page-1", page)
    assert len(day.staged_rows()) == 50


def test_the_page_check_leaves_a_mapping_that_is_not_a_dict_to_the_record_rule() -> None:
    not_a_dict = MappingProxyType(record())
    assert record_problem(not_a_dict, DAY) is not None
    assert plainly_valid_columns([record(), not_a_dict], DAY) is None


@settings(max_examples=400)
@given(st.lists(_pages, max_size=4))
def test_a_day_folded_page_by_page_is_the_day_folded_record_by_record(pages: list[list[Any]]) -> None:
    by_page, by_record = ValidatedDay(), ValidatedDay()
    for number, page in enumerate(pages):
        validate_page(by_page, DAY, f"page-{number}", page)
        fold_records(by_record, DAY, f"page-{number}", page)
    assert by_page == by_record
    assert by_page.staged_rows() == list(by_page.rows_to_stage()) == list(by_page.rows_to_stage())


def test_a_validated_day_holds_no_object_per_company_for_the_collector() -> None:
    """A tuple per staged row is one more object per company for the cyclic collector to walk
    (15 ms a 100k day) and to hold; the rows are kept in columns instead."""
    pages = [[record(company_id=f"c-{p}-{i}", events=i) for i in range(500)] for p in range(4)]
    gc.collect()
    gc.disable()
    try:
        before = len(gc.get_objects())
        day = ValidatedDay()
        for number, page in enumerate(pages):
            validate_page(day, DAY, f"page-{number}", page)
        held = len(gc.get_objects()) - before
    finally:
        gc.enable()
    assert len(day.rows_to_stage()) == 2000
    assert held < 100
