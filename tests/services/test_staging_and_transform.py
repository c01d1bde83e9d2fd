"""The staging and transform services over the local adapters, without the function host:
what each writes to the warehouse, the ledger, the quarantine and the bus."""

from __future__ import annotations

import json
from collections.abc import Callable

from shared.domain import names
from shared.domain.transform_plan import TransformRequest
from shared.local.simulator import UsageApiSimulator
from shared.ports import Services
from shared.services.fetch import fetch_day
from shared.services.staging import load_crm_drop, load_usage_manifest
from shared.services.transform import run_transform
from tests.support import DAY, ISO, in_process_bus, make_records, queued_alerts

CRM = "company_id,name,country,industry_tag,last_contact_at\nc-0001,Acme,DE,saas,2026-11-01\n"


def transforms(services: Services) -> list[dict]:
    return [e.json() for e in in_process_bus(services).waiting(names.TRANSFORM_QUEUE)]


def test_a_manifest_is_staged_once_with_its_bad_record_quarantined(
    start_api: Callable[..., UsageApiSimulator], make_services: Callable[..., Services]
) -> None:
    records = [*make_records(12), {"company_id": "", "date": ISO, "active_users": 1, "events": 1}]
    services = make_services(start_api({ISO: records}))
    manifest = names.manifest_blob(DAY, fetch_day(services, DAY).run_id)

    first = load_usage_manifest(services, manifest)
    again = load_usage_manifest(services, manifest)

    assert (first.status, first.staged, first.quarantined) == ("staged", 12, 1)
    assert again.status == "unchanged"
    entry = services.ledger.get(names.USAGE, ISO)
    assert entry is not None and (entry.data["received"], entry.data["staged"]) == (13, 12)
    [quarantined] = services.blobs.list(names.QUARANTINE_CONTAINER)
    assert quarantined.startswith(f"{names.RAW_CONTAINER}/usage/{ISO}/") and quarantined.endswith(
        "rejected-records.jsonl"
    )
    assert "blank company_id" in services.blobs.get(names.QUARANTINE_CONTAINER, quarantined).decode()
    # Each load wakes the transform with a message of its own (issue 21: a wake-up that reused an
    # id was dropped by duplicate detection with its marks unbuilt); the repeat marked nothing,
    # so its wake-up finds nothing to do.
    assert [(t["kind"], t["date"]) for t in transforms(services)] == [("usage", ISO)] * 2


def test_a_day_waits_for_its_snapshot_then_builds(
    start_api: Callable[..., UsageApiSimulator], make_services: Callable[..., Services]
) -> None:
    services = make_services(start_api(12))
    load_usage_manifest(services, names.manifest_blob(DAY, fetch_day(services, DAY).run_id))

    waiting = run_transform(services, TransformRequest("usage", DAY, "run-1"))
    assert (waiting.built, waiting.waiting) == ([], [ISO])
    assert services.ledger.get(names.DAYS, ISO).data["status"] == "waiting"  # type: ignore[union-attr]

    services.blobs.put(names.CRM_CONTAINER, f"companies_{ISO}.csv", CRM.encode())
    loaded = load_crm_drop(services, f"companies_{ISO}.csv")
    assert loaded.status == "staged"
    built = run_transform(services, TransformRequest("crm", DAY, "run-2"))
    assert built.built == [ISO] and built.rows_changed == 12
    day = services.ledger.get(names.DAYS, ISO)
    # The rows carry the run whose input asked for the build: the snapshot's.
    assert day is not None and (day.data["status"], day.data["rows"], day.data["run_id"]) == (
        "built",
        12,
        loaded.run_id,
    )
    assert run_transform(services, TransformRequest("day", DAY, "run-3")).rows_changed == 0  # nothing changed


def test_a_blocked_day_raises_one_error_alert_and_keeps_its_rows(
    start_api: Callable[..., UsageApiSimulator], make_services: Callable[..., Services]
) -> None:
    services = make_services(start_api({}))  # an empty day: the gate's "zero usage records"
    services.blobs.put(names.CRM_CONTAINER, f"companies_{ISO}.csv", CRM.encode())
    load_crm_drop(services, f"companies_{ISO}.csv")
    load_usage_manifest(services, names.manifest_blob(DAY, fetch_day(services, DAY).run_id))

    outcome = run_transform(services, TransformRequest("usage", DAY, "run-1"))

    assert (outcome.built, outcome.blocked) == ([], [ISO])
    errors = [a for a in queued_alerts(services) if a["kind"] == "quality_error"]
    assert len(errors) == 1 and "zero usage records" in errors[0]["message"]
    day = services.ledger.get(names.DAYS, ISO)
    assert day is not None and json.loads(day.data["errors"])[0].startswith("zero usage records")
    assert list(services.warehouse.fetch_rows("company_daily_activity")) == []


