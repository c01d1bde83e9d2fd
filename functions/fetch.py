"""Timer and `fetch-requests` triggers -> the fetch service."""

from __future__ import annotations

import logging

import azure.functions as func

from functions._messages import json_body, settle_permanent_errors
from functions._settings import services_for
from shared.domain.days import yesterday
from shared.domain.replay_request import FetchRequest
from shared.observability.context import log_context
from shared.services.fetch import fetch_day
from shared.services.replay import enqueue_daily, fetch_in_progress, fetch_started

log = logging.getLogger(__name__)


def on_timer(timer: func.TimerRequest) -> None:
    services = services_for("fetch-timer")
    day = yesterday(services.clock())
    with log_context(stage="fetch-timer", date=day):
        if timer.past_due:
            log.warning("fetch timer is past due; fetching yesterday now")
        # The timer only asks; the queue handler does the work, with redelivery and dead letters.
        # Yesterday, and the lookback re-checks of the USAGE_API_LOOKBACK_DAYS days before it.
        enqueue_daily(services, requested_by="timer")


def on_fetch_request(msg: func.ServiceBusMessage) -> None:
    with log_context(stage="fetch"), settle_permanent_errors("fetch", msg):
        services = services_for("fetch")
        body = json_body(msg)
        request = FetchRequest.from_json(body, services.clock().date())
        with log_context(date=request.day):
            fetch_started(services, request.day, body)
            with fetch_in_progress(services, request.day):
                fetch_day(
                    services, request.day, force=request.force, recheck=request.recheck, daily=request.daily
                )
