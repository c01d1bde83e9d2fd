"""The fetch entry as a typed record (issue 19): an entry the previous version wrote (a dict
literal) reads with every field it had, writes back as it was, and a cleared field's key goes
away as deleting it did."""

from __future__ import annotations

from dataclasses import replace

from shared.domain import names
from shared.domain.ledger_records import FetchRecord, new_entry, without
from shared.ports import RunLedger
from shared.services.ledger import put_record, read_record

DAY = "2026-10-01"
# A fetch that the lookback started, redelivered twice, exactly as fetch.py wrote it before.
OLD_FETCH = {
    "lookback_fetch": "its last fetch had failed: fetched again by the lookback, once per daily run",
    "lookback_fetch_at": "2026-10-02T06:00:00+00:00",
    "last_checked_at": "2026-10-01T06:00:00+00:00",
    "last_check": "unchanged",
    "run_id": "fetch-20261002T060000-abcdef",
    "status": "running",
    "force": False,
    "started_at": "2026-10-02T06:00:00.123456+00:00",
    "lease_until": "2026-10-02T07:00:00.123456+00:00",
    "alive_at": "2026-10-02T06:00:15.5+00:00",
    "generation": 3,
    "requests": 7,
    "retry_s": 12.5,
    "waited_s": 2.0,
    "attempts": 2,
    "last_error": "page 2: HTTP 503 (2 attempts of this fetch made 7 HTTP requests in all)",
    "written_by_a_newer_version": "x",
}


def test_a_fetch_entry_the_previous_version_wrote_reads_every_field(ledger: RunLedger) -> None:
    ledger.put(names.FETCH, DAY, OLD_FETCH)
    fetch = read_record(ledger, FetchRecord, DAY)
    assert fetch is not None
    assert (fetch.alive_at, fetch.attempts, fetch.waited_s, fetch.retry_s, fetch.requests) == (
        "2026-10-02T06:00:15.5+00:00",
        2,
        2.0,
        12.5,
        7,
    )
    assert fetch.lookback_fetch.startswith("its last fetch had failed")
    assert fetch.lookback_fetch_at == "2026-10-02T06:00:00+00:00"
    assert fetch.unknown_fields == {"written_by_a_newer_version": "x"}
    put_record(ledger, DAY, replace(fetch, attempts=3))
    again = ledger.get(names.FETCH, DAY)
    assert again is not None and dict(again.data) == {**OLD_FETCH, "attempts": 3}


def test_a_cleared_field_is_no_longer_stored(ledger: RunLedger) -> None:
    ledger.put(names.FETCH, DAY, OLD_FETCH)
    fetch = read_record(ledger, FetchRecord, DAY)
    assert fetch is not None
    put_record(ledger, DAY, without(fetch, "alive_at", "waited_s", "written_by_a_newer_version"))
    stored = ledger.get(names.FETCH, DAY)
    gone = {"alive_at", "waited_s", "written_by_a_newer_version"}
    assert stored is not None and dict(stored.data) == {k: v for k, v in OLD_FETCH.items() if k not in gone}
    cleared = read_record(ledger, FetchRecord, DAY)
    assert cleared is not None and (cleared.alive_at, cleared.waited_s) == ("", 0.0)


def test_a_new_entry_stores_the_fields_given_and_no_others(ledger: RunLedger) -> None:
    started = new_entry(FetchRecord, run_id="fetch-1", status="running", force=False, generation=1)
    put_record(ledger, DAY, replace(started, alive_at="2026-10-02T06:00:00+00:00"))
    stored = ledger.get(names.FETCH, DAY)
    assert stored is not None and dict(stored.data) == {
        "run_id": "fetch-1",
        "status": "running",
        "force": False,  # given, so stored though it is the default
        "generation": 1,
        "alive_at": "2026-10-02T06:00:00+00:00",
    }
