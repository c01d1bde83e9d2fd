"""HTTP replay and status: validate, enqueue or read, answer. No long work inside a request."""

from __future__ import annotations

import json
from typing import Any

import azure.functions as func

from shared.bootstrap import get_services
from shared.domain.days import parse_day
from shared.domain.replay_request import BadReplayRequest, ReplayRequest
from shared.observability.context import log_context
from shared.services.replay import enqueue_fetches
from shared.services.status import all_days_status, day_status


def _json(status: int, payload: Any) -> func.HttpResponse:
    return func.HttpResponse(
        json.dumps(payload, indent=1, default=str), status_code=status, mimetype="application/json"
    )


def replay(req: func.HttpRequest) -> func.HttpResponse:
    with log_context(stage="http-replay"):
        return _replay(req)


def _replay(req: func.HttpRequest) -> func.HttpResponse:
    services = get_services()
    try:
        try:
            body = req.get_json()
        except ValueError:
            raise BadReplayRequest("body is not valid JSON") from None
        request = ReplayRequest.parse(body, services.clock().date())
    except BadReplayRequest as exc:
        return _json(400, {"error": str(exc)})
    request_id = enqueue_fetches(services, request.days, force=request.force, requested_by="http")
    return _json(
        202,
        {
            "request_id": request_id,
            "dates": [d.isoformat() for d in request.days],
            "force": request.force,
            "status_urls": [f"/api/status?date={d.isoformat()}" for d in request.days[:31]],
        },
    )


def status(req: func.HttpRequest) -> func.HttpResponse:
    services = get_services()
    raw = req.params.get("date")
    if not raw:
        return _json(200, {"days": all_days_status(services)})
    try:
        day = parse_day(raw)
    except ValueError:
        return _json(400, {"error": f"date must be YYYY-MM-DD, got {raw[:40]!r}"})
    return _json(200, day_status(services, day))
