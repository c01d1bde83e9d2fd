"""Concurrent page fetching (services/fetch.py) when the API reports total_pages.

Against the simulator over real HTTP. No assertion depends on how long something took:
concurrency is read from the simulator's `max_in_flight`, order from the manifest, what was
asked from the simulator's request log. Where a test needs one page to be still in flight while
another fails, a "delay" fault holds it for two seconds, far longer than the few
milliseconds the rest takes (half a second left a busy machine too little room).
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import threading
from collections.abc import Callable
from datetime import date
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

PAGE_SIZE = 5


HOLD_S = 2.0  # a "delay" fault: keeps one page in flight while the others run
SERVICE_SETTINGS = {  # for the make_services fixture
    "usage_api_page_size": PAGE_SIZE,
    "usage_api_timeout_s": 5.0,  # well above HOLD_S
    "usage_api_max_attempts": 2,
    "usage_api_concurrency": 4,
}


def pages_of(records: int) -> list[int]:
    return list(range(1, -(-records // PAGE_SIZE) + 1))


class ChangingDay:
    """A record source whose day changes after the first request (page 1): it grows or shrinks
    while its other pages are being fetched."""

    def __init__(self, first: int, then: int) -> None:
        self.first, self.then = first, then
        self.calls = 0
        self._lock = threading.Lock()  # the simulator serves requests on many threads

    def __call__(self, day: date) -> list[dict[str, Any]]:
        with self._lock:
            self.calls += 1
            n = self.first if self.calls == 1 else self.then
        return make_records(n) if day == DAY else []


def requested(api: UsageApiSimulator) -> list[int | None]:
    """The pages asked for, sorted (the order between pages is not fixed)."""
    return sorted(r.page for r in api.requests_seen)


def answered_200(api: UsageApiSimulator) -> set[int | None]:
    return {r.page for r in api.requests_seen if r.status == 200}


def landed(services: Services, run_id: str) -> set[int]:
    """Page numbers with a page blob in the run's raw folder."""
    prefix = names.usage_prefix(DAY, run_id)
    return {
        int(name.removeprefix(prefix).removeprefix("page-").removesuffix(".json"))
        for name in services.blobs.list(names.RAW_CONTAINER, prefix)
        if name.removeprefix(prefix).startswith("page-")
    }


def manifest_of(services: Services, run_id: str) -> dict[str, Any]:
    manifest: dict[str, Any] = json.loads(
        services.blobs.get(names.RAW_CONTAINER, names.manifest_blob(DAY, run_id))
    )
    return manifest


def test_total_pages_path_fetches_every_page_once_and_the_manifest_is_in_page_order(
    start_api: Callable[..., UsageApiSimulator], make_services: Callable[..., Services]
) -> None:
    # 19 pages; page 2 is held, so it lands after pages 3..19: a manifest in landing order
    # would put it last.
    api = start_api(95, faults=[Fault("delay", date=ISO, page=2, seconds=HOLD_S)])
    services = make_services(api)
    client = services.usage_api(services.settings)

    outcome = fetch_day(services, DAY, client=client)

    assert (outcome.status, outcome.pages, outcome.records, outcome.pages_reused) == ("fetched", 19, 95, 0)
    assert requested(api) == pages_of(95)  # each page exactly once, nothing past the end
    assert client.attempts == 19  # counted right across threads
    assert api.max_in_flight > 1  # it did fetch concurrently
    manifest = manifest_of(services, outcome.run_id)
    assert manifest["total_pages_reported"] == 19
    assert manifest["record_count"] == 95
    sent = {n: page_bytes(api, n, PAGE_SIZE) for n in pages_of(95)}
    assert manifest["pages"] == [
        {
            "page": n,
            "blob": names.page_blob(DAY, outcome.run_id, n),
            "records": PAGE_SIZE,
            "bytes": len(sent[n]),
            "sha256": hashlib.sha256(sent[n]).hexdigest(),
        }
        for n in pages_of(95)
    ]
    for n in pages_of(95):  # landed exactly as received
        assert services.blobs.get(names.RAW_CONTAINER, names.page_blob(DAY, outcome.run_id, n)) == sent[n]


@pytest.mark.parametrize("concurrency", [1, 3])
def test_the_pool_size_is_respected(
    start_api: Callable[..., UsageApiSimulator], make_services: Callable[..., Services], concurrency: int
) -> None:
    # Every request is held 0.3 s by the server, so workers running together overlap there
    # even when a busy machine starts them apart.
    api = start_api(35, latency_s=0.3)
    services = make_services(api, usage_api_concurrency=concurrency)

    outcome = fetch_day(services, DAY)

    assert (outcome.status, outcome.pages) == ("fetched", 7)
    assert requested(api) == pages_of(35)
    assert api.max_in_flight == concurrency


