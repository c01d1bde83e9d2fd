"""The API's unreachable verdict is an ApiRecord: a verdict that cannot say until when holds
no longer, instead of failing every fetch on it."""

from __future__ import annotations

from collections.abc import Callable
from datetime import timedelta

from shared.domain import names
from shared.local.simulator import UsageApiSimulator
from shared.observability.redact import public_url
from shared.ports import Services
from shared.services.fetch import fetch_day
from tests.support import DAY


def test_a_verdict_without_a_readable_time_does_not_stop_a_fetch(
    start_api: Callable[..., UsageApiSimulator], make_services: Callable[..., Services]
) -> None:
    services = make_services(start_api(5))
    verdict = {
        "url": public_url(services.settings.usage_api_base_url),
        "until": "soon",
        "message": "connection refused",
        "day": (DAY - timedelta(days=1)).isoformat(),
    }
    services.ledger.put(names.API, "unreachable", verdict)
    assert fetch_day(services, DAY).status == "fetched"
