"""Asking for days to be fetched: one `fetch-requests` message per day (HTTP replay, timer, CLI)."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from datetime import date, timedelta

from shared.domain import names
from shared.ports import OutgoingMessage, Services


def enqueue_fetches(
    services: Services, days: list[date], *, force: bool, requested_by: str, recheck: Sequence[date] = ()
) -> str:
    """One fetch request per day on `fetch-requests` (and one lookback re-check request per day
    of `recheck`); returns the request id."""
    request_id = f"req-{services.clock():%Y%m%dT%H%M%S}-{uuid.uuid4().hex[:6]}"
    asked = [(d, False) for d in days] + [(d, True) for d in recheck]
    services.bus.send(
        names.FETCH_QUEUE,
        [
            OutgoingMessage(
                body={
                    "date": d.isoformat(),
                    "force": force and not again,
                    "request_id": request_id,
                    "requested_by": requested_by,
                    **({"recheck": True} if again else {}),
                },
                message_id=f"{'recheck' if again else 'fetch'}-{d.isoformat()}-{request_id}",
                properties={"date": d.isoformat()},
            )
            for d, again in asked
        ],
    )
    return request_id


def daily_days(today: date, lookback_days: int) -> tuple[date, list[date]]:
    """What the daily run asks for: yesterday, and the `lookback_days` finished days before it
    to re-check (oldest first)."""
    yesterday = today - timedelta(days=1)
    return yesterday, [yesterday - timedelta(days=n) for n in range(lookback_days, 0, -1)]


def enqueue_daily(services: Services, *, requested_by: str) -> tuple[date, list[date]]:
    """The daily timer's requests (also `run` without --date): fetch yesterday, re-check the
    USAGE_API_LOOKBACK_DAYS days before it. Returns (yesterday, the days re-checked)."""
    yesterday, lookback = daily_days(services.clock().date(), services.settings.usage_api_lookback_days)
    enqueue_fetches(services, [yesterday], force=False, requested_by=requested_by, recheck=lookback)
    return yesterday, lookback
