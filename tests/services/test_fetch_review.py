"""What a reviewer of issue 23 found in the fetch: a lookback note carried over to a person's
request, a stop lost while pages land in parallel, a reschedule that restarted the waits.

Against the simulator over real HTTP, as test_fetch.py."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable

import pytest

from shared.local.simulator import Fault, UsageApiSimulator
from shared.ports import Services, TransientApiError
from shared.services.fetch import fetch_day
from shared.services.replay import fetch_in_progress
from tests.support import DAY, ISO, fetch_state, make_records


def test_a_persons_request_after_the_lookback_fetched_the_day_drops_the_lookback_note(
    start_api: Callable[..., UsageApiSimulator], make_services: Callable[..., Services]
) -> None:
    api = start_api({ISO: make_records(30)})
    services = make_services(api, usage_api_page_size=10)
    assert fetch_day(services, DAY, recheck=True).status == "fetched"  # never fetched: fetched
    assert fetch_state(services)["lookback_fetch"]

    assert fetch_day(services, DAY).status == "already-fetched"  # `run --date D`

    state = fetch_state(services)
    assert "lookback_fetch" not in state and "lookback_fetch_at" not in state
    assert state["status"] == "complete"


def test_the_lookback_resumes_a_day_whose_fetch_ran_out_of_retries(
    start_api: Callable[..., UsageApiSimulator], make_services: Callable[..., Services]
) -> None:
    # The fetch gave up raising (its message goes to the dead letters): the entry stays
    # `running` under its hour-long lease, but its heartbeat is cleared. The next daily run's
    # lookback must fetch it again, not skip it as "another fetch of it is running".
    failing = start_api({ISO: make_records(30)}, faults=[Fault("status", status=503, page=2, times=-1)])
    services = make_services(
        failing, usage_api_page_size=10, usage_api_concurrency=1, usage_api_max_attempts=2
    )
    with pytest.raises(TransientApiError), fetch_in_progress(services, DAY):
        fetch_day(services, DAY)
    state = fetch_state(services)
    assert state["status"] == "running" and state["lease_until"] and "alive_at" not in state

    healthy = start_api({ISO: make_records(30)})
    services.settings = dataclasses.replace(services.settings, usage_api_base_url=healthy.base_url)
    outcome = fetch_day(services, DAY, recheck=True)

    assert (outcome.status, outcome.run_id, outcome.records) == ("fetched", state["run_id"], 30)