def test_without_total_pages_it_pages_one_by_one(
    start_api: Callable[..., UsageApiSimulator], make_services: Callable[..., Services]
) -> None:
    api = start_api(35, latency_s=0.05, include_total_pages=False)
    services = make_services(api, usage_api_concurrency=8)

    outcome = fetch_day(services, DAY)

    assert (outcome.status, outcome.pages) == ("fetched", 7)
    assert [r.page for r in api.requests_seen] == pages_of(35)  # in order, one at a time
    assert api.max_in_flight == 1


def test_resume_with_concurrency_fetches_only_the_missing_pages(
    start_api: Callable[..., UsageApiSimulator], make_services: Callable[..., Services]
) -> None:
    # 10 pages, 3 workers. Page 2 never answers but 503; pages 3 and 4 are in flight meanwhile.
    failing = start_api(
        50,
        faults=[
            Fault("status", status=503, date=ISO, page=2, times=-1),
            Fault("delay", date=ISO, page=3, seconds=HOLD_S),
            Fault("delay", date=ISO, page=4, seconds=HOLD_S),
        ],
    )
    # Page 2 gives up after a 1 s pause between its attempts: pages 3 and 4 have started by then
    # (0.1 s left a busy machine's late worker threads too little room).
    services = make_services(
        failing, usage_api_concurrency=3, usage_api_backoff_base_s=1.0, usage_api_backoff_max_s=1.0
    )

    with pytest.raises(TransientApiError, match="page 2"):
        fetch_day(services, DAY)

    run_id = fetch_state(services)["run_id"]
    assert fetch_state(services)["status"] == "running"
    # The pages in flight finished and stayed landed; no page was started after page 2 failed.
    assert requested(failing) == [1, 2, 2, 3, 4]
    assert landed(services, run_id) == answered_200(failing) == {1, 3, 4}

    healthy = start_api(50)
    services.settings = dataclasses.replace(services.settings, usage_api_base_url=healthy.base_url)
    outcome = fetch_day(services, DAY)

    assert (outcome.status, outcome.run_id, outcome.pages, outcome.records) == ("fetched", run_id, 10, 50)
    assert outcome.pages_reused == 3
    assert requested(healthy) == [2, 5, 6, 7, 8, 9, 10]  # only what was missing, once each
    manifest = manifest_of(services, run_id)
    assert [p["page"] for p in manifest["pages"]] == pages_of(50)
    for entry in manifest["pages"]:
        body = services.blobs.get(names.RAW_CONTAINER, entry["blob"])
        assert body == page_bytes(healthy, entry["page"], PAGE_SIZE)
        assert entry["sha256"] == hashlib.sha256(body).hexdigest()


def test_a_day_that_grew_is_followed_page_by_page_after_the_batch(
    start_api: Callable[..., UsageApiSimulator], make_services: Callable[..., Services]
) -> None:
    # Page 1 sees 15 records (total_pages 3); then the day has 25 (5 pages).
    api = start_api(ChangingDay(first=15, then=25))
    services = make_services(api, usage_api_concurrency=8)

    outcome = fetch_day(services, DAY)

    assert (outcome.status, outcome.pages, outcome.records) == ("fetched", 5, 25)
    assert requested(api) == [1, 2, 3, 4, 5]  # page 3 said has_next_page: 4 and 5 followed; 6 not
    manifest = manifest_of(services, outcome.run_id)
    assert manifest["total_pages_reported"] == 3
    assert [p["page"] for p in manifest["pages"]] == [1, 2, 3, 4, 5]


def test_a_day_that_grew_past_the_page_cap_fails_at_the_cap(
    start_api: Callable[..., UsageApiSimulator], make_services: Callable[..., Services]
) -> None:
    api = start_api(ChangingDay(first=15, then=40))  # total_pages 3, then 8 pages
    services = make_services(api, usage_api_concurrency=8, usage_api_max_pages=4)

    outcome = fetch_day(services, DAY)

    assert outcome.status == "failed"
    assert "page cap" in outcome.message and "USAGE_API_MAX_PAGES" in outcome.message
    assert requested(api) == [1, 2, 3, 4]
    assert [a["kind"] for a in queued_alerts(services)] == ["fetch_failed"]


def test_a_day_that_shrank_ends_at_the_first_page_that_says_it_is_the_last(
    start_api: Callable[..., UsageApiSimulator], make_services: Callable[..., Services]
) -> None:
    # Page 1 sees 25 records (total_pages 5); then the day has 12 (pages of 5, 5, 2). Page 5 even
    # claims has_next_page ("endless"): the day still ends at page 3, the first to say it is last.
    api = start_api(ChangingDay(first=25, then=12), faults=[Fault("endless", date=ISO, page=5, times=-1)])
    services = make_services(api, usage_api_concurrency=8)

    outcome = fetch_day(services, DAY)

    assert (outcome.status, outcome.pages, outcome.records) == ("fetched", 3, 12)
    manifest = manifest_of(services, outcome.run_id)
    assert manifest["total_pages_reported"] == 5
    assert [(p["page"], p["records"]) for p in manifest["pages"]] == [(1, 5), (2, 5), (3, 2)]
    asked = requested(api)
    assert asked[:3] == [1, 2, 3] and set(asked[3:]) <= {4, 5} and len(asked) == len(set(asked))


