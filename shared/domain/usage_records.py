"""Validate API usage records (contract section 1) and drop page-drift duplicates."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from shared.domain.text_limits import MAX_COMPANY_ID, length_problem

INT_MAX = 2**31 - 1  # the warehouse columns are INT
UsageRow = tuple[str, int, int]  # company_id, active_users, events
MAX_REASON = 200  # a reason kept with an unknown day quotes the value: bounded, whatever was sent


@dataclass(frozen=True)
class RejectedRecord:
    source_blob: str
    index: int  # position within its page's `data`
    reason: str
    record: Any
    # The company whose usage on the day this rejection makes unknown: a valid company_id and
    # the requested date, refused for its counts (contract section 3). None otherwise.
    unknown_company: str | None = None


@dataclass
class ValidatedDay:
    rows: dict[str, UsageRow] = field(default_factory=dict)  # company_id -> row, first seen wins
    rejected: list[RejectedRecord] = field(default_factory=list)
    received: int = 0
    duplicates: int = 0  # the same record again (page drift): staged once, not an error
    conflicts: int = 0  # the same company again with other counts: quarantined

    def staged_rows(self) -> list[UsageRow]:
        return list(self.rows.values())

    def unknown_companies(self) -> dict[str, str]:
        """company_id -> reason for the companies whose usage on the day is unknown: a record of
        theirs was refused for its counts and none was staged (a quarantined record never
        adds a row; it makes the day unknown for a company that has no staged record)."""
        unknown: dict[str, str] = {}
        for rejected in self.rejected:
            company = rejected.unknown_company
            if company is not None and company not in self.rows:
                unknown.setdefault(company, rejected.reason[:MAX_REASON])
        return unknown


def _count_problem(name: str, value: Any) -> str | None:
    if isinstance(value, bool) or not isinstance(value, int):
        return f"{name} is not an integer: {value!r}"
    if value < 0:
        return f"{name} is negative: {value}"
    if value > INT_MAX:
        return f"{name} is out of range: {value}"
    return None


def record_problem(record: Any, day: str) -> str | None:
    """Why a record cannot be staged, or None when it is valid."""
    if not isinstance(record, dict):
        return "record is not an object"
    company_id = record.get("company_id")
    if not isinstance(company_id, str) or not company_id.strip():
        return "missing or blank company_id"
    problem = length_problem("company_id", company_id.strip(), MAX_COMPANY_ID)
    if problem:
        return problem
    if record.get("date") != day:
        return f"date {record.get('date')!r} is not the requested date {day}"
    return _count_problem("active_users", record.get("active_users")) or _count_problem(
        "events", record.get("events")
    )


def refused_for_counts(record: Any, day: str) -> str | None:
    """The stripped company_id of a record whose company and date are valid but whose counts
    are refused; None for any other record."""
    if not isinstance(record, dict) or record.get("date") != day:
        return None
    company_id = record.get("company_id")
    if not isinstance(company_id, str) or not company_id.strip():
        return None
    if length_problem("company_id", company_id.strip(), MAX_COMPANY_ID):
        return None
    counts = _count_problem("active_users", record.get("active_users")) or _count_problem(
        "events", record.get("events")
    )
    return company_id.strip() if counts else None


def valid_row(record: Any, day: str) -> UsageRow | None:
    """The staged row of a record that is plainly valid, or None to ask `record_problem`.

    The shape nearly every record has, decided without building a reason: a dict whose counts
    are ints (not bools: type() is exact) within INT range, the requested date, and a company id
    that is a non-blank string of at most 32 characters (so at most 64 UTF-16 code units
    whatever they are). It accepts only what `record_problem` accepts; anything else takes the
    slow path, which says why."""
    if type(record) is not dict:
        return None
    company_id, users, events = record.get("company_id"), record.get("active_users"), record.get("events")
    if (
        type(users) is int
        and type(events) is int
        and 0 <= users <= INT_MAX
        and 0 <= events <= INT_MAX
        and type(company_id) is str
        and record.get("date") == day
    ):
        company_id = company_id.strip()
        if 0 < len(company_id) <= _PLAINLY_SHORT:
            return (company_id, users, events)
    return None


_PLAINLY_SHORT = MAX_COMPANY_ID // 2  # a character is one or two UTF-16 code units


def validate_page(result: ValidatedDay, day: str, source_blob: str, records: Iterable[Any]) -> None:
    """Fold one page's records into the day. Pages must be folded in page order."""
    rows = result.rows
    index = -1
    for index, record in enumerate(records):  # index counts the records after the loop
        row = valid_row(record, day)
        if row is None:
            problem = record_problem(record, day)
            if problem:
                unknown = refused_for_counts(record, day)
                result.rejected.append(RejectedRecord(source_blob, index, problem, record, unknown))
                continue
            row = (record["company_id"].strip(), record["active_users"], record["events"])
        company_id = row[0]
        seen = rows.get(company_id)
        if seen is None:
            rows[company_id] = row
        elif seen == row:
            result.duplicates += 1
        else:
            # Drift that also changed the numbers: keep the first, quarantine the other, so
            # every record is accounted for and the choice does not depend on arrival order of runs.
            result.conflicts += 1
            result.rejected.append(
                RejectedRecord(
                    source_blob, index, f"conflicting duplicate of company_id {company_id}", record
                )
            )
    result.received += index + 1
