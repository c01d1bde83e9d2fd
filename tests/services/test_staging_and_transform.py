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
from tests.conftest import DAY, ISO, make_records, queued_alerts

CRM = "company_id,name,country,industry_tag,last_contact_at\nc-0001,Acme,DE,saas,2026-11-01\n"


def transforms(services: Services) -> list[dict]:
    return [e.json() for e in services.bus.queues.get(names.TRANSFORM_QUEUE, [])]  # type: ignore[attr-defined]


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
    assert [(t["kind"], t["date"]) for t in transforms(services)] == [("usage", ISO)]  # the repeat is dropped


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
