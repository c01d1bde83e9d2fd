"""Fetch follow-ups (services/fetch.py): a resumed run keeps its page size, a stop with pages
queued starts none of them, a page cap of 1, the failed fetch's tally, the heartbeat.

Against the simulator over real HTTP, as test_fetch.py."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable

import pytest

from shared.domain import names
from shared.local.simulator import Fault, UsageApiSimulator
from shared.ports import Services, TransientApiError
from shared.services.fetch import fetch_day
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
