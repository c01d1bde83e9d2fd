"""What the ledger knows about each day and each dropped file, for `status` (CLI and HTTP)."""

from __future__ import annotations

from dataclasses import asdict
from datetime import date
from typing import Any

from shared.domain import names
from shared.domain.days import days_affected_by_snapshot
from shared.domain.ledger_records import (
    RULES,
    CrmRecord,
    DayRecord,
    FetchRecord,
    FileRecord,
    LedgerRecord,
    UsageRecord,
    to_view,
)
from shared.domain.rules import Rules, stale_days
from shared.ports import RunLedger, Services
from shared.services.ledger import query_records, read_record

# The partitions keyed by activity date that a day's status shows, and their records.
DAY_RECORDS: dict[str, type[LedgerRecord]] = {
    names.FETCH: FetchRecord,
    names.USAGE: UsageRecord,
    names.DAYS: DayRecord,
}
DAY_PARTITIONS = tuple(DAY_RECORDS)


def status_payload(ledger: RunLedger, rules: Rules, day: date | None = None) -> dict[str, Any]:
    """What `GET /api/status` and `python -m shared.cli status` answer: one day, or every day with
    the dropped CRM files and the rules in force. It needs the ledger alone, so `status` runs
    without loading the function host or opening the warehouse."""
    if day is not None:
        return _day_status(ledger, day)
    return {
        "days": _all_days(ledger),
        "crm_snapshots": _snapshots(ledger, rules),
        "crm_files": _all_files(ledger),
        "rules_in_force": asdict(rules),
    }


def _snapshots(ledger: RunLedger, rules: Rules) -> list[dict[str, Any]]:
    """Every staged CRM snapshot: its file, companies, rows quarantined, and the days it is the
    effective snapshot of under the rules in force (up to the next snapshot, at most
    CRM_MAX_SNAPSHOT_AGE_DAYS after it)."""
    snapshots = query_records(ledger, CrmRecord)
    dates = [date.fromisoformat(key) for key in snapshots]
    found = []
    for (key, snapshot), day in zip(snapshots.items(), dates, strict=True):
        effective = days_affected_by_snapshot(day, dates, rules.crm_max_snapshot_age_days)
        found.append(
            {
                "snapshot_date": key,
                "file": snapshot.blob,
                "companies": snapshot.staged,
                "quarantined": snapshot.quarantined,
                "effective_from": effective[0].isoformat() if effective else None,
                "effective_to": effective[-1].isoformat() if effective else None,
            }
        )
    return found


def day_status(services: Services, day: date) -> dict[str, Any]:
    """Everything the ledger knows about one day."""
    return _day_status(services.ledger, day)


def _day_status(ledger: RunLedger, day: date) -> dict[str, Any]:
    key = day.isoformat()
    view: dict[str, Any] = {"date": key}
    for partition, cls in DAY_RECORDS.items():
        record = read_record(ledger, cls, key)
        view[partition] = _decode(record) if record else None
    return view


def _all_days(ledger: RunLedger) -> list[dict[str, Any]]:
    """Every day the ledger knows, from one query per partition (not three reads per day)."""
    by_partition = {p: query_records(ledger, cls) for p, cls in DAY_RECORDS.items()}
    keys = sorted(set().union(*by_partition.values()))
    return [
        {"date": k, **{p: _decode(r) if (r := by_partition[p].get(k)) else None for p in DAY_PARTITIONS}}
        for k in keys
    ]


def crm_file_status(services: Services, blob_name: str) -> dict[str, Any] | None:
    """What happened to a dropped CRM file (staged, superseded or rejected)."""
    record = read_record(services.ledger, FileRecord, names.file_key(blob_name))
    return _decode(record) if record else None


def _all_files(ledger: RunLedger) -> list[dict[str, Any]]:
    """Every dropped CRM file and what became of it (staged, unchanged, superseded, rejected)."""
    return sorted(
        (_decode(f) for f in query_records(ledger, FileRecord).values()), key=lambda f: str(f.get("blob"))
    )


def days_under_other_rules(services: Services) -> list[date]:
    """Days built (or waiting) under rules other than those in force: the next build redoes them."""
    return stale_days({e.key: e.data for e in services.ledger.query(names.DAYS)}, services.settings.rules())


def _decode(record: LedgerRecord) -> dict[str, Any]:
    """The entry as status shows it: its stored fields, lists as lists, the rules as a mapping."""
    out = to_view(record)
    if RULES in out:
        rules = Rules.decode(out[RULES])
        out[RULES] = asdict(rules) if rules else None
    return out
