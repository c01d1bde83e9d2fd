"""Timer and `fetch-requests` triggers -> the fetch service."""

from __future__ import annotations

import logging
from datetime import date

import azure.functions as func

from functions._messages import json_body
from shared.bootstrap import get_services
from shared.fetch_service import fetch_day
from shared.log_context import log_context
from shared.replay import enqueue_fetches, yesterday

log = logging.getLogger(__name__)


def on_timer(timer: func.TimerRequest) -> None:
    services = get_services()
    day = yesterday(services.clock())
    with log_context(stage="fetch-timer", date=day):
        if timer.past_due:
            log.warning("fetch timer is past due; fetching yesterday now")
        # The timer only asks; the queue handler does the work, with redelivery and dead letters.
        enqueue_fetches(services, [day], force=False, requested_by="timer")


def on_fetch_request(msg: func.ServiceBusMessage) -> None:
    body = json_body(msg)
    with log_context(stage="fetch", date=body.get("date")):
        fetch_day(get_services(), date.fromisoformat(body["date"]), force=bool(body.get("force")))
