"""What a reviewer of issue 23 found in the fetch: a lookback note carried over to a person's
request, a stop lost while pages land in parallel, a reschedule that restarted the waits.

Against the simulator over real HTTP, as test_fetch.py."""

from __future__ import annotations

from collections.abc import Callable

from shared.local.simulator import UsageApiSimulator
from shared.ports import Services
from shared.services.fetch import fetch_day
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