def test_an_unreadable_manifest_is_a_permanent_error_naming_what_is_wrong(
    make_services: Callable[..., Services], start_api: Callable[..., UsageApiSimulator]
) -> None:
    import pytest

    from shared.services.staging import ManifestError

    services = make_services(start_api(1))
    name = f"usage/{ISO}/run-1/manifest.json"
    for body, phrase in [
        (b"{not json", "unreadable"),
        (b'{"activity_date": "2026-11-20", "run_id": "r"}', "missing fetched_at, pages"),
        (
            b'{"activity_date": "2026-11-20", "run_id": "r", "fetched_at": "t", "pages": [{}]}',
            "not a list of pages",
        ),
        (b'{"activity_date": "yesterday", "run_id": "r", "fetched_at": "t", "pages": []}', "unreadable"),
    ]:
        services.blobs.put(names.RAW_CONTAINER, name, body)
        with pytest.raises(ManifestError, match=phrase):
            load_usage_manifest(services, name)


# --- issue 22 ------------------------------------------------------------------------------------


def test_records_no_warehouse_can_hold_are_quarantined_and_summarized_never_fail_the_load(
    start_api: Callable[..., UsageApiSimulator], make_services: Callable[..., Services]
) -> None:
    hostile = [
        {"company_id": "c-\ud800", "date": ISO, "active_users": 1, "events": 1, "note": "\udfff"},
        {"company_id": "c-big", "date": ISO, "active_users": 10**4000, "events": 1},
        {"company_id": 123, "date": ISO, "active_users": 1, "events": 1},
        {"company_id": "c-float", "date": ISO, "active_users": 12.0, "events": 3.0},
    ]
    services = make_services(start_api({ISO: [*make_records(3), *hostile]}))
    outcome = load_usage_manifest(services, names.manifest_blob(DAY, fetch_day(services, DAY).run_id))
    assert (outcome.staged, outcome.quarantined) == (4, 3)
    [path] = services.blobs.list(names.QUARANTINE_CONTAINER)
    lines = [
        json.loads(line)
        for line in services.blobs.get(names.QUARANTINE_CONTAINER, path).decode().splitlines()
    ]
    assert [r["reason"] for r in lines] == [
        'company_id is not valid Unicode text (a lone surrogate): "c-\\ud800"',
        "active_users is out of range: an integer of about 4001 digits",
        "company_id is a number: 123",
    ]
    assert lines[0]["record"]["note"] == "\udfff"  # written escaped, read back as sent
    entry = services.ledger.get(names.USAGE, ISO)
    assert entry is not None
    summary = json.loads(entry.data["quarantine_summary"])
    assert summary["companies"] == ["c-\\ud800", "c-big", "123"]
    assert summary["file"] == path and summary["files"] == 1
    assert [k[:2] for k in summary["kinds"]] == [
        ["company_id is not valid Unicode text", 1],
        ["active_users is out of range", 1],
        ["company_id is a number", 1],
    ]
    staged = {
        r["company_id"]: r
        for r in services.warehouse.fetch_rows("reconcile_staged_usage", {"activity_date": DAY})
    }
    assert (staged["c-float"]["active_users"], staged["c-float"]["events"]) == (12, 3)


def test_ids_that_differ_only_in_case_block_the_day_with_a_pair_and_no_force_advice(
    start_api: Callable[..., UsageApiSimulator], make_services: Callable[..., Services]
) -> None:
    records = [{**r, "company_id": r["company_id"].upper()} for r in make_records(25)]
    services = make_services(start_api({ISO: records}))
    crm = "company_id,name,country,industry_tag,last_contact_at\n" + "".join(
        f"c-{n:04d},Co {n},DE,saas,2026-11-01\n" for n in range(1, 26)
    )
    services.blobs.put(names.CRM_CONTAINER, f"companies_{ISO}.csv", crm.encode())
    load_crm_drop(services, f"companies_{ISO}.csv")
    load_usage_manifest(services, names.manifest_blob(DAY, fetch_day(services, DAY).run_id))

    outcome = run_transform(services, TransformRequest("usage", DAY, "run-1"))
    assert outcome.blocked == [ISO] and outcome.built == []
    [alert] = [a for a in queued_alerts(services) if a["severity"] == "error"]
    assert (
        "only 0 of 25 companies with usage on 2026-11-20 are in the CRM snapshot of 2026-11-20 (0%)"
        in alert["message"]
    )
    assert (
        '25 of them match when case and surrounding spaces are ignored (API "C-0001", CRM "c-0001")'
        in alert["message"]
    )
    assert "force" not in alert["detail"]
