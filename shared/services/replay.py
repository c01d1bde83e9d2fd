"""Asking for days to be fetched: one `fetch-requests` message per day (HTTP replay, timer, CLI)."""

from __future__ import annotations

import uuid
from datetime import date

from shared.domain import names
from shared.ports import OutgoingMessage, Services


def enqueue_fetches(services: Services, days: list[date], *, force: bool, requested_by: str) -> str:
    """One fetch request per day on `fetch-requests`; returns the request id."""
    request_id = f"req-{services.clock():%Y%m%dT%H%M%S}-{uuid.uuid4().hex[:6]}"
    services.bus.send(
        names.FETCH_QUEUE,
        [
            OutgoingMessage(
                body={
                    "date": d.isoformat(),
                    "force": force,
                    "request_id": request_id,
                    "requested_by": requested_by,
                },
                message_id=f"fetch-{d.isoformat()}-{request_id}",
                properties={"date": d.isoformat()},
            )
            for d in days
        ],
    )
    return request_id
