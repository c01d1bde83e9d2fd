"""Concurrent page fetching and client-side pacing (issue "Performance", fetch part).

Against the simulator over real HTTP, like test_usage_api_and_fetch.py. No assertion depends on
how long something took: concurrency is read from the simulator's `max_in_flight`, order from
the manifest, what was asked from the simulator's request log, and the rate limiter runs on an
injected clock. Where a test needs one page to be still in flight while another fails, a
"delay" fault holds it for half a second, far longer than the few milliseconds the rest takes.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import threading
from collections.abc import Callable, Iterator
from datetime import date
from typing import Any

import pytest
import requests

from shared import fetch_service, names
from shared.bootstrap import Services, build_local
from shared.config import Settings
from shared.fetch_service import FetchOutcome, fetch_day
from shared.simulator import Fault, RecordSource, UsageApiSimulator
from shared.usage_api import RateLimiter, TransientApiError, UsageApiClient

KEY = "sk-test-4c1e9b07aa"
DAY = date(2026, 11, 20)
ISO = DAY.isoformat()
PAGE_SIZE = 5
HOLD_S = 0.5  # a "delay" fault: keeps one page in flight while the others run


def make_records(n: int) -> list[dict[str, Any]]:
    return [
        {"company_id": f"c-{i:04d}", "date": ISO, "active_users": i % 13, "events": i * 7}
        for i in range(1, n + 1)
    ]


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


# ---------------------------------------------------------------------------------- fixtures


@pytest.fixture
def start_api() -> Iterator[Callable[..., UsageApiSimulator]]:
    started: list[UsageApiSimulator] = []

    def start(records: int | RecordSource, **kwargs: Any) -> UsageApiSimulator:
        source = records if callable(records) else (lambda d, n=records: make_records(n) if d == DAY else [])
        sim = UsageApiSimulator(source, api_key=KEY, **kwargs).start()
        started.append(sim)
        return sim

    yield start
    for sim in started:
        sim.stop()


@pytest.fixture
def make_services(tmp_path: Any) -> Iterator[Callable[..., Services]]:
    built: list[Services] = []

    def make(api: UsageApiSimulator, **overrides: Any) -> Services:
        fields: dict[str, Any] = {
            "usage_api_base_url": api.base_url,
            "usage_api_key": KEY,
            "usage_api_page_size": PAGE_SIZE,
            "usage_api_timeout_s": 5.0,  # well above HOLD_S
            "usage_api_max_attempts": 2,
            "usage_api_backoff_base_s": 0.001,
            "usage_api_backoff_max_s": 0.005,
            "usage_api_concurrency": 4,
            "local_data_dir": tmp_path / f"local-{len(built)}",
        }
        fields.update(overrides)
        services = build_local(Settings(**fields))
        built.append(services)
        return services

    yield make
    for services in built:
        services.warehouse.close()


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


def api_bytes(api: UsageApiSimulator, page: int) -> bytes:
    response = requests.get(
        f"{api.base_url}/v2/usage",
        params={"date": ISO, "page": page, "page_size": PAGE_SIZE},
        headers={"Authorization": f"Bearer {KEY}"},
        timeout=5,
    )
    assert response.status_code == 200
    return response.content


def run_state(services: Services) -> dict[str, Any]:
    entry = services.ledger.get(names.FETCH, ISO)
    assert entry is not None
    return dict(entry.data)


def alerts_of(services: Services) -> list[dict[str, Any]]:
    return [e.json() for e in services.bus.queues.get(names.ALERTS_QUEUE, [])]  # type: ignore[attr-defined]


# ---------------------------------------------------------------------------------- 1. total_pages


def test_total_pages_path_fetches_every_page_once_and_the_manifest_is_in_page_order(
    start_api: Callable[..., UsageApiSimulator], make_services: Callable[..., Services]
) -> None:
    # 19 pages; page 2 is held, so it lands after pages 3..19: a manifest in landing order
    # would put it last.
    api = start_api(95, faults=[Fault("delay", date=ISO, page=2, seconds=HOLD_S)])
    services = make_services(api)
    client = fetch_service.make_client(services)

    outcome = fetch_day(services, DAY, client=client)

    assert (outcome.status, outcome.pages, outcome.records, outcome.pages_reused) == ("fetched", 19, 95, 0)
    assert requested(api) == pages_of(95)  # each page exactly once, nothing past the end
    assert client.attempts == 19  # counted right across threads
    assert api.max_in_flight > 1  # it did fetch concurrently
    manifest = manifest_of(services, outcome.run_id)
    assert manifest["total_pages_reported"] == 19
    assert manifest["record_count"] == 95
    sent = {n: api_bytes(api, n) for n in pages_of(95)}
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
    # Every request is held 0.1 s by the server, so workers running together overlap there.
    api = start_api(35, latency_s=0.1)
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


# ---------------------------------------------------------------------------------- 2. resume


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
    # Page 2 gives up after a 0.1 s pause between its attempts: pages 3 and 4 have started by then.
    services = make_services(
        failing, usage_api_concurrency=3, usage_api_backoff_base_s=0.1, usage_api_backoff_max_s=0.1
    )

    with pytest.raises(TransientApiError, match="page 2"):
        fetch_day(services, DAY)

    run_id = run_state(services)["run_id"]
    assert run_state(services)["status"] == "running"
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
        assert body == api_bytes(healthy, entry["page"])
        assert entry["sha256"] == hashlib.sha256(body).hexdigest()


# ---------------------------------------------------------------------------------- 3. the day changes


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
    assert [a["kind"] for a in alerts_of(services)] == ["fetch_failed"]


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


# ---------------------------------------------------------------------------------- 4. errors


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
    assert "HTTP 404" in outcome.message and KEY not in outcome.message
    assert requested(api) == [1, 2, 3, 4]  # 404 not retried; nothing started after it
    assert landed(services, outcome.run_id) == {1, 2, 3}  # page 3 was let finish
    alerts = alerts_of(services)
    assert len(alerts) == 1
    assert (alerts[0]["kind"], alerts[0]["run_id"]) == ("fetch_failed", outcome.run_id)
    assert run_state(services)["status"] == "failed"
    assert not services.blobs.exists(names.RAW_CONTAINER, names.manifest_blob(DAY, outcome.run_id))
    assert services.bus.depth(names.INGEST_QUEUE) == 0  # type: ignore[attr-defined]


def test_a_permanent_error_fails_the_run_while_another_page_is_still_retrying(
    start_api: Callable[..., UsageApiSimulator], make_services: Callable[..., Services]
) -> None:
    # 2 workers: page 2 gets 503s (attempts 0.1 s apart), page 3 a 404 meanwhile. Redelivering
    # cannot get past the 404, so the run fails now; page 2 finishes its attempts first.
    api = start_api(
        50,
        faults=[
            Fault("status", status=503, date=ISO, page=2, times=-1),
            Fault("status", status=404, date=ISO, page=3, times=-1),
        ],
    )
    services = make_services(
        api, usage_api_concurrency=2, usage_api_backoff_base_s=0.1, usage_api_backoff_max_s=0.1
    )

    outcome = fetch_day(services, DAY)

    assert outcome.status == "failed" and "HTTP 404" in outcome.message
    assert requested(api) == [1, 2, 2, 3]  # page 2: both attempts; nothing after
    assert [a["kind"] for a in alerts_of(services)] == ["fetch_failed"]
    assert run_state(services)["status"] == "failed"


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

    assert run_state(services)["status"] == "running"  # left for the redelivery to resume
    assert alerts_of(services) == []


# ---------------------------------------------------------------------------------- 5. rate limiter


class FakeClock:
    """A clock that moves only when slept on (or set)."""

    def __init__(self) -> None:
        self.now = 0.0
        self.slept: list[float] = []

    def __call__(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.slept.append(seconds)
        self.now += seconds


def limiter_on(clock: FakeClock, rate: float = 10.0, **kwargs: Any) -> RateLimiter:
    return RateLimiter(rate, clock=clock, sleep=clock.sleep, **kwargs)


def test_unlimited_never_waits() -> None:
    clock = FakeClock()
    limiter = limiter_on(clock, 0.0)
    for _ in range(100):
        limiter.acquire()
    assert clock.slept == []
    assert limiter.rate is None


@pytest.mark.parametrize(("burst", "waits"), [(1.0, [0.1] * 4), (2.0, [0.1] * 3)])
def test_tokens_pace_requests_after_a_small_burst(burst: float, waits: list[float]) -> None:
    clock = FakeClock()
    limiter = limiter_on(clock, 10.0, burst=burst)
    for _ in range(5):
        limiter.acquire()
    assert clock.slept == pytest.approx(waits)  # `burst` at once, then one per 1/10 s
    assert RateLimiter(10.0).burst == 1.0  # the default: no spike at the start


def test_idle_time_refills_no_more_than_the_burst() -> None:
    clock = FakeClock()
    limiter = limiter_on(clock, 10.0, burst=2.0)
    limiter.acquire()
    limiter.acquire()
    clock.now += 60  # a minute idle
    for _ in range(3):
        limiter.acquire()
    assert clock.slept == pytest.approx([0.1])


def test_callers_arriving_together_queue_up() -> None:
    waits: list[float] = []
    limiter = RateLimiter(10.0, clock=lambda: 0.0, sleep=waits.append)  # nobody's wait has passed yet
    for _ in range(5):
        limiter.acquire()
    assert waits == pytest.approx([0.1, 0.2, 0.3, 0.4])


def test_threads_share_one_bucket_without_losing_a_token() -> None:
    waits: list[float] = []
    limiter = RateLimiter(10.0, clock=lambda: 0.0, sleep=waits.append)
    threads = [threading.Thread(target=lambda: [limiter.acquire() for _ in range(25)]) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    # 200 acquisitions: 1 from the burst, then one reservation per 1/10 s, each taken once.
    assert sorted(round(w * 10) for w in waits) == list(range(1, 200))


def test_a_429_lowers_the_rate_multiplicatively() -> None:
    clock = FakeClock()
    limiter = limiter_on(clock, 10.0, decrease=0.5)
    assert limiter.on_throttled(limiter.acquire()) is True
    assert limiter.rate == pytest.approx(5.0)
    limiter.on_throttled(limiter.acquire())
    assert limiter.rate == pytest.approx(2.5)


def test_429s_of_one_burst_lower_the_rate_once() -> None:
    clock = FakeClock()
    limiter = limiter_on(clock, 10.0, decrease=0.5)
    tickets = [limiter.acquire() for _ in range(3)]  # all in flight before any answer
    assert [limiter.on_throttled(t) for t in tickets] == [True, False, False]
    assert limiter.rate == pytest.approx(5.0)
    assert (limiter.throttled, limiter.decreases) == (3, 1)
    assert limiter.on_throttled(limiter.acquire()) is True  # sent after the decrease: counts
    assert limiter.rate == pytest.approx(2.5)


def test_the_rate_never_drops_below_a_tenth_of_the_configured_rate() -> None:
    clock = FakeClock()
    limiter = limiter_on(clock, 10.0, decrease=0.5)
    for _ in range(20):
        limiter.on_throttled(limiter.acquire())
    assert limiter.rate == pytest.approx(1.0)


def test_successes_recover_additively_up_to_the_configured_rate() -> None:
    clock = FakeClock()
    limiter = limiter_on(clock, 10.0, decrease=0.5, recovery=0.01)
    limiter.on_throttled(limiter.acquire())
    rates = []
    for _ in range(4):
        limiter.acquire()  # had to wait: the limit is what holds requests back
        limiter.on_success()
        rates.append(limiter.rate)
    # A fixed step (1 % of the rate found too high, 10/s) per success.
    assert rates == pytest.approx([5.1, 5.2, 5.3, 5.4])
    for _ in range(1000):
        limiter.acquire()
        limiter.on_success()
    assert limiter.rate == pytest.approx(10.0)  # never above the configured rate


def test_the_rate_grows_only_while_it_holds_requests_back() -> None:
    clock = FakeClock()
    limiter = limiter_on(clock, 10.0, decrease=0.5, recovery=0.01)
    limiter.on_throttled(limiter.acquire())
    clock.now += 60  # idle: the bucket is full, the next request does not wait
    limiter.acquire()
    limiter.on_success()
    assert limiter.rate == pytest.approx(5.0)
    limiter.acquire()  # this one waits
    limiter.on_success()
    assert limiter.rate == pytest.approx(5.1)


def test_unlimited_starts_limiting_at_half_the_observed_rate() -> None:
    clock = FakeClock()
    limiter = limiter_on(clock, 0.0)
    tickets = []
    for i in range(10):  # 10 requests in 0.1 s: 100 per second
        clock.now = i * 0.01
        tickets.append(limiter.acquire())
    clock.now = 0.1

    assert limiter.on_throttled(tickets[-1]) is True

    assert limiter.rate == pytest.approx(50.0)
    limiter.acquire()
    assert clock.slept == pytest.approx([0.02])  # no burst: over the limit already
    for _ in range(30):
        limiter.on_throttled(limiter.acquire())
    assert limiter.rate == pytest.approx(10.0)  # the floor: a tenth of the observed 100/s


def test_a_429_while_limiting_lowers_the_rate_not_a_send_rate_depressed_by_pauses() -> None:
    # Workers sleeping out a Retry-After send little for a while; that is no measure of the limit.
    clock = FakeClock()
    limiter = limiter_on(clock, 20.0, decrease=0.5)
    for i in range(3):  # 3 requests in the last second
        clock.now = i * 0.4
        ticket = limiter.acquire()
    limiter.on_throttled(ticket)
    assert limiter.rate == pytest.approx(10.0)  # 20 x 0.5, not 3/s x 0.5


def test_limiter_arguments_are_checked() -> None:
    for bad in ({"rate_rps": -1.0}, {"rate_rps": float("nan")}, {"burst": 0.5}, {"decrease": 1.0}):
        with pytest.raises(ValueError):
            RateLimiter(**bad)
    assert RateLimiter(float("inf")).rate is None  # no fixed limit


# ---------------------------------------------------------------------------------- 6. the client


class CountingLimiter(RateLimiter):
    def __init__(self, rate: float) -> None:
        self.clock = FakeClock()
        super().__init__(rate, clock=self.clock, sleep=self.clock.sleep)
        self.acquired = 0

    def acquire(self) -> int:
        self.acquired += 1
        return super().acquire()


def test_the_client_takes_a_token_before_every_attempt_and_reports_429s(
    start_api: Callable[..., UsageApiSimulator],
) -> None:
    api = start_api(
        12,
        faults=[
            Fault("status", status=503, date=ISO, page=1, times=2),
            Fault("retry_after_seconds", date=ISO, page=1, seconds=0),
        ],
    )
    limiter = CountingLimiter(100.0)
    waits: list[float] = []
    with requests.Session() as session:
        client = UsageApiClient(
            api.base_url,
            KEY,
            page_size=PAGE_SIZE,
            max_attempts=5,
            backoff_base_s=0.001,
            backoff_max_s=0.005,
            session=session,
            sleep=waits.append,
            limiter=limiter,
        )
        page = client.fetch_page(DAY, 1)

    assert len(page.records) == PAGE_SIZE
    assert limiter.acquired == client.attempts == api.count() == 4  # retries included
    assert (limiter.throttled, limiter.decreases) == (1, 1)
    # Lowered once, then one recovery step for the retry's 200.
    assert limiter.rate == pytest.approx(100.0 * limiter.decrease + 100.0 * limiter.recovery)
    assert waits[-1] == 0.0  # the Retry-After wait still applies (here: 0 s)


def test_one_limiter_per_fetch_from_the_settings(
    start_api: Callable[..., UsageApiSimulator], make_services: Callable[..., Services]
) -> None:
    services = make_services(start_api(5), usage_api_max_rps=7.5)
    first, second = fetch_service.make_client(services), fetch_service.make_client(services)
    assert first.limiter is not None and second.limiter is not None
    assert first.limiter is not second.limiter
    assert first.limiter.rate == 7.5


def test_the_settings_are_read_from_the_environment() -> None:
    assert (Settings.from_env({}).usage_api_concurrency, Settings.from_env({}).usage_api_max_rps) == (8, 0.0)
    env = {"USAGE_API_CONCURRENCY": "3", "USAGE_API_MAX_RPS": "12.5"}
    assert (Settings.from_env(env).usage_api_concurrency, Settings.from_env(env).usage_api_max_rps) == (
        3,
        12.5,
    )
    env = {"USAGE_API_CONCURRENCY": "0", "USAGE_API_MAX_RPS": "-1"}
    assert (Settings.from_env(env).usage_api_concurrency, Settings.from_env(env).usage_api_max_rps) == (
        1,
        0.0,
    )
    with pytest.raises(ValueError, match="USAGE_API_MAX_RPS"):
        Settings.from_env({"USAGE_API_MAX_RPS": "fast"})
