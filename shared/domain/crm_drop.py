"""Whether a checked CRM drop is staged: accept it (with the warnings to record and to alert on)
or reject it (with the reason and the rows that made it). Pure: the staging service reads the
file, asks here, and carries the decision out."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date

from shared.domain.crm_csv import RejectedRow
from shared.domain.days import snapshot_day_problem
from shared.domain.quality import check_snapshot_size

FORCE_ADVICE = "if that is right, drop it again with --force (or upload it with blob metadata force=true)"
# Reader warnings that someone should hear of, not only find in the file's ledger entry.
ALERTED_READER_WARNINGS = ("no date in the file name", "no calendar date")


@dataclass(frozen=True)
class CheckedDrop:
    """What reading every row of a drop found."""

    snapshot_date: date
    data_rows: int
    companies: int  # rows to stage: valid, less the duplicates a later row replaced
    rejected: Sequence[RejectedRow]  # rows quarantined, the file staged without them
    warnings: Sequence[str]  # the reader's


@dataclass(frozen=True)
class PreviousSnapshot:
    """The latest snapshot staged before this one's date: the size check's yardstick."""

    snapshot_date: date
    companies: int


@dataclass(frozen=True)
class Accept:
    warnings: tuple[str, ...]  # recorded with the file, in this order
    alerts: tuple[str, ...]  # of those, the ones raised as alerts


@dataclass(frozen=True)
class Reject:
    reason: str
    rejected: tuple[RejectedRow, ...] = ()  # the rows that made it, quarantined with the file
    data_rows: int = 0


CrmDecision = Accept | Reject


def check_drop_date(snapshot_date: date, today: date) -> Reject | None:
    """A drop whose name dates it impossibly is rejected before a row is read."""
    problem = snapshot_day_problem(snapshot_date, today)
    return Reject(problem) if problem else None


def decide_drop(checked: CheckedDrop, previous: PreviousSnapshot | None, *, forced: bool) -> CrmDecision:
    """Accept the drop, unless it lost too many companies against the previous snapshot and was
    not forced. A forced drop's size errors become warnings; size warnings and an undated file
    are alerted on."""
    errors, size_warnings = check_snapshot_size(
        checked.companies,
        previous.companies if previous else None,
        previous.snapshot_date if previous else None,
    )
    if errors and not forced:
        return Reject(f"{errors[0]}; {FORCE_ADVICE}", data_rows=checked.data_rows)
    size_warnings += [f"size check overridden by force: {e}" for e in errors]
    undated = [w for w in checked.warnings if w.startswith(ALERTED_READER_WARNINGS)]
    return Accept(warnings=(*checked.warnings, *size_warnings), alerts=(*size_warnings, *undated))


def replaced_snapshot_warning(blob_name: str, previous_blob: str, key: str) -> str | None:
    """A drop that replaced the snapshot of its day staged from another file: a backlog of
    exports, or a file named for the wrong day. None when it is the same file (or the first)."""
    if not previous_blob or previous_blob == blob_name:
        return None
    return (
        f"{blob_name} replaces the snapshot of {key} staged from {previous_blob}"
        f" (both file names give {key}); if {previous_blob} was the right one, drop it again"
    )
