"""`status` reads the ledger through the typed records: entries in today's stored shape show the
same, lists as lists, whatever text a list was stored as."""

from __future__ import annotations

from pathlib import Path

from shared.adapters.ledger_sqlite import SqliteLedger
from shared.domain import names
from shared.domain.rules import Rules
from shared.services.status import status_payload

RULES = Rules(10, 30, 7)


def test_status_shows_stored_entries_with_their_lists_and_rules_decoded(tmp_path: Path) -> None:
    ledger = SqliteLedger(tmp_path / "ledger.sqlite3")
    ledger.put(
        names.DAYS,
        "2026-10-01",
        {"status": "built", "rows": 3, "warnings": '["low coverage"]', "rules": RULES.encode()},
    )
    ledger.put(
        names.USAGE,
        "2026-10-01",
        {"staged": 3, "unknown_companies": '["c-1", "c-2"]', "quarantine_summary": ""},
    )
    ledger.put(
        names.FILES,
        names.file_key("a.csv"),
        {"blob": "a.csv", "status": "staged", "warnings": "no date found"},
    )
    payload = status_payload(ledger, RULES)
    [day] = payload["days"]
    assert day["days"] == {"status": "built", "rows": 3, "warnings": ["low coverage"], "rules": {
        "churn_min_rolling_users": 10, "churn_max_contact_age_days": 30, "crm_max_snapshot_age_days": 7}}  # fmt: skip
    assert day["usage"] == {"staged": 3, "unknown_companies": ["c-1", "c-2"], "quarantine_summary": ""}
    assert day["fetch"] is None
    # A list stored as text that is not JSON (by hand, by an old tool) is still a list.
    assert payload["crm_files"] == [{"blob": "a.csv", "status": "staged", "warnings": ["no date found"]}]
