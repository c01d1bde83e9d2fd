"""The local stand-in for the Functions host.

It indexes `function_app.app` the way the Python worker does (`get_functions()`), builds the
same trigger objects Azure would pass (HttpRequest, ServiceBusMessage, TimerRequest) and calls
the registered functions. Messages come from the in-process bus; a handler that raises has its
message abandoned, redelivered and finally dead-lettered, exactly as with Service Bus.
"""

from __future__ import annotations

import contextlib
import json
import logging
import random
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import azure.functions as func
from azure.functions.servicebus import ServiceBusMessage
from azure.functions.timer import TimerRequest

from shared.adapters.bus_in_process import Envelope, InProcessBus
from shared.domain import names
from shared.local.errors import DiskFull, disk_full, user_interrupt

log = logging.getLogger(__name__)
QUEUE_ORDER = (names.FETCH_QUEUE, names.INGEST_QUEUE, names.TRANSFORM_QUEUE, names.ALERTS_QUEUE)


@dataclass
class DrainReport:
    handled: dict[str, int] = field(default_factory=dict)
    failures: list[str] = field(default_factory=list)  # one line per failed delivery
    dead_lettered: list[str] = field(default_factory=list)  # queue: message id: reason
    alerts: list[dict[str, Any]] = field(default_factory=list)  # bodies seen on the alerts queue

    def error_alerts(self) -> list[str]:
        lines = []
        for body in self.alerts:
            if body.get("severity", "error") == "error":
                lines.append(str(body.get("message") or body.get("kind") or "alert"))
        return lines


@dataclass(frozen=True)
class _Handler:
    name: str
    arg_name: str
    call: Callable[..., Any]


class LocalHost:
    def __init__(self, app: func.FunctionApp, bus: InProcessBus, rng: random.Random | None = None) -> None:
        self.bus = bus
        self.rng = rng  # deliver in a random order, across and within queues (tests)
        self.queues: dict[str, _Handler] = {}
        self.routes: dict[tuple[str, str], _Handler] = {}
        self.timers: list[_Handler] = []
        self.before_delivery: Callable[[str], None] | None = None  # called with the queue's name
        for function in indexed_functions(app):
            trigger = function.get_trigger()
            handler = _Handler(function.get_function_name(), trigger.name, function.get_user_function())
            if trigger.type == "serviceBusTrigger":
                self.queues[trigger.queue_name] = handler
            elif trigger.type == "httpTrigger":
                for method in trigger.methods or ["GET", "POST"]:
                    self.routes[(str(getattr(method, "value", method)).upper(), trigger.route)] = handler
            elif trigger.type == "timerTrigger":
                self.timers.append(handler)

    # --- HTTP ---
    def http(
        self,
        method: str,
        route: str,
        *,
        body: Any = None,
        params: Mapping[str, str] | None = None,
    ) -> func.HttpResponse:
        handler = self.routes.get((method.upper(), route))
        if handler is None:
            return self._no_route(method.upper(), route)
        request = func.HttpRequest(
            method=method.upper(),
            url=f"http://localhost:7071/api/{route}",
            params=dict(params or {}),
            headers={"content-type": "application/json"},
            body=b"" if body is None else (body if isinstance(body, bytes) else json.dumps(body).encode()),
        )
        response: func.HttpResponse = handler.call(**{handler.arg_name: request})
        return response

    def _no_route(self, method: str, route: str) -> func.HttpResponse:
        """What the Functions host answers before any function runs: 405 or 404 (as JSON)."""
        allowed = sorted(m for m, r in self.routes if r == route)
        known = ", ".join(f"{m} /api/{r}" for m, r in sorted(self.routes, key=lambda k: k[1]))
        if allowed:
            return func.HttpResponse(
                json.dumps({"error": f"{method} is not allowed on /api/{route}; use {', '.join(allowed)}"}),
                status_code=405,
                mimetype="application/json",
                headers={"Allow": ", ".join(allowed)},
            )
        return func.HttpResponse(
            json.dumps({"error": f"no route /api/{route[:100]}; the routes are {known}"}),
            status_code=404,
            mimetype="application/json",
        )

    # --- timer ---
    def fire_timers(self, *, past_due: bool = False) -> None:
        for handler in self.timers:
            handler.call(**{handler.arg_name: TimerRequest(past_due=past_due)})

    # --- Service Bus ---
    def drain(
        self,
        *,
        max_messages: int = 1_000_000,
        stop_early: bool = False,
        on_progress: Callable[[DrainReport], None] | None = None,
        should_stop: Callable[[], bool] | None = None,
    ) -> DrainReport:
        """Deliver messages until every queue is empty, like a host with one instance.

        `stop_early` returns after `max_messages` instead of failing (tests stop a host midway);
        `should_stop` is asked before each message (`serve`'s stop: the rest stays queued).
        """
        report = DrainReport()
        for _ in range(max_messages):
            if should_stop is not None and should_stop():
                return report
            envelope = self._next()
            if envelope is None:
                if self.bus.idle():
                    return report
                continue
            self._deliver(envelope, report)
            if on_progress is not None:
                on_progress(report)
        if stop_early:
            return report
        raise RuntimeError(f"local host stopped after {max_messages} messages; the queues are not draining")

    def _next(self) -> Envelope | None:
        if self.rng is None:
            return next((e for q in QUEUE_ORDER if (e := self.bus.receive(q)) is not None), None)
        ready = [q for q in QUEUE_ORDER if self.bus.depth(q)]
        return self.bus.receive(self.rng.choice(ready), self.rng) if ready else None

    def _deliver(self, envelope: Envelope, report: DrainReport) -> None:
        if self.before_delivery is not None:
            self.before_delivery(envelope.queue)
        handler = self.queues.get(envelope.queue)
        if envelope.queue == names.ALERTS_QUEUE:
            report.alerts.append(_alert_view(envelope))
        if handler is None:
            self.bus.complete(envelope)
            return
        try:
            handler.call(**{handler.arg_name: to_service_bus_message(envelope)})
        except KeyboardInterrupt:
            self.bus.give_back(envelope)  # the user's stop, not a failed delivery
            raise
        except Exception as exc:  # the runtime abandons the message, whatever went wrong
            if user_interrupt(exc):
                # DuckDB takes Ctrl-C (SIGINT) itself and raises "Query interrupted": it is the
                # user's stop too, and the message waits, uncounted, for the next command.
                self.bus.give_back(envelope)
                raise KeyboardInterrupt from None
            if disk_full(exc):
                # Every redelivery would fail the same way: stop, and keep the message (if the
                # journal can still say so) for the command run once there is room.
                with contextlib.suppress(Exception):
                    self.bus.give_back(envelope)
                raise DiskFull(_first_line(exc)) from None
            line = f"{handler.name}: {exc.__class__.__name__}: {exc}".splitlines()[0]
            report.failures.append(line)
            log.warning("%s (delivery %d of %d)", line, envelope.delivery_count, self.bus.max_delivery_count)
            if self.bus.abandon(envelope, f"{exc.__class__.__name__}: {exc}"):
                report.dead_lettered.append(f"{envelope.queue}: {envelope.message_id}: {line}")
        else:
            self.bus.complete(envelope)
        report.handled[envelope.queue] = report.handled.get(envelope.queue, 0) + 1


