"""The Usage API client and the day fetcher, against the simulator over real HTTP (contract section 1).

Waits are recorded by a `sleep` stub instead of slept; timeouts are small, so the file runs fast.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
from collections.abc import Callable, Iterator
from datetime import UTC, date, datetime
from typing import Any

import pytest
import requests

from shared import names
from shared.bootstrap import Services, build_local
from shared.config import Settings
from shared.fetch_service import FetchOutcome, fetch_day
from shared.simulator import NO_RESPONSE, Fault, UsageApiSimulator
from shared.usage_api import (
    MAX_RETRY_AFTER_S,
    TransientApiError,
    UsageApiClient,
    UsageApiError,
    retry_after_seconds,
)

KEY = "sk-test-7f3a9c1d5e"  # distinctive, so a leak into any message is easy to spot
DAY = date(2026, 11, 20)
ISO = DAY.isoformat()
PAGE_SIZE = 10
BACKOFF_MAX_S = 0.05


def make_records(n: int, day: str = ISO) -> list[dict[str, Any]]:
    return [
        {"company_id": f"c-{i:04d}", "date": day, "active_users": i % 13, "events": i * 7}
        for i in range(1, n + 1)
    ]


# ---------------------------------------------------------------------------------- fixtures


@pytest.fixture
def start_api() -> Iterator[Callable[..., UsageApiSimulator]]:
    """Start a simulator serving `records` (by ISO date); every one started is stopped at the end."""
    started: list[UsageApiSimulator] = []

    def start(records: dict[str, list[dict[str, Any]]], **kwargs: Any) -> UsageApiSimulator:
        kwargs.setdefault("api_key", KEY)
        sim = UsageApiSimulator(lambda d: list(records.get(d.isoformat(), [])), **kwargs).start()
        started.append(sim)
        return sim

    yield start
    for sim in started:
        sim.stop()


@pytest.fixture
def sleeps() -> list[float]:
    """What the client asked to sleep, in order (nothing is actually slept)."""
    return []


@pytest.fixture
def make_client(sleeps: list[float]) -> Iterator[Callable[..., UsageApiClient]]:
    sessions: list[requests.Session] = []

    def make(api: UsageApiSimulator | str, key: str = KEY, **kwargs: Any) -> UsageApiClient:
        session = requests.Session()
        sessions.append(session)
        options: dict[str, Any] = {
            "timeout_s": 2.0,
            "page_size": PAGE_SIZE,
            "max_attempts": 4,
            "backoff_base_s": 0.01,
            "backoff_max_s": BACKOFF_MAX_S,
            "session": session,
            "sleep": sleeps.append,
        }
        options.update(kwargs)
        base_url = api if isinstance(api, str) else api.base_url
        return UsageApiClient(base_url, key, **options)

    yield make
    for session in sessions:
        session.close()


@pytest.fixture
def make_services(tmp_path: Any) -> Iterator[Callable[..., Services]]:
    """A local pipeline (folder blobs, SQLite ledger, in-process bus, DuckDB) in a temp folder."""
    built: list[Services] = []

    def make(api: UsageApiSimulator, **overrides: Any) -> Services:
        fields: dict[str, Any] = {
            "usage_api_base_url": api.base_url,
            "usage_api_key": KEY,
            "usage_api_page_size": PAGE_SIZE,
            "usage_api_timeout_s": 2.0,
            "usage_api_max_attempts": 3,
            "usage_api_backoff_base_s": 0.001,
            "usage_api_backoff_max_s": 0.005,
            "local_data_dir": tmp_path / f"local-{len(built)}",
        }
        fields.update(overrides)
        services = build_local(Settings(**fields))
        built.append(services)
        return services

    yield make
    for services in built:
        services.warehouse.close()


def api_bytes(api: UsageApiSimulator, page: int, page_size: int = PAGE_SIZE) -> bytes:
    """The exact bytes the API sends for a page (the simulator is deterministic)."""
    response = requests.get(
        f"{api.base_url}/v2/usage",
        params={"date": ISO, "page": page, "page_size": page_size},
        headers={"Authorization": f"Bearer {KEY}"},
        timeout=5,
    )
    assert response.status_code == 200
    return response.content


def ledger_fetch(services: Services) -> dict[str, Any]:
    entry = services.ledger.get(names.FETCH, ISO)
    assert entry is not None
    return dict(entry.data)


def raw_blobs(services: Services, run_id: str) -> list[str]:
    return services.blobs.list(names.RAW_CONTAINER, names.usage_prefix(DAY, run_id))


def queued(services: Services, queue: str) -> list[Any]:
    return list(services.bus.queues.get(queue, []))  # type: ignore[attr-defined]


def page_records(services: Services, run_id: str, number: int) -> list[dict[str, Any]]:
    body = json.loads(services.blobs.get(names.RAW_CONTAINER, names.page_blob(DAY, run_id, number)))
    return body["data"]


# ---------------------------------------------------------------------------------- 1. paging


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


@pytest.mark.parametrize("total_pages", [True, False], ids=["with-total_pages", "without-total_pages"])
def test_client_reads_has_next_page_and_optional_total_pages(
    start_api: Callable[..., UsageApiSimulator],
    make_client: Callable[..., UsageApiClient],
    total_pages: bool,
) -> None:
    api = start_api({ISO: make_records(15)}, include_total_pages=total_pages)
    client = make_client(api)

    first, second = client.fetch_page(DAY, 1), client.fetch_page(DAY, 2)

    assert (first.has_next_page, second.has_next_page) == (True, False)
    assert (len(first.records), len(second.records)) == (10, 5)
    assert first.total_pages == (2 if total_pages else None)
    assert first.body == api_bytes(api, 1)


def test_empty_day_is_one_empty_page(
    start_api: Callable[..., UsageApiSimulator], make_services: Callable[..., Services]
) -> None:
    api = start_api({})
    services = make_services(api)

    outcome = fetch_day(services, DAY)

    assert (outcome.status, outcome.pages, outcome.records) == ("fetched", 1, 0)
    assert api.count() == 1


# ---------------------------------------------------------------------------------- 2. 429


def test_429_retry_after_seconds_waits_exactly_that_long(
    start_api: Callable[..., UsageApiSimulator],
    make_client: Callable[..., UsageApiClient],
    sleeps: list[float],
) -> None:
    api = start_api({ISO: make_records(5)}, faults=[Fault("retry_after_seconds", seconds=7)])
    client = make_client(api)

    page = client.fetch_page(DAY, 1)

    assert sleeps == [7.0]
    assert len(page.records) == 5
    assert client.attempts == 2
    assert api.count(status=429) == 1 and api.count(status=200) == 1


def test_429_retry_after_http_date_waits_about_the_delta(
    start_api: Callable[..., UsageApiSimulator],
    make_client: Callable[..., UsageApiClient],
    sleeps: list[float],
) -> None:
    api = start_api({ISO: make_records(5)}, faults=[Fault("retry_after_date", seconds=30)])
    client = make_client(api)

    page = client.fetch_page(DAY, 1)

    assert len(sleeps) == 1
    assert sleeps[0] == pytest.approx(30, abs=2)
    assert len(page.records) == 5
    assert client.attempts == 2
    assert api.count(status=429) == 1 and api.count(status=200) == 1


def test_429_retry_after_beyond_the_cap_waits_the_cap(
    start_api: Callable[..., UsageApiSimulator],
    make_client: Callable[..., UsageApiClient],
    sleeps: list[float],
) -> None:
    api = start_api({ISO: make_records(5)}, faults=[Fault("retry_after_seconds", seconds=86_400)])
    client = make_client(api)

    client.fetch_page(DAY, 1)

    assert sleeps == [MAX_RETRY_AFTER_S]


# ---------------------------------------------------------------------------------- 3. transient


TRANSIENT_FAULTS = {
    "500": Fault("status", status=500, times=2),
    "502": Fault("status", status=502, times=2),
    "503": Fault("status", status=503, times=2),
    "504": Fault("status", status=504, times=2),
    "connection-reset": Fault("reset", times=2),
    "truncated-json": Fault("truncate", times=2),
    "read-timeout": Fault("delay", seconds=1.5, times=2),
}


@pytest.mark.parametrize("fault", list(TRANSIENT_FAULTS.values()), ids=list(TRANSIENT_FAULTS))
def test_transient_failures_are_retried_then_succeed(
    start_api: Callable[..., UsageApiSimulator],
    make_client: Callable[..., UsageApiClient],
    sleeps: list[float],
    fault: Fault,
) -> None:
    api = start_api({ISO: make_records(12)}, faults=[fault])
    client = make_client(api, timeout_s=0.3)  # well under the 1.5 s delay fault

    page = client.fetch_page(DAY, 1)

    assert client.attempts == 3
    assert api.count(date=ISO, page=1) == 3
    assert api.faults_remaining() == [0]
    assert len(sleeps) == 2
    assert all(0 < s <= BACKOFF_MAX_S for s in sleeps)  # backoff, bounded by backoff_max_s
    assert page.body == api_bytes(api, 1)
    assert (len(page.records), page.has_next_page) == (10, True)
    if fault.kind == "reset":
        assert api.count(status=NO_RESPONSE) == 2


# ---------------------------------------------------------------------------------- 4. permanent


@pytest.mark.parametrize("status", [400, 401, 403, 404])
def test_permanent_statuses_fail_at_once_naming_the_status(
    start_api: Callable[..., UsageApiSimulator],
    make_client: Callable[..., UsageApiClient],
    sleeps: list[float],
    status: int,
) -> None:
    api = start_api({ISO: make_records(5)}, faults=[Fault("status", status=status, times=-1)])
    client = make_client(api)

    with pytest.raises(UsageApiError) as caught:
        client.fetch_page(DAY, 1)

    assert client.attempts == 1
    assert api.count() == 1
    assert sleeps == []
    assert f"HTTP {status}" in str(caught.value)
    assert KEY not in str(caught.value) and KEY not in repr(caught.value)


def test_real_401_for_a_wrong_key_never_shows_the_key(
    start_api: Callable[..., UsageApiSimulator], make_client: Callable[..., UsageApiClient]
) -> None:
    api = start_api({ISO: make_records(5)})
    wrong_key = "sk-wrong-0b8e44d1aa"
    client = make_client(api, key=wrong_key)

    with pytest.raises(UsageApiError) as caught:
        client.fetch_page(DAY, 1)

    assert api.count(status=401) == 1 and api.count() == 1
    assert "401" in str(caught.value)
    assert wrong_key not in str(caught.value) and KEY not in str(caught.value)


def test_real_404_for_a_wrong_base_url(
    start_api: Callable[..., UsageApiSimulator], make_client: Callable[..., UsageApiClient]
) -> None:
    api = start_api({ISO: make_records(5)})
    client = make_client(f"{api.base_url}/not-the-api")

    with pytest.raises(UsageApiError, match="404"):
        client.fetch_page(DAY, 1)

    assert client.attempts == 1 and api.count(status=404) == 1


# ---------------------------------------------------------------------------------- 5. bounded


@pytest.mark.parametrize("max_attempts", [1, 4])
def test_retries_are_bounded_by_max_attempts(
    start_api: Callable[..., UsageApiSimulator],
    make_client: Callable[..., UsageApiClient],
    sleeps: list[float],
    max_attempts: int,
) -> None:
    api = start_api({ISO: make_records(5)}, faults=[Fault("status", status=503, times=-1)])
    client = make_client(api, max_attempts=max_attempts)

    with pytest.raises(TransientApiError) as caught:
        client.fetch_page(DAY, 1)

    assert client.attempts == max_attempts
    assert api.count() == max_attempts and api.count(status=503) == max_attempts
    assert len(sleeps) == max_attempts - 1
    assert f"{max_attempts} attempts" in str(caught.value) and "503" in str(caught.value)
    assert KEY not in str(caught.value)


# ---------------------------------------------------------------------------------- 6. Retry-After

NOW = datetime(2026, 11, 20, 12, 0, 0, tzinfo=UTC)


@pytest.mark.parametrize(("value", "expected"), [("0", 0.0), ("12", 12.0), (" 7 ", 7.0), ("300", 300.0)])
def test_retry_after_digits(value: str, expected: float) -> None:
    assert retry_after_seconds(value, now=NOW) == expected


def test_retry_after_http_date_in_the_future_is_the_delta() -> None:
    assert retry_after_seconds("Fri, 20 Nov 2026 12:00:30 GMT", now=NOW) == 30.0


@pytest.mark.parametrize("value", ["Wed, 21 Oct 2015 07:28:00 GMT", "Fri, 20 Nov 2026 11:59:59 GMT"])
def test_retry_after_http_date_in_the_past_is_zero(value: str) -> None:
    assert retry_after_seconds(value, now=NOW) == 0.0


@pytest.mark.parametrize("value", [None, "", "   ", "soon", "1.5", "-3", "Mon, 32 Foo 2015 99:00:00 GMT"])
def test_retry_after_garbage_is_none(value: str | None) -> None:
    assert retry_after_seconds(value, now=NOW) is None


def test_retry_after_superscript_digit_is_garbage_not_a_crash() -> None:
    assert retry_after_seconds("\u00b2", now=NOW) is None


@pytest.mark.parametrize("value", ["301", "86400", "9" * 400, "Fri, 20 Nov 2099 12:00:00 GMT"])
def test_retry_after_is_capped(value: str) -> None:
    assert retry_after_seconds(value, now=NOW) == MAX_RETRY_AFTER_S


# ---------------------------------------------------------------------------------- 7. fetch_day


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

    sent = [api_bytes(api, n) for n in (1, 2, 3)]
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

    state = ledger_fetch(services)
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


# ---------------------------------------------------------------------------------- 8. resume


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
    state = ledger_fetch(services)
    assert state["status"] == "running"
    assert api.count(page=3) == 2  # max_attempts
    run_id = state["run_id"]
    assert raw_blobs(services, run_id) == [names.page_blob(DAY, run_id, n) for n in (1, 2)]
    return api, services, run_id


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
    assert ledger_fetch(services)["status"] == "complete"
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
    assert services.blobs.get(names.RAW_CONTAINER, page2) == api_bytes(healthy, 2)


# ---------------------------------------------------------------------------------- 9. already fetched


def test_already_fetched_day_is_re_announced_not_refetched(
    start_api: Callable[..., UsageApiSimulator], make_services: Callable[..., Services]
) -> None:
    api = start_api({ISO: make_records(15)})
    services = make_services(api)
    first = fetch_day(services, DAY)
    requests_before = api.count()
    depth_before = services.bus.depth(names.INGEST_QUEUE)  # type: ignore[attr-defined]

    again = fetch_day(services, DAY)

    assert again.status == "already-fetched"
    assert again.run_id == first.run_id
    assert (again.pages, again.records) == (2, 15)
    assert api.count() == requests_before  # no API traffic
    assert services.bus.depth(names.INGEST_QUEUE) == depth_before + 1  # type: ignore[attr-defined]
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
    state = ledger_fetch(services)
    assert (state["status"], state["run_id"]) == ("complete", forced.run_id)
    manifest = json.loads(services.blobs.get(names.RAW_CONTAINER, names.manifest_blob(DAY, forced.run_id)))
    assert manifest["force"] is True


# ---------------------------------------------------------------------------------- 10. page cap


def alerts_of(services: Services) -> list[dict[str, Any]]:
    return [envelope.json() for envelope in queued(services, names.ALERTS_QUEUE)]


def test_endless_pagination_stops_at_the_page_cap_and_fails(
    start_api: Callable[..., UsageApiSimulator], make_services: Callable[..., Services]
) -> None:
    api = start_api({ISO: make_records(12)}, faults=[Fault("endless", times=-1)])
    services = make_services(api, usage_api_max_pages=5)

    outcome = fetch_day(services, DAY)

    assert outcome.status == "failed"
    assert "page cap" in outcome.message
    assert api.count() == 5 and api.count(page=6) == 0
    alerts = alerts_of(services)
    assert len(alerts) == 1
    assert alerts[0]["severity"] == "error" and alerts[0]["stage"] == "fetch"
    assert alerts[0]["activity_date"] == ISO and alerts[0]["run_id"] == outcome.run_id
    assert "page cap" in alerts[0]["message"]
    state = ledger_fetch(services)
    assert state["status"] == "failed" and "page cap" in state["error"]
    assert not services.blobs.exists(names.RAW_CONTAINER, names.manifest_blob(DAY, outcome.run_id))
    assert services.bus.depth(names.INGEST_QUEUE) == 0  # type: ignore[attr-defined]


# ---------------------------------------------------------------------------------- 11. 401


def test_401_fails_the_fetch_with_an_alert_that_does_not_show_the_key(
    start_api: Callable[..., UsageApiSimulator], make_services: Callable[..., Services]
) -> None:
    api = start_api({ISO: make_records(12)})  # expects KEY
    wrong_key = "sk-expired-2d9f61c0b7"
    services = make_services(api, usage_api_key=wrong_key)

    outcome: FetchOutcome = fetch_day(services, DAY)

    assert outcome.status == "failed"
    assert "401" in outcome.message
    assert api.count() == 1  # not retried
    alert_bodies = [e.body.decode() for e in queued(services, names.ALERTS_QUEUE)]
    assert len(alert_bodies) == 1
    assert "401" in alert_bodies[0]
    for secret in (wrong_key, KEY):
        assert secret not in alert_bodies[0]
        assert secret not in outcome.message
        assert secret not in json.dumps(ledger_fetch(services))
    assert ledger_fetch(services)["status"] == "failed"


# ---------------------------------------------------------------------------------- 12. page drift


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
