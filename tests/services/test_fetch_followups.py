"""Fetch follow-ups (services/fetch.py): a resumed run keeps its page size, a stop with pages
queued starts none of them, a page cap of 1, the failed fetch's tally, the heartbeat.

Against the simulator over real HTTP, as test_fetch.py."""

from __future__ import annotations

import dataclasses
import os
import signal
import sys
import threading
from collections.abc import Callable
from datetime import UTC, date, datetime, timedelta

import pytest

from shared.domain import names
from shared.domain.usage_page import Page
from shared.local.simulator import Fault, UsageApiSimulator
from shared.ports import Services, TransientApiError
from shared.services.fetch import ALIVE_AT, HEARTBEAT_S, fetch_day
from tests.support import DAY, ISO, fetch_state, make_records


def test_a_resumed_run_asks_its_pages_at_the_page_size_it_started_with(
    start_api: Callable[..., UsageApiSimulator], make_services: Callable[..., Services]
) -> None:
    # 600 records at 10 a page; cut off after page 8 (page 9 answers 503 only).
    failing = start_api({ISO: make_records(600)}, faults=[Fault("status", status=503, page=9, times=-1)])
    services = make_services(
        failing, usage_api_page_size=10, usage_api_concurrency=1, usage_api_max_attempts=2
    )
    with pytest.raises(TransientApiError):
        fetch_day(services, DAY)
    run_id = fetch_state(services)["run_id"]
    assert fetch_state(services)["page_size"] == 10

    healthy = start_api({ISO: make_records(600)})
    services.settings = dataclasses.replace(
        services.settings, usage_api_base_url=healthy.base_url, usage_api_page_size=100
    )
    outcome = fetch_day(services, DAY)

    assert (outcome.status, outcome.run_id, outcome.records, outcome.pages) == ("fetched", run_id, 600, 60)
    assert outcome.pages_reused == 8
    assert {r.page_size for r in healthy.requests_seen} == {10}  # never mixed


def test_a_resume_of_a_run_that_did_not_record_its_page_size_fetches_every_page_again(
    start_api: Callable[..., UsageApiSimulator], make_services: Callable[..., Services]
) -> None:
    failing = start_api({ISO: make_records(600)}, faults=[Fault("status", status=503, page=9, times=-1)])
    services = make_services(
        failing, usage_api_page_size=10, usage_api_concurrency=1, usage_api_max_attempts=2
    )
    with pytest.raises(TransientApiError):
        fetch_day(services, DAY)
    state = fetch_state(services)
    services.ledger.put(names.FETCH, ISO, {k: v for k, v in state.items() if k != "page_size"})  # older run

    healthy = start_api({ISO: make_records(600)})
    services.settings = dataclasses.replace(
        services.settings, usage_api_base_url=healthy.base_url, usage_api_page_size=100
    )
    outcome = fetch_day(services, DAY)

    assert (outcome.status, outcome.records, outcome.pages, outcome.pages_reused) == ("fetched", 600, 6, 0)


def test_a_stop_while_pages_land_concurrently_starts_none_of_the_queued_pages(
    start_api: Callable[..., UsageApiSimulator], make_services: Callable[..., Services]
) -> None:
    # 100 pages, 4 workers. Once every page is queued, page 5 gets SIGINT on its own worker
    # thread (the kernel may pick any thread); every later page is slow, so the queue is still
    # long when the stop comes.
    api = start_api({ISO: make_records(1000)})
    services = make_services(api, usage_api_page_size=10, usage_api_concurrency=4)
    client = services.usage_api(services.settings)
    fetch_page = client.fetch_page
    never = threading.Event()

    def slow_after_a_stop(day: date, number: int) -> Page:
        if number == 5:
            main_thread_waits_for_the_pages()
            signal.pthread_kill(threading.get_ident(), signal.SIGINT)
        elif number > 5:
            never.wait(SLOW_PAGE_S)
        return fetch_page(day, number)

    client.fetch_page = slow_after_a_stop  # type: ignore[method-assign]
    previous = signal.signal(signal.SIGINT, signal.default_int_handler)
    try:
        with pytest.raises(KeyboardInterrupt):
            fetch_day(services, DAY, client=client)
    finally:
        signal.signal(signal.SIGINT, previous)

    # Page 5, and at most the pages already in flight: not the 95 queued behind them.
    assert len(api.requests_seen) <= 5 + 4, sorted(r.page for r in api.requests_seen)
    assert fetch_state(services)["interrupted_at"]


