"""The CRM drop decision: accept (warnings to record and to alert on) or reject (with why)."""

from __future__ import annotations

from datetime import date

from shared.domain.crm_drop import (
    Accept,
    CheckedDrop,
    PreviousSnapshot,
    Reject,
    check_drop_date,
    decide_drop,
    replaced_snapshot_warning,
)

DAY = date(2026, 10, 8)
UNDATED = "no date in the file name; dated by its upload time 2026-10-08"


def checked(companies: int, warnings: tuple[str, ...] = ()) -> CheckedDrop:
    return CheckedDrop(DAY, data_rows=companies + 1, companies=companies, rejected=(), warnings=warnings)


def test_a_drop_like_the_last_one_is_accepted_and_an_undated_one_is_alerted_on() -> None:
    decision = decide_drop(
        checked(100, ("1 duplicate row", UNDATED)), PreviousSnapshot(date(2026, 10, 7), 100), forced=False
    )
    assert decision == Accept(warnings=("1 duplicate row", UNDATED), alerts=(UNDATED,))
    assert decide_drop(checked(5), None, forced=False) == Accept(warnings=(), alerts=())


def test_a_drop_that_lost_most_companies_is_rejected_unless_forced() -> None:
    previous = PreviousSnapshot(date(2026, 10, 7), 100)
    rejected = decide_drop(checked(10), previous, forced=False)
    assert isinstance(rejected, Reject) and rejected.data_rows == 11
    assert rejected.reason.startswith("10 companies, down 90%") and "--force" in rejected.reason
    forced = decide_drop(checked(10), previous, forced=True)
    assert isinstance(forced, Accept) and forced.alerts == forced.warnings
    assert forced.warnings[0].startswith("size check overridden by force: 10 companies")


def test_a_smaller_drop_warns_and_alerts() -> None:
    decision = decide_drop(checked(70, (UNDATED,)), PreviousSnapshot(date(2026, 10, 7), 100), forced=False)
    assert isinstance(decision, Accept) and decision.warnings[0] == UNDATED
    assert decision.alerts[-1] == UNDATED and decision.alerts[0].startswith("70 companies, down 30%")


def test_a_drop_dated_in_the_future_is_rejected_before_reading() -> None:
    assert check_drop_date(date(2026, 10, 20), DAY) is not None
    assert check_drop_date(DAY, DAY) is None


def test_a_drop_replacing_another_files_snapshot_is_said() -> None:
    said = replaced_snapshot_warning("crm_b.csv", "crm_a.csv", "2026-10-08")
    assert said is not None and said.startswith(
        "crm_b.csv replaces the snapshot of 2026-10-08 staged from crm_a.csv"
    )
    assert replaced_snapshot_warning("crm_a.csv", "crm_a.csv", "2026-10-08") is None
    assert replaced_snapshot_warning("crm_a.csv", "", "2026-10-08") is None
