"""Typed ledger records: today's stored entries read the same, and the codec is tolerant."""

from __future__ import annotations

import dataclasses

from shared.domain import ledger_records as lr
from shared.domain.ledger_records import DayRecord, FileRecord, UsageRecord, from_data, to_data

# A `days` entry as the previous version stored it: a build, then a pending mark beside it.
STORED_DAY = {
    "status": "built",
    "snapshot_date": "2026-10-01",
    "rows": 12,
    "inserted": 3,
    "updated": 1,
    "deleted": 0,
    "warnings": '["coverage 80% (caf\\u00e9)"]',
    "errors": "[]",
    "run_id": "crm-0123456789ab",
    "built_at": "2026-10-02T06:00:00+00:00",
    "rules": '{"churn_max_contact_age_days":30,"churn_min_rolling_users":10,"crm_max_snapshot_age_days":7}',
    "updated_at": "2026-10-02T06:00:01+00:00",
    "pending": "build",
    "pending_token": "fetch-1/abc",
    "pending_run_id": "fetch-1",
    "pending_since": "2026-10-02T07:00:00+00:00",
}


def test_an_entry_in_todays_stored_shape_reads_typed_and_writes_back_as_it_was() -> None:
    day = from_data(DayRecord, STORED_DAY)
    assert (day.status, day.rows, day.pending, day.pending_run_id) == ("built", 12, "build", "fetch-1")
    assert (day.warnings, day.errors) == (("coverage 80% (café)",), ())
    back = to_data(day)
    assert back.keys() == STORED_DAY.keys()
    assert from_data(DayRecord, back) == day


def test_unknown_fields_are_kept_and_missing_ones_take_defaults() -> None:
    day = from_data(DayRecord, {"pending": "gate", "written_by_a_newer_version": 7})
    assert (day.status, day.rows, day.memory_mb, day.warnings) == ("", 0, None, ())
    cleared = dataclasses.replace(day, pending="")
    assert to_data(cleared) == {"written_by_a_newer_version": 7, "pending": ""}


def test_a_record_read_keeps_its_shape_and_gains_only_what_is_set() -> None:
    marked = from_data(DayRecord, {"pending": "build", "pending_token": "t"})
    built = dataclasses.replace(marked, status="built", rows=4)
    assert to_data(built) == {"pending": "build", "pending_token": "t", "status": "built", "rows": 4}


def test_a_record_made_from_scratch_is_written_whole_with_lists_as_json_text() -> None:
    data = to_data(FileRecord(blob="crm/a.csv", status="staged", warnings=("no date in the file name",)))
    assert data.keys() == {f.name for f in dataclasses.fields(FileRecord)} - {"unknown_fields", "read_fields"}
    assert data["warnings"] == '["no date in the file name"]' and data["reason"] == ""


def test_values_that_cannot_be_read_as_their_type_take_the_default() -> None:
    usage = from_data(
        UsageRecord, {"staged": "12", "received": "many", "force": 1, "unknown_companies": "not json"}
    )
    assert (usage.staged, usage.received, usage.force) == (12, 0, True)
    assert usage.unknown_companies == ("not json",)  # shown as it is, not lost
    assert from_data(DayRecord, {"memory_mb": None, "rows": None}).memory_mb is None
    assert from_data(DayRecord, {"rows": None}).rows == 0


def test_nothing_stored_reads_as_the_defaults_and_writes_nothing() -> None:
    assert from_data(DayRecord, None) == DayRecord()
    assert to_data(from_data(DayRecord, None)) == {}


def test_the_field_name_constants_are_stored_keys() -> None:
    day_fields = {f.name for f in dataclasses.fields(DayRecord)}
    named = {lr.STATUS, lr.REASON, lr.ERRORS, lr.WARNINGS, lr.RULES, *lr.PENDING_FIELDS}
    assert named <= day_fields
    assert lr.UNKNOWN_COMPANIES in {f.name for f in dataclasses.fields(UsageRecord)}


def test_every_record_names_its_partition() -> None:
    from shared.domain import names

    records = [c for c in vars(lr).values() if isinstance(c, type) and issubclass(c, lr.LedgerRecord)]
    partitions = {c.PARTITION for c in records if hasattr(c, "PARTITION")}
    assert partitions == {
        names.FETCH, names.USAGE, names.CRM, names.FILES, names.DAYS, names.ALERTS,
        names.REPLAYS, names.LOCKS, names.API, names.HEALTH,
    }  # fmt: skip


def test_a_day_state_sets_fields_of_the_day_entry_only() -> None:
    day_fields = {f.name for f in dataclasses.fields(DayRecord)}
    for state in (lr.DayBuilt, lr.DayWaiting, lr.DayBlocked, lr.DayFailed):
        assert to_data(state()).keys() <= day_fields, state
        assert not to_data(state()).keys() & set(lr.PENDING_FIELDS), state
