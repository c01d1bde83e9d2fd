"""HTTP replay, status, reconcile and health: validate, enqueue or read, answer. No long work inside a request."""

from __future__ import annotations

import json
from typing import Any

import azure.functions as func

from functions._settings import services_for
from shared.bootstrap import get_services
from shared.config import Settings, SettingsError
from shared.domain.days import parse_day
from shared.domain.json_input import NotJson, parse_json
from shared.domain.reconcile_request import BadReconcileRequest, ReconcileRequest
from shared.domain.replay_request import BadReplayRequest, ReplayRequest
from shared.observability.context import log_context
from shared.observability.redact import redact
from shared.ports import Services
from shared.services.health import check_health
from shared.services.reconcile import as_json as reconcile_json
from shared.services.reconcile import reconcile as run_reconcile
from shared.services.replay import Enqueued, TooManyForcedDays, enqueue_fetches
from shared.services.status import status_payload


def _json(status: int, payload: Any) -> func.HttpResponse:
    """The answer, redacted of every secret as set (and of every piece of one): a stored error
    may quote an API's answer, and no route ever answers with a secret."""
    text = redact(json.dumps(payload, indent=1, default=str), Settings.secret_values())
    return func.HttpResponse(text, status_code=status, mimetype="application/json")


def _settings_refused(exc: SettingsError) -> func.HttpResponse:
    """A request that needs a setting the app cannot run with: 503 and the one line naming it."""
    return _json(503, {"error": str(exc)})


def replay(req: func.HttpRequest) -> func.HttpResponse:
    with log_context(stage="http-replay"):
        try:
            services = services_for("http-replay")
        except SettingsError as exc:
            return _settings_refused(exc)
        return _replay(req, services)


def _replay(req: func.HttpRequest, services: Services) -> func.HttpResponse:
    try:
        try:
            body = parse_json(req.get_body())
        except NotJson as exc:
            raise BadReplayRequest(
                f'body is {exc}; send an object such as {{"date": "2026-11-20"}}'
            ) from None
        request = ReplayRequest.parse(body, services.clock().date())
    except BadReplayRequest as exc:
        return _json(400, {"error": str(exc)})
    if not services.settings.usage_api_base_url:
        # Accepting would queue fetches that can only fail, in the background.
        return _json(503, {"error": "USAGE_API_BASE_URL is not set; nothing was queued"})
    caller = req.headers.get("x-functions-key") or req.params.get("code") or ""
    try:
        enqueued = enqueue_fetches(
            services, request.days, force=request.force, requested_by="http", caller=caller
        )
    except TooManyForcedDays as exc:
        response = _json(429, {"error": str(exc)})
        response.headers["Retry-After"] = str(exc.retry_after_s)
        return response
    payload: dict[str, Any] = {
        "request_id": enqueued.request_id,
        "dates": [d.isoformat() for d in request.days],
        "force": request.force,
        "queued": [d.isoformat() for d in enqueued.queued],
        # Days whose fetch was queued already and has not started: this request added nothing.
        "already_queued": [d.isoformat() for d in enqueued.already_queued],
        # Days being fetched right now (a forced request: by a forced fetch): nothing added.
        "running": [d.isoformat() for d in enqueued.running],
        "status_urls": [f"/api/status?date={d.isoformat()}" for d in request.days[:31]],
    }
    if not enqueued.queued:
        payload["note"] = _nothing_added(enqueued)
    return _json(202, payload)


def _nothing_added(enqueued: Enqueued) -> str:
    if not enqueued.running:
        return "every day asked for is queued already; nothing was added"
    if not enqueued.already_queued:
        return "every day asked for is being fetched now; nothing was added"
    return "every day asked for is queued already or being fetched now; nothing was added"


def status(req: func.HttpRequest) -> func.HttpResponse:
    try:
        services = services_for("http-status")
    except SettingsError as exc:
        return _settings_refused(exc)
    raw = req.params.get("date")
    if raw is None:
        return _json(200, status_payload(services.ledger, services.settings.rules()))
    if not raw.strip():
        return _json(400, {"error": "date is empty; give YYYY-MM-DD, or leave it out for every day"})
    try:
        day = parse_day(raw)
    except ValueError:
        return _json(400, {"error": f"date must be YYYY-MM-DD, got {raw[:40]!r}"})
    return _json(200, status_payload(services.ledger, services.settings.rules(), day))


def reconcile(req: func.HttpRequest) -> func.HttpResponse:
    """GET /api/reconcile?date=YYYY-MM-DD[&company_id=C][&api=false]: the day (or one company) across
    the API, the landed pages, staging and the table, each difference explained. Read-only."""
    with log_context(stage="http-reconcile"):
        try:
            services = services_for("http-reconcile")
        except SettingsError as exc:
            return _settings_refused(exc)
        try:
            request = ReconcileRequest.parse(dict(req.params), services.clock().date())
        except BadReconcileRequest as exc:
            return _json(400, {"error": str(exc)})
        result = run_reconcile(services, request.day, request.company, ask_api=request.ask_api)
        return _json(200, reconcile_json(result))


def health(req: func.HttpRequest) -> func.HttpResponse:
    """GET /api/health[?send_test_alert=true]: every piece the app depends on, checked from
    inside; 200 when all pass, 503 when one fails (contract section 8)."""
    with log_context(stage="http-health"):
        raw = req.params.get("send_test_alert", "false").strip().lower()
        if raw not in ("true", "false"):
            return _json(400, {"error": f"send_test_alert must be true or false, got {raw[:40]!r}"})
        # Built from the valid settings: an invalid one fails `settings` and the checks it concerns.
        result = check_health(lambda: get_services(()), send_test_alert=raw == "true")
        return _json(result.http_status, result.to_json())
