"""The day fetcher (services/fetch.py) against the simulator over real HTTP: landing pages and the
manifest, resume, re-announcing, force, the page cap, permanent failures, page drift.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
from collections.abc import Callable
from typing import Any

import pytest

from shared.domain import names
from shared.local.simulator import Fault, UsageApiSimulator
from shared.ports import Services, TransientApiError
from shared.services.fetch import FetchOutcome, fetch_day
from tests.support import (
    API_KEY,
    DAY,
    ISO,
    fetch_state,
    in_process_bus,
    make_records,
    page_bytes,
    queued_alerts,
)

PAGE_SIZE = 10


def raw_blobs(services: Services, run_id: str) -> list[str]:
    return services.blobs.list(names.RAW_CONTAINER, names.usage_prefix(DAY, run_id))


def queued(services: Services, queue: str) -> list[Any]:
    return in_process_bus(services).waiting(queue)


def page_records(services: Services, run_id: str, number: int) -> list[dict[str, Any]]:
    body = json.loads(services.blobs.get(names.RAW_CONTAINER, names.page_blob(DAY, run_id, number)))
    return body["data"]


def fail_on_page_3(
    start_api: Callable[..., UsageApiSimulator], make_services: Callable[..., Services]
) -> tuple[UsageApiSimulator, Services, str]:
    """A fetch of 45 records (5 pages) cut off by a 503 that never stops on page 3.

    Page by page (concurrency 1), so exactly pages 1-2 are landed; the concurrent resume is in
    test_fetch_concurrency.py.
    """
    api = start_api({ISO: make_records(45)}, faults=[Fault("status", status=503, page=3, times=-1)])
    services = make_services(api, usage_api_max_attempts=2, usage_api_concurrency=1)
    with pytest.raises(TransientApiError):
        fetch_day(services, DAY)
    state = fetch_state(services)
    assert state["status"] == "running"
    assert api.count(page=3) == 2  # max_attempts
    run_id = state["run_id"]
    assert raw_blobs(services, run_id) == [names.page_blob(DAY, run_id, n) for n in (1, 2)]
    return api, services, run_id


@pytest.mark.parametrize("total_pages", [True, False], ids=["with-total_pages", "without-total_pages"])
def test_short_page_with_has_next_true_still_fetches_next_page(
    start_api: Callable[..., UsageApiSimulator],
    make_services: Callable[..., Services],
    total_pages: bool,
) -> None:
    # 25 records: pages of 10, 10, 5. Page 3 is short but (via "endless" once) says has_next_page.
    api = start_api(
        {ISO: make_records(25)},
        include_total_pages=total_pages,
        faults=[Fault("endless", date=ISO, page=3, times=1)],
    )
    services = make_services(api)

    outcome = fetch_day(services, DAY)

    assert outcome.status == "fetched"
    assert api.count(page=4) == 1  # followed has_next_page past the short page
    assert api.count(page=5) == 0  # page 4 (empty, has_next_page false) ended it
    assert (outcome.pages, outcome.records) == (4, 25)
    assert page_records(services, outcome.run_id, 4) == []


@pytest.mark.parametrize("total_pages", [True, False], ids=["with-total_pages", "without-total_pages"])
def test_full_page_with_has_next_false_stops(
    start_api: Callable[..., UsageApiSimulator],
    make_services: Callable[..., Services],
    total_pages: bool,
) -> None:
    api = start_api({ISO: make_records(20)}, include_total_pages=total_pages)  # exactly 2 full pages
    services = make_services(api)

    outcome = fetch_day(services, DAY)

    assert outcome.status == "fetched"
    assert [api.count(page=p) for p in (1, 2, 3)] == [1, 1, 0]
    assert (outcome.pages, outcome.records) == (2, 20)
    assert len(page_records(services, outcome.run_id, 2)) == PAGE_SIZE
    manifest = json.loads(services.blobs.get(names.RAW_CONTAINER, names.manifest_blob(DAY, outcome.run_id)))
    assert manifest["total_pages_reported"] == (2 if total_pages else None)


def test_empty_day_is_one_empty_page(
    start_api: Callable[..., UsageApiSimulator], make_services: Callable[..., Services]
) -> None:
    api = start_api({})
    services = make_services(api)

    outcome = fetch_day(services, DAY)

    assert (outcome.status, outcome.pages, outcome.records) == ("fetched", 1, 0)
    assert api.count() == 1


def test_fetch_day_lands_pages_as_sent_then_manifest_and_ledger(
    start_api: Callable[..., UsageApiSimulator], make_services: Callable[..., Services]
) -> None:
    api = start_api({ISO: make_records(23)})  # pages of 10, 10, 3
    services = make_services(api)

    outcome = fetch_day(services, DAY)

    assert (outcome.status, outcome.pages, outcome.records, outcome.pages_reused) == ("fetched", 3, 23, 0)
    assert api.count() == 3
    run_id = outcome.run_id
    page_names = [f"usage/{ISO}/{run_id}/page-{n:05d}.json" for n in (1, 2, 3)]
    manifest_name = f"usage/{ISO}/{run_id}/manifest.json"
    assert raw_blobs(services, run_id) == sorted([*page_names, manifest_name])

    sent = [page_bytes(api, n, PAGE_SIZE) for n in (1, 2, 3)]
    landed = [services.blobs.get(names.RAW_CONTAINER, name) for name in page_names]
    assert landed == sent  # byte for byte, as received

    manifest = json.loads(services.blobs.get(names.RAW_CONTAINER, manifest_name))
    assert manifest["activity_date"] == ISO and manifest["run_id"] == run_id
    assert manifest["record_count"] == 23
    assert manifest["pages"] == [
        {
            "page": n,
            "blob": page_names[n - 1],
            "records": [10, 10, 3][n - 1],
            "bytes": len(sent[n - 1]),
            "sha256": hashlib.sha256(sent[n - 1]).hexdigest(),
        }
        for n in (1, 2, 3)
    ]

    state = fetch_state(services)
    assert state["status"] == "complete"
    assert (state["run_id"], state["manifest"], state["pages"], state["records"]) == (
        run_id,
        manifest_name,
        3,
        23,
    )
    # Writing the manifest (and only it) announced the day to staging.
    events = queued(services, names.INGEST_QUEUE)
    assert len(events) == 1
    assert events[0].json()["subject"].endswith(f"/blobs/{manifest_name}")


def test_cut_off_fetch_resumes_same_run_without_refetching_landed_pages(
    start_api: Callable[..., UsageApiSimulator], make_services: Callable[..., Services]
) -> None:
    _, services, run_id = fail_on_page_3(start_api, make_services)
    healthy = start_api({ISO: make_records(45)})
    services.settings = dataclasses.replace(services.settings, usage_api_base_url=healthy.base_url)

    outcome = fetch_day(services, DAY)

    assert outcome.status == "fetched"
    assert outcome.run_id == run_id
    assert outcome.pages_reused == 2
    assert (outcome.pages, outcome.records) == (5, 45)
    assert [healthy.count(page=p) for p in (1, 2, 3, 4, 5)] == [0, 0, 1, 1, 1]
    assert services.blobs.exists(names.RAW_CONTAINER, names.manifest_blob(DAY, run_id))
    assert fetch_state(services)["status"] == "complete"
    assert len(queued(services, names.INGEST_QUEUE)) == 1


def test_resume_refetches_a_damaged_landed_page(
    start_api: Callable[..., UsageApiSimulator], make_services: Callable[..., Services]
) -> None:
    _, services, run_id = fail_on_page_3(start_api, make_services)
    page2 = names.page_blob(DAY, run_id, 2)
    services.blobs.put(names.RAW_CONTAINER, page2, services.blobs.get(names.RAW_CONTAINER, page2)[:20])
    healthy = start_api({ISO: make_records(45)})
    services.settings = dataclasses.replace(services.settings, usage_api_base_url=healthy.base_url)

    outcome = fetch_day(services, DAY)

    assert (outcome.status, outcome.run_id, outcome.pages_reused) == ("fetched", run_id, 1)
    assert [healthy.count(page=p) for p in (1, 2, 3)] == [0, 1, 1]
    assert services.blobs.get(names.RAW_CONTAINER, page2) == page_bytes(healthy, 2, PAGE_SIZE)


def test_already_fetched_day_is_re_announced_not_refetched(
    start_api: Callable[..., UsageApiSimulator], make_services: Callable[..., Services]
) -> None:
    api = start_api({ISO: make_records(15)})
    services = make_services(api)
    first = fetch_day(services, DAY)
    requests_before = api.count()
    depth_before = in_process_bus(services).depth(names.INGEST_QUEUE)

    again = fetch_day(services, DAY)

    assert again.status == "already-fetched"
    assert again.run_id == first.run_id
    assert (again.pages, again.records) == (2, 15)
    assert api.count() == requests_before  # no API traffic
    assert in_process_bus(services).depth(names.INGEST_QUEUE) == depth_before + 1
    event = queued(services, names.INGEST_QUEUE)[-1].json()
    assert event["subject"].endswith(f"/blobs/{names.manifest_blob(DAY, first.run_id)}")


def test_force_fetches_again_under_a_new_run(
    start_api: Callable[..., UsageApiSimulator], make_services: Callable[..., Services]
) -> None:
    api = start_api({ISO: make_records(15)})
    services = make_services(api)
    first = fetch_day(services, DAY)

    forced = fetch_day(services, DAY, force=True)

    assert forced.status == "fetched"
    assert forced.run_id != first.run_id
    assert forced.pages_reused == 0
    assert [api.count(page=p) for p in (1, 2)] == [2, 2]
    assert len(raw_blobs(services, forced.run_id)) == 3  # 2 pages + manifest
    state = fetch_state(services)
    assert (state["status"], state["run_id"]) == ("complete", forced.run_id)
    manifest = json.loads(services.blobs.get(names.RAW_CONTAINER, names.manifest_blob(DAY, forced.run_id)))
    assert manifest["force"] is True


def test_endless_pagination_stops_at_the_page_cap_and_fails(
    start_api: Callable[..., UsageApiSimulator], make_services: Callable[..., Services]
) -> None:
    api = start_api({ISO: make_records(12)}, faults=[Fault("endless", times=-1)])
    services = make_services(api, usage_api_max_pages=5)

    outcome = fetch_day(services, DAY)

    assert outcome.status == "failed"
    assert "page cap" in outcome.message
    assert api.count() == 5 and api.count(page=6) == 0
    alerts = queued_alerts(services)
    assert len(alerts) == 1
    assert alerts[0]["severity"] == "error" and alerts[0]["stage"] == "fetch"
    assert alerts[0]["activity_date"] == ISO and alerts[0]["run_id"] == outcome.run_id
    assert "page cap" in alerts[0]["message"]
    state = fetch_state(services)
    assert state["status"] == "failed" and "page cap" in state["error"]
    assert not services.blobs.exists(names.RAW_CONTAINER, names.manifest_blob(DAY, outcome.run_id))
    assert in_process_bus(services).depth(names.INGEST_QUEUE) == 0


def test_401_fails_the_fetch_with_an_alert_that_does_not_show_the_key(
    start_api: Callable[..., UsageApiSimulator], make_services: Callable[..., Services]
) -> None:
    api = start_api({ISO: make_records(12)})  # expects API_KEY
    wrong_key = "sk-expired-2d9f61c0b7"
    services = make_services(api, usage_api_key=wrong_key)

    outcome: FetchOutcome = fetch_day(services, DAY)

    assert outcome.status == "failed"
    assert "401" in outcome.message
    assert api.count() == 1  # not retried
    alert_bodies = [e.body.decode() for e in queued(services, names.ALERTS_QUEUE)]
    assert len(alert_bodies) == 1
    assert "401" in alert_bodies[0]
    for secret in (wrong_key, API_KEY):
        assert secret not in alert_bodies[0]
        assert secret not in outcome.message
        assert secret not in json.dumps(fetch_state(services))
    assert fetch_state(services)["status"] == "failed"


def test_page_drift_duplicate_is_landed_as_received(
    start_api: Callable[..., UsageApiSimulator], make_services: Callable[..., Services]
) -> None:
    records = make_records(25)
    api = start_api({ISO: records}, faults=[Fault("drift_duplicate", page=2, times=1)])
    services = make_services(api)

    outcome = fetch_day(services, DAY)

    assert outcome.status == "fetched"
    page1 = page_records(services, outcome.run_id, 1)
    page2 = page_records(services, outcome.run_id, 2)
    assert page2[0] == page1[-1] == records[9]  # the drifted record, on both pages
    assert outcome.records == 26  # 25 distinct + the duplicate; staging de-duplicates
    manifest = json.loads(services.blobs.get(names.RAW_CONTAINER, names.manifest_blob(DAY, outcome.run_id)))
    assert [p["records"] for p in manifest["pages"]] == [10, 11, 5]


class _GoneAfter:
    """A client whose API answers `pages` pages and then gives no answer at all."""

    page_size = PAGE_SIZE
    attempts = 0
    retry_s = 0.0
    retry_budget_s = float("inf")

    def __init__(self, inner: Any, pages: int) -> None:
        self.inner, self.pages = inner, pages

    def fetch_page(self, day: Any, number: int) -> Any:
        from shared.ports import ApiUnreachable

        if number > self.pages:
            raise ApiUnreachable("usage API http://x cannot be reached: connection refused", page=number)
        return self.inner.fetch_page(day, number)


def test_an_api_unreachable_from_the_first_page_fails_the_run_with_one_alert(
    start_api: Callable[..., UsageApiSimulator], make_services: Callable[..., Services]
) -> None:
    services = make_services(start_api(45, include_total_pages=False))
    client = _GoneAfter(services.usage_api(services.settings), pages=0)
    outcome = fetch_day(services, DAY, client=client)  # returns: the message is settled, not redelivered
    assert outcome.status == "failed"
    assert "cannot be reached: connection refused; replay the day once it answers" in outcome.message
    assert fetch_state(services)["status"] == "failed"
    assert [a["kind"] for a in queued_alerts(services)] == ["fetch_failed"]


def test_an_api_that_goes_away_mid_day_is_redelivered_and_resumes(
    start_api: Callable[..., UsageApiSimulator], make_services: Callable[..., Services]
) -> None:
    services = make_services(start_api(45, include_total_pages=False))
    client = _GoneAfter(services.usage_api(services.settings), pages=2)
    with pytest.raises(TransientApiError, match="cannot be reached"):
        fetch_day(services, DAY, client=client)
    assert fetch_state(services)["status"] == "running"
    assert fetch_day(services, DAY).status == "fetched"  # the API is back: pages 1-2 are reused


def test_after_one_day_finds_the_api_unreachable_the_next_days_fail_at_once(
    start_api: Callable[..., UsageApiSimulator], make_services: Callable[..., Services]
) -> None:
    """A backfill against a dead API spends the unreachable budget once, not once per day."""
    from datetime import timedelta

    services = make_services(start_api(45, include_total_pages=False), usage_api_unreachable_s=60.0)
    client = _GoneAfter(services.usage_api(services.settings), pages=0)
    asked: list[int] = []
    real = client.fetch_page
    client.fetch_page = lambda day, number: (asked.append(number), real(day, number))[1]  # type: ignore[method-assign]

    assert fetch_day(services, DAY, client=client).status == "failed"
    second = fetch_day(services, DAY + timedelta(days=1), client=client)
    assert second.status == "failed" and len(asked) == 1  # not asked again
    assert f"found while fetching {DAY}" in second.message and "connection refused" in second.message

    later = services.clock() + timedelta(seconds=61)
    services.clock = lambda: later
    assert fetch_day(services, DAY + timedelta(days=2), client=client).status == "failed"
    assert len(asked) == 2  # the verdict expired: the API is tried again


def test_a_long_fetch_renews_its_lease_and_a_finished_one_holds_none(
    start_api: Callable[..., UsageApiSimulator], make_services: Callable[..., Services]
) -> None:
    from datetime import UTC, datetime, timedelta

    services = make_services(start_api(45, include_total_pages=False))  # 5 pages, one by one
    now = [datetime(2026, 11, 21, 6, 0, tzinfo=UTC)]

    def clock() -> datetime:
        now[0] += timedelta(minutes=10)  # every look at the clock: ten minutes later
        return now[0]

    services.clock = clock
    leases: list[str] = []
    real_put = services.ledger.put

    def put(partition: str, key: str, data: Any, **kwargs: Any) -> Any:
        if partition == names.FETCH and data.get("status") == "running":
            leases.append(data["lease_until"])
        return real_put(partition, key, data, **kwargs)  # etag: a run starts by compare-and-swap

    services.ledger.put = put  # type: ignore[method-assign]

    outcome = fetch_day(services, DAY)

    assert outcome.status == "fetched"
    assert len(set(leases)) > 1, leases  # renewed while the pages landed
    assert "lease_until" not in fetch_state(services)


def test_a_recheck_of_an_unchanged_day_writes_nothing_and_a_changed_one_reuses_its_pages(
    start_api: Callable[..., UsageApiSimulator], make_services: Callable[..., Services]
) -> None:
    by_day = {ISO: make_records(45)}  # 5 pages
    api = start_api(lambda d: list(by_day.get(d.isoformat(), [])))
    services = make_services(api)
    first = fetch_day(services, DAY)
    blobs = set(services.blobs.list(names.RAW_CONTAINER, ""))
    announced = len(queued(services, names.INGEST_QUEUE))

    unchanged = fetch_day(services, DAY, recheck=True)

    assert (unchanged.status, unchanged.run_id) == ("unchanged", first.run_id)
    assert set(services.blobs.list(names.RAW_CONTAINER, "")) == blobs  # no blob, no manifest
    assert len(queued(services, names.INGEST_QUEUE)) == announced  # no event
    state = fetch_state(services)
    assert (state["status"], state["run_id"], state["last_check"]) == ("complete", first.run_id, "unchanged")
    assert api.count() == 10  # every page asked for again

    by_day[ISO][12] = {**by_day[ISO][12], "active_users": 999}  # on page 2
    changed = fetch_day(services, DAY, recheck=True)

    assert changed.status == "changed" and changed.run_id != first.run_id
    new = set(services.blobs.list(names.RAW_CONTAINER, "")) - blobs
    assert new == {names.page_blob(DAY, changed.run_id, 2), names.manifest_blob(DAY, changed.run_id)}
    manifest = json.loads(services.blobs.get(names.RAW_CONTAINER, names.manifest_blob(DAY, changed.run_id)))
    assert [p["blob"] for p in manifest["pages"]] == [
        names.page_blob(DAY, changed.run_id if n == 2 else first.run_id, n) for n in range(1, 6)
    ]
    assert len(queued(services, names.INGEST_QUEUE)) == announced + 1
    state = fetch_state(services)
    assert (state["run_id"], state["last_check"], state["manifest"]) == (
        changed.run_id,
        "changed",
        names.manifest_blob(DAY, changed.run_id),
    )


def test_a_recheck_whose_last_manifest_is_unreadable_fetches_the_day_again(
    start_api: Callable[..., UsageApiSimulator], make_services: Callable[..., Services]
) -> None:
    services = make_services(start_api(12))
    first = fetch_day(services, DAY)
    services.blobs.put(names.RAW_CONTAINER, names.manifest_blob(DAY, first.run_id), b"{not json")

    again = fetch_day(services, DAY, recheck=True)

    assert again.status == "changed" and again.records == 12
