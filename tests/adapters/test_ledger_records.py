"""Typed records over both ledgers: what the previous version stored reads the same, and two
writers of one entry keep each other's fields."""

from __future__ import annotations

from dataclasses import replace

from shared.domain import names
from shared.domain.ledger_records import DayRecord, FileRecord, UsageRecord
from shared.ports import RunLedger
from shared.services.ledger import put_record, query_records, read_record, update_record

# Entries exactly as the previous version wrote them (dict literals, lists as JSON text).
OLD_USAGE = {
    "version": "g000000000002",
    "run_id": "fetch-20261002T060000-abcdef",
    "manifest": "usage/2026-10-01/fetch-20261002T060000-abcdef/manifest.json",
    "checksum": "9f" * 32,
    "received": 13,
    "staged": 12,
    "quarantined": 1,
    "unknown": 1,
    "unknown_companies": '["c-007"]',
    "duplicates": 0,
    "quarantine_summary": '{"kinds":[["not_a_count",1,"active_users \\"14\\" is text","c-007"]]}',
    "force": False,
    "loaded_at": "2026-10-02T06:01:00+00:00",
    "days_marked": True,
}
OLD_REJECTED_FILE = {
    "blob": "crm_2026-10-01.csv",
    "status": "rejected",
    "reason": "no company_id column",
    "run_id": "crm-0123456789ab",
    "data_rows": 0,
    "quarantined": 0,
    "quarantine": "quarantine/crm-drop/crm_2026-10-01.csv/crm-0123456789ab/",
    "loaded_at": "2026-10-02T06:02:00+00:00",
}


def test_entries_the_previous_version_wrote_read_the_same(ledger: RunLedger) -> None:
    ledger.put(names.USAGE, "2026-10-01", OLD_USAGE)
    ledger.put(names.FILES, names.file_key("crm_2026-10-01.csv"), OLD_REJECTED_FILE)
    usage = read_record(ledger, UsageRecord, "2026-10-01")
    assert usage is not None
    assert (usage.staged, usage.unknown_companies, usage.days_marked) == (12, ("c-007",), True)
    (file,) = query_records(ledger, FileRecord).values()
    assert (file.status, file.reason, file.staged, file.warnings) == (
        "rejected",
        "no company_id column",
        0,
        (),
    )
    put_record(ledger, "2026-10-01", replace(usage, days_marked=False))
    again = ledger.get(names.USAGE, "2026-10-01")
    assert again is not None and dict(again.data) == {**OLD_USAGE, "days_marked": False}


def test_two_writers_of_a_day_keep_each_others_fields(ledger: RunLedger) -> None:
    ledger.put(names.DAYS, "2026-10-01", {"status": "built", "rows": 12, "written_by_a_newer_version": "x"})
    update_record(
        ledger,
        DayRecord,
        "2026-10-01",
        lambda day: replace(day or DayRecord(), pending="build", pending_token="t1"),
    )
    update_record(ledger, DayRecord, "2026-10-01", lambda day: replace(day or DayRecord(), status="waiting"))
    stored = ledger.get(names.DAYS, "2026-10-01")
    assert stored is not None and dict(stored.data) == {
        "status": "waiting",
        "rows": 12,
        "written_by_a_newer_version": "x",
        "pending": "build",
        "pending_token": "t1",
    }


def test_an_update_that_changes_nothing_writes_nothing(ledger: RunLedger) -> None:
    written = ledger.put(names.DAYS, "2026-10-01", {"status": "built", "warnings": '["caf\\u00e9"]'})
    update_record(ledger, DayRecord, "2026-10-01", lambda day: day)
    stored = ledger.get(names.DAYS, "2026-10-01")
    assert stored is not None and stored.etag == written.etag
