"""The lookback's digest of a day's records: the records, not their order or paging."""

from __future__ import annotations

from shared.domain.day_digest import day_digest, page_digest

DAY = "2026-10-01"
RECORDS = [
    {"company_id": f"c-{n}", "date": DAY, "active_users": n, "events": 10 * n} for n in range(1, 6)
] + [{"company_id": "c-9", "date": DAY, "active_users": "14", "events": 3}]  # refused: a string


def digest_of(*pages: list[dict[str, object]]) -> str | None:
    return day_digest(page_digest(page, DAY) for page in pages)


def test_the_same_records_in_any_order_on_any_pages_have_one_digest() -> None:
    assert digest_of(RECORDS) == digest_of(RECORDS[::-1]) == digest_of(RECORDS[4:], RECORDS[:4])


def test_a_count_sent_as_12_0_is_the_record_sent_as_12() -> None:
    as_float = [{**RECORDS[0], "events": float(RECORDS[0]["events"])}, *RECORDS[1:]]  # type: ignore[arg-type]
    assert digest_of(as_float) == digest_of(RECORDS)


def test_a_changed_count_a_missing_or_an_added_record_changes_it() -> None:
    corrected = [{**RECORDS[0], "active_users": 2}, *RECORDS[1:]]
    refused_other_way = [*RECORDS[:-1], {**RECORDS[-1], "active_users": "15"}]
    digests = {digest_of(RECORDS), digest_of(corrected), digest_of(RECORDS[1:]), digest_of(refused_other_way)}
    assert len(digests) == 4
    assert digest_of(RECORDS, RECORDS[:1]) != digest_of(RECORDS)  # a record twice is not once


def test_a_page_without_a_canonical_form_leaves_the_day_without_a_digest() -> None:
    assert day_digest([page_digest(RECORDS, DAY), None]) is None