def _first_line(exc: BaseException) -> str:
    return (str(exc).strip().splitlines() or [exc.__class__.__name__])[0][:200]


_INDEX: dict[int, list[Any]] = {}


def indexed_functions(app: func.FunctionApp) -> list[Any]:
    """`app.get_functions()` once per app: the SDK refuses to index the same app twice."""
    if id(app) not in _INDEX:
        _INDEX[id(app)] = list(app.get_functions())
    return _INDEX[id(app)]


def to_service_bus_message(envelope: Envelope) -> ServiceBusMessage:
    """The object the Python worker builds for a Service Bus trigger."""
    return ServiceBusMessage(
        body=envelope.body,
        message_id=envelope.message_id,
        content_type="application/json",
        delivery_count=envelope.delivery_count,
        enqueued_time_utc=envelope.enqueued_at,
        sequence_number=envelope.sequence_number,
        dead_letter_reason=envelope.dead_letter_reason,
        dead_letter_error_description=envelope.dead_letter_error_description,
        dead_letter_source=envelope.dead_letter_source,
        application_properties=dict(envelope.properties),
        user_properties=dict(envelope.properties),
    )


def _alert_view(envelope: Envelope) -> dict[str, Any]:
    if envelope.dead_letter_reason:
        return {
            "severity": "error",
            "kind": "dead_letter",
            "message": f"{envelope.dead_letter_source}: {envelope.dead_letter_error_description}".splitlines()[
                0
            ],
        }
    try:
        body = envelope.json()
    except ValueError:
        return {"severity": "error", "kind": "unreadable_alert", "message": "unreadable alert"}
    return body if isinstance(body, dict) else {"severity": "error", "message": str(body)}
