"""The `replays` partition's entries as typed records: a queued mark and a caller's quota."""

from __future__ import annotations

from collections.abc import Callable
from datetime import date

from shared.domain import names
from shared.ports import Services
from shared.services.replay import enqueue_fetches, fetch_started

DAY = date(2026, 10, 1)


def test_a_started_fetch_clears_its_mark_and_keeps_fields_it_does_not_know(
    make_services: Callable[..., Services], api
) -> None:
    services = make_services(api)
    request = enqueue_fetches(services, [DAY], force=True, requested_by="test", caller="key-1")
    key = DAY.isoformat()
    stored = services.ledger.get(names.REPLAYS, key)
    assert stored is not None and (stored.data["request_id"], stored.data["force"]) == (
        request.request_id,
        True,
    )
    services.ledger.put(names.REPLAYS, key, {**stored.data, "queued_by_a_newer_version": "x"})

    fetch_started(services, DAY, {"request_id": request.request_id})

    cleared = services.ledger.get(names.REPLAYS, key)
    assert cleared is not None and dict(cleared.data) == {
        "request_id": "",
        "force": False,
        "queued_at": "",
        "queued_by_a_newer_version": "x",
    }
    quotas = [e for e in services.ledger.query(names.REPLAYS) if e.key.startswith("quota:")]
    assert [e.data["count"] for e in quotas] == [1]
