"""The Function App: which trigger runs which handler. Bodies are one line; the glue is in functions/."""

from __future__ import annotations

import azure.functions as func

from functions import alerts, fetch, http_api, ingest, transform
from shared.domain import names
from shared.observability.logs import configure_logging

configure_logging()
app = func.FunctionApp(http_auth_level=func.AuthLevel.FUNCTION)

# Service Bus connection through identity: ServiceBusConnection__fullyQualifiedNamespace.
SERVICE_BUS = "ServiceBusConnection"


@app.timer_trigger(schedule="%FETCH_SCHEDULE%", arg_name="timer", run_on_startup=False, use_monitor=True)
def fetch_timer(timer: func.TimerRequest) -> None:
    fetch.on_timer(timer)


@app.service_bus_queue_trigger(arg_name="msg", queue_name=names.FETCH_QUEUE, connection=SERVICE_BUS)
def fetch_requests(msg: func.ServiceBusMessage) -> None:
    fetch.on_fetch_request(msg)


@app.service_bus_queue_trigger(arg_name="msg", queue_name=names.INGEST_QUEUE, connection=SERVICE_BUS)
def ingest_events(msg: func.ServiceBusMessage) -> None:
    ingest.on_blob_created(msg)


@app.service_bus_queue_trigger(arg_name="msg", queue_name=names.TRANSFORM_QUEUE, connection=SERVICE_BUS)
def transform_days(msg: func.ServiceBusMessage) -> None:
    transform.on_transform(msg)


@app.service_bus_queue_trigger(arg_name="msg", queue_name=names.ALERTS_QUEUE, connection=SERVICE_BUS)
def deliver_alerts(msg: func.ServiceBusMessage) -> None:
    alerts.on_alert(msg)


@app.route(route="replay", methods=["POST"], auth_level=func.AuthLevel.FUNCTION)
def replay(req: func.HttpRequest) -> func.HttpResponse:
    return http_api.replay(req)


@app.route(route="status", methods=["GET"], auth_level=func.AuthLevel.FUNCTION)
def status(req: func.HttpRequest) -> func.HttpResponse:
    return http_api.status(req)


@app.route(route="reconcile", methods=["GET"], auth_level=func.AuthLevel.FUNCTION)
def reconcile(req: func.HttpRequest) -> func.HttpResponse:
    return http_api.reconcile(req)


@app.route(route="health", methods=["GET"], auth_level=func.AuthLevel.FUNCTION)
def health(req: func.HttpRequest) -> func.HttpResponse:
    return http_api.health(req)