SLOW_PAGE_S = 2.0  # far longer than the stop takes to be seen (STOP_CHECK_S), even on a busy machine


def main_thread_waits_for_the_pages() -> None:
    """Returns once the main thread waits for the page workers (every page queued)."""
    main = threading.main_thread().ident
    for _ in range(500):  # a bound, not a time: 500 looks
        frame = sys._current_frames().get(main or 0)
        while frame is not None:
            code = frame.f_code
            if code.co_name == "wait" and code.co_filename.endswith(os.path.join("futures", "_base.py")):
                return
            frame = frame.f_back
        threading.Event().wait(0.01)
    raise AssertionError("the main thread never waited for the page workers")


def test_a_page_cap_of_one_fails_the_day_at_the_cap(
    start_api: Callable[..., UsageApiSimulator], make_services: Callable[..., Services]
) -> None:
    api = start_api({ISO: make_records(30)})  # 3 pages, total_pages reported
    services = make_services(api, usage_api_page_size=10, usage_api_concurrency=4, usage_api_max_pages=1)

    outcome = fetch_day(services, DAY)

    assert outcome.status == "failed"
    assert "has_next_page still true after 1 page for" in outcome.message  # not "1 pages"
    assert "stopped at the page cap (USAGE_API_MAX_PAGES)" in outcome.message
    assert [r.page for r in api.requests_seen] == [1]


def test_a_failed_fetch_says_its_time_as_precisely_as_its_budget_and_no_retries_it_did_not_make(
    start_api: Callable[..., UsageApiSimulator], make_services: Callable[..., Services]
) -> None:
    # One attempt that trickles past 0.2 s (the whole budget): one request, nothing retried.
    api = start_api({ISO: make_records(5)}, faults=[Fault("trickle", page=1, seconds=0.1, times=-1)])
    services = make_services(api, usage_api_max_attempts=1, usage_api_timeout_s=0.2)

    outcome = fetch_day(services, DAY)

    assert outcome.status == "failed", outcome
    assert "(1 attempt of this fetch made 1 HTTP request in all; 0." in outcome.message, outcome.message
    spent = float(outcome.message.split("in all; ")[1].split(" s spent")[0])
    assert spent >= 0.2  # the budget it says is spent
    assert "= 0.2 s, is spent" in outcome.message


def test_the_heartbeat_is_stamped_again_while_pages_land(
    start_api: Callable[..., UsageApiSimulator], make_services: Callable[..., Services]
) -> None:
    services = make_services(start_api(45, include_total_pages=False), usage_api_concurrency=1)  # 5 pages
    now = [datetime(2026, 11, 21, 6, 0, tzinfo=UTC)]

    def clock() -> datetime:
        now[0] += timedelta(seconds=HEARTBEAT_S + 1)  # every look at the clock: a heartbeat later
        return now[0]

    services.clock = clock
    client = services.usage_api(services.settings)
    fetch_page = client.fetch_page
    seen: list[str] = []

    def fetch_and_look(day: date, number: int) -> Page:
        seen.append(fetch_state(services)[ALIVE_AT])  # what a replay reads while the page is asked
        return fetch_page(day, number)

    client.fetch_page = fetch_and_look  # type: ignore[method-assign]
    assert fetch_day(services, DAY, client=client).status == "fetched"

    assert len(seen) == 5 and len(set(seen)) == 5, seen  # stamped again before every page
    assert seen == sorted(seen)


@pytest.mark.parametrize("ends", ["complete", "failed"])
def test_a_fetch_that_ended_leaves_no_heartbeat(
    start_api: Callable[..., UsageApiSimulator], make_services: Callable[..., Services], ends: str
) -> None:
    # Before: a finished fetch kept `alive_at`, so every later command "let go" of every day
    # fetched so far, one ledger write each.
    from shared.services.replay import let_go_of_fetches

    faults = [Fault("status", page=1, status=400, times=-1)] if ends == "failed" else []
    services = make_services(start_api({ISO: make_records(5)}, faults=faults))

    outcome = fetch_day(services, DAY)

    assert fetch_state(services)["status"] == ends, outcome
    assert not fetch_state(services).get(ALIVE_AT)
    assert let_go_of_fetches(services) == []
