"""Validate API usage records (contract section 1) and drop page-drift duplicates."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from shared.domain.text_limits import MAX_COMPANY_ID, length_problem

INT_MAX = 2**31 - 1  # the warehouse columns are INT
UsageRow = tuple[str, int, int]  # company_id, active_users, events


@dataclass(frozen=True)
class RejectedRecord:
    source_blob: str
    index: int  # position within its page's `data`
    reason: str
    record: Any


@dataclass
class ValidatedDay:
    rows: dict[str, UsageRow] = field(default_factory=dict)  # company_id -> row, first seen wins
    rejected: list[RejectedRecord] = field(default_factory=list)
    received: int = 0
    duplicates: int = 0  # the same record again (page drift): staged once, not an error
    conflicts: int = 0  # the same company again with other counts: quarantined

    def staged_rows(self) -> list[UsageRow]:
        return list(self.rows.values())


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


def validate_page(result: ValidatedDay, day: str, source_blob: str, records: Iterable[Any]) -> None:
    """Fold one page's records into the day. Pages must be folded in page order."""
    for index, record in enumerate(records):
        result.received += 1
        problem = record_problem(record, day)
        if problem:
            result.rejected.append(RejectedRecord(source_blob, index, problem, record))
            continue
        company_id = record["company_id"].strip()
        row = (company_id, record["active_users"], record["events"])
        seen = result.rows.get(company_id)
        if seen is None:
            result.rows[company_id] = row
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