def test_a_permanent_error_fails_once_with_one_alert_and_starts_no_more_pages(
    start_api: Callable[..., UsageApiSimulator], make_services: Callable[..., Services]
) -> None:
    # 10 pages, 2 workers: pages 2 and 3 start; page 3 is held; page 2's worker takes page 4: 404.
    api = start_api(
        50,
        faults=[
            Fault("status", status=404, date=ISO, page=4, times=-1),
            Fault("delay", date=ISO, page=3, seconds=HOLD_S),
        ],
    )
    services = make_services(api, usage_api_concurrency=2)

    outcome: FetchOutcome = fetch_day(services, DAY)

    assert outcome.status == "failed"
    assert "HTTP 404" in outcome.message and API_KEY not in outcome.message
    assert requested(api) == [1, 2, 3, 4]  # 404 not retried; nothing started after it
    assert landed(services, outcome.run_id) == {1, 2, 3}  # page 3 was let finish
    alerts = queued_alerts(services)
    assert len(alerts) == 1
    assert (alerts[0]["kind"], alerts[0]["run_id"]) == ("fetch_failed", outcome.run_id)
    assert fetch_state(services)["status"] == "failed"
    assert not services.blobs.exists(names.RAW_CONTAINER, names.manifest_blob(DAY, outcome.run_id))
    assert in_process_bus(services).depth(names.INGEST_QUEUE) == 0


def test_a_permanent_error_past_a_page_that_did_not_land_is_not_decisive(
    start_api: Callable[..., UsageApiSimulator], make_services: Callable[..., Services]
) -> None:
    # 2 workers: page 2 gets 503s, page 3 a 404 meanwhile. total_pages is only a hint (contract
    # section 1): had page 2 landed saying it is the last, page 3's 404 would not matter. So the
    # lowest page's error counts, the transient one, and the run is left for a redelivery.
    api = start_api(
        50,
        faults=[
            Fault("status", status=503, date=ISO, page=2, times=-1),
            Fault("status", status=404, date=ISO, page=3, times=-1),
        ],
    )
    # A 1 s pause between page 2's attempts: page 3 is asked for meanwhile, even on a busy machine.
    services = make_services(
        api, usage_api_concurrency=2, usage_api_backoff_base_s=1.0, usage_api_backoff_max_s=1.0
    )

    with pytest.raises(TransientApiError, match="page 2"):
        fetch_day(services, DAY)

    assert requested(api) == [1, 2, 2, 3]  # page 2: both attempts; nothing after page 3
    assert queued_alerts(services) == []
    assert fetch_state(services)["status"] == "running"


def test_a_permanent_error_right_after_pages_that_say_more_fails_the_run(
    start_api: Callable[..., UsageApiSimulator], make_services: Callable[..., Services]
) -> None:
    # Page 2 lands saying there is more; page 3 answers 404: redelivering cannot get past that.
    api = start_api(50, faults=[Fault("status", status=404, date=ISO, page=3, times=-1)])
    services = make_services(api, usage_api_concurrency=2)

    outcome = fetch_day(services, DAY)

    assert outcome.status == "failed" and "HTTP 404" in outcome.message and "page 3" in outcome.message
    assert [a["kind"] for a in queued_alerts(services)] == ["fetch_failed"]


def test_transient_errors_raise_the_lowest_page(
    start_api: Callable[..., UsageApiSimulator], make_services: Callable[..., Services]
) -> None:
    api = start_api(
        50,
        faults=[
            Fault("status", status=503, date=ISO, page=3, times=-1),
            Fault("status", status=502, date=ISO, page=2, times=-1),
        ],
    )
    services = make_services(api, usage_api_concurrency=2)

    with pytest.raises(TransientApiError, match="page 2: HTTP 502"):
        fetch_day(services, DAY)

    assert fetch_state(services)["status"] == "running"  # left for the redelivery to resume
    assert queued_alerts(services) == []


def test_one_limiter_per_process_per_api_from_the_settings(
    start_api: Callable[..., UsageApiSimulator], make_services: Callable[..., Services]
) -> None:
    # USAGE_API_MAX_RPS holds over every fetch of the process (a lookback, a backfill), not
    # within one: every client for the same API and rate shares one limiter.
    services = make_services(start_api(5), usage_api_max_rps=7.5)
    first, second = services.usage_api(services.settings), services.usage_api(services.settings)
    assert first.limiter is not None and second.limiter is not None
    assert first.limiter is second.limiter
    assert first.limiter.rate == 7.5
    other = make_services(start_api(5), usage_api_max_rps=7.5)  # another API: its own
    assert other.usage_api(other.settings).limiter is not first.limiter
