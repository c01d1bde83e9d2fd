"""A bad setting fails only the invocations that need it (contract section 8).

Each function checks its settings when it runs, not when the app is imported: one line naming
the setting, an alert on the alerts queue where the bus works, and the alert function keeps
delivering with nothing but its own sink. The worker's own indexing with bad settings is in
test_worker_indexing.py.
"""

from __future__ import annotations

import json
import logging
import threading
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import azure.functions as func
import pytest
from azure.functions.servicebus import ServiceBusMessage
from azure.functions.timer import TimerRequest

import function_app
import shared.bootstrap
from shared.adapters.bus_in_process import InProcessBus
from shared.bootstrap import use_services
from shared.config import Settings, SettingsError
from shared.domain import names
from shared.domain.alerts import Alert
from shared.local.host import indexed_functions

# What the dev parameter file held, a webhook secret that is not a URL, a timeout in words.
PLACEHOLDER_URL = "<https://product usage API root, without /v2/usage>"
WEBHOOK_SECRET = "T0AAAAAAA/B0BBBBBBB/sk-webhook-3f9e1c7a"
BAD = {
    "USAGE_API_BASE_URL": PLACEHOLDER_URL,
    "USAGE_API_TIMEOUT_S": "thirty",
    "CHURN_MIN_ROLLING_USERS": "many",
}
# Which stages need each bad setting (functions/_settings.py NEEDS): only those fail.
NEEDED_BY = {
    "USAGE_API_BASE_URL": {"fetch"},
    "USAGE_API_TIMEOUT_S": {"fetch"},
    "CHURN_MIN_ROLLING_USERS": {"ingest", "transform"},
}


@pytest.fixture
def env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Iterator[Callable[..., None]]:
    """Only the given settings (and LOCAL_DATA_DIR in a temp folder); no services built yet."""

    def set_env(**values: str) -> None:
        for name in [*Settings.variables(), "WEBSITE_SITE_NAME"]:
            monkeypatch.delenv(name, raising=False)
        monkeypatch.setenv("LOCAL_DATA_DIR", str(tmp_path / "local"))
        for name, value in values.items():
            monkeypatch.setenv(name, value)

    use_services(None)
    yield set_env
    use_services(None)


@pytest.fixture
def alerts_bus(monkeypatch: pytest.MonkeyPatch) -> InProcessBus:
    """The bus the alerts go on (Service Bus on Azure)."""
    bus = InProcessBus()
    monkeypatch.setattr(shared.bootstrap, "alert_bus", lambda: bus, raising=False)
    return bus


def handler(name: str) -> Callable[..., Any]:
    [function] = [f for f in indexed_functions(function_app.app) if f.get_function_name() == name]
    return function.get_user_function()  # type: ignore[no-any-return]


def message(body: dict[str, Any]) -> ServiceBusMessage:
    return ServiceBusMessage(
        body=json.dumps(body).encode(),
        message_id="m-1",
        content_type="application/json",
        application_properties={},
        user_properties={},
    )


def queued_alerts(bus: InProcessBus) -> list[dict[str, Any]]:
    return [envelope.json() for envelope in bus.queues.get(names.ALERTS_QUEUE, [])]


INVOCATIONS: dict[str, Callable[[], Any]] = {
    "fetch-timer": lambda: handler("fetch_timer")(TimerRequest(past_due=False)),
    "fetch": lambda: handler("fetch_requests")(message({"date": "2026-11-20"})),
    "ingest": lambda: handler("ingest_events")(message({"eventType": "Microsoft.Storage.BlobCreated"})),
    "transform": lambda: handler("transform_days")(message({"date": "2026-11-20", "run_id": "r"})),
}


@pytest.mark.parametrize("stage", sorted(INVOCATIONS))
@pytest.mark.parametrize("variable", sorted(BAD))
def test_an_invocation_with_a_bad_setting_it_needs_fails_with_one_line_naming_it(
    env: Callable[..., None],
    alerts_bus: InProcessBus,
    caplog: pytest.LogCaptureFixture,
    stage: str,
    variable: str,
) -> None:
    env(**{variable: BAD[variable]})
    if stage not in NEEDED_BY[variable]:
        # Issue 20 review: a bad API URL used to stop transform, ingest and the timer too.
        try:
            INVOCATIONS[stage]()
        except SettingsError as exc:
            pytest.fail(f"{stage} does not use {variable} but failed on it: {exc}")
        except Exception:
            pass
        assert "bad_setting" not in [a["kind"] for a in queued_alerts(alerts_bus)]
        return
    with caplog.at_level(logging.ERROR), pytest.raises(SettingsError) as failed:
        INVOCATIONS[stage]()
    line = str(failed.value)
    assert "\n" not in line and line.startswith(f"{stage}: setting {variable} must be"), line
    assert failed.value.__cause__ is None and failed.value.__suppress_context__
    assert [
        r.getMessage()
        for r in caplog.records
        if r.levelno >= logging.ERROR and "alert:" not in r.getMessage()
    ] == [line]
    [alert] = queued_alerts(alerts_bus)
    assert (alert["severity"], alert["stage"], alert["kind"], alert["message"]) == (
        "error",
        stage,
        "bad_setting",
        line,
    )


def test_every_bad_setting_a_stage_needs_is_named(env: Callable[..., None], alerts_bus: InProcessBus) -> None:
    env(**BAD)
    with pytest.raises(SettingsError) as failed:
        INVOCATIONS["fetch"]()
    line = str(failed.value)
    assert "USAGE_API_BASE_URL" in line and "USAGE_API_TIMEOUT_S" in line
    assert "CHURN_MIN_ROLLING_USERS" not in line  # fetch does not use the rules


def test_a_piece_built_from_a_bad_setting_refuses_rather_than_use_a_default(
    env: Callable[..., None],
) -> None:
    """A stage that does not need the usage API still gets services; their API client, built
    from a bad setting, raises it instead of running on the default."""
    env(USAGE_API_TIMEOUT_S="thirty")
    services = shared.bootstrap.get_services(frozenset())
    with pytest.raises(SettingsError, match="USAGE_API_TIMEOUT_S"):
        services.usage_api(services.settings)


@pytest.mark.parametrize("route", ["reconcile", "replay"])
def test_a_request_with_a_bad_setting_gets_503_and_the_line(
    env: Callable[..., None], alerts_bus: InProcessBus, route: str
) -> None:
    env(USAGE_API_TIMEOUT_S="thirty")
    request = func.HttpRequest(
        method="POST" if route == "replay" else "GET",
        url=f"http://localhost:7071/api/{route}",
        params={"date": "2026-11-20"},
        body=b'{"date": "2026-11-20"}',
    )
    response = handler(route)(request)
    assert response.status_code == 503
    error = json.loads(response.get_body())["error"]
    assert error == (
        f"http-{route}: setting USAGE_API_TIMEOUT_S must be a number from 0.1 to 600, got 'thirty'"
    )
    assert [a["kind"] for a in queued_alerts(alerts_bus)] == ["bad_setting"]


def test_status_runs_with_a_bad_setting_it_does_not_need(
    env: Callable[..., None], alerts_bus: InProcessBus
) -> None:
    env(USAGE_API_TIMEOUT_S="thirty")
    request = func.HttpRequest(method="GET", url="http://localhost:7071/api/status", params={}, body=b"")
    assert handler("status")(request).status_code == 200
    assert queued_alerts(alerts_bus) == []


def test_a_secret_setting_is_named_but_never_shown(
    env: Callable[..., None], alerts_bus: InProcessBus
) -> None:
    env(ALERT_WEBHOOK_URL=WEBHOOK_SECRET)
    INVOCATIONS["fetch-timer"]()  # only queues alerts: the sink's settings are not its own
    request = func.HttpRequest(method="GET", url="http://localhost:7071/api/health", params={}, body=b"")
    body = handler("health")(request).get_body().decode()
    checks = {c["name"]: c for c in json.loads(body)["checks"]}
    assert "ALERT_WEBHOOK_URL" in checks["settings"]["detail"] and not checks["alert_sink"]["ok"]
    assert WEBHOOK_SECRET not in body and WEBHOOK_SECRET not in json.dumps(queued_alerts(alerts_bus))


class Webhook:
    """A chat webhook on localhost that records what it is sent."""

    def __init__(self) -> None:
        received = self.received = []

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                received.append(json.loads(self.rfile.read(int(self.headers["Content-Length"]))))
                self.send_response(200)
                self.end_headers()

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/hooks/{WEBHOOK_SECRET}"


@pytest.fixture
def webhook() -> Iterator[Webhook]:
    hook = Webhook()
    yield hook
    hook.server.shutdown()
    hook.server.server_close()


ALERT = Alert("error", "fetch", "bad_setting", "fetch: setting USAGE_API_TIMEOUT_S must be a number")


def test_the_alert_function_needs_only_its_sink(env: Callable[..., None], webhook: Webhook) -> None:
    env(**BAD, ALERT_WEBHOOK_URL=webhook.url, MAX_DELIVERY_COUNT="five")
    handler("deliver_alerts")(message(ALERT.to_json()))
    [posted] = webhook.received
    assert posted["alert"]["message"] == ALERT.message and posted["alert"]["kind"] == "bad_setting"
    # The same alert again within the repeat window: remembered, not sent twice.
    handler("deliver_alerts")(message(ALERT.to_json()))
    assert len(webhook.received) == 1


def test_the_alert_function_with_a_bad_sink_fails_with_one_line_and_logs_the_alert(
    env: Callable[..., None], caplog: pytest.LogCaptureFixture
) -> None:
    env(ALERT_WEBHOOK_URL=WEBHOOK_SECRET)
    with caplog.at_level(logging.ERROR), pytest.raises(SettingsError) as failed:
        handler("deliver_alerts")(message(ALERT.to_json()))
    line = str(failed.value)
    assert "\n" not in line and line.startswith("alerts: setting ALERT_WEBHOOK_URL must be")
    assert line.endswith(f"alert not delivered: [ERROR] fetch: {ALERT.message}")
    assert WEBHOOK_SECRET not in line
    assert line in [r.getMessage() for r in caplog.records]


def test_logging_is_configured_without_checking_a_setting(monkeypatch: pytest.MonkeyPatch) -> None:
    """What function_app does at import: it must not raise, and still redact the secrets as set."""
    from shared.observability import logs
    from shared.observability.redact import RedactingFilter

    monkeypatch.setenv("USAGE_API_TIMEOUT_S", "thirty")
    monkeypatch.setenv("ALERT_WEBHOOK_URL", WEBHOOK_SECRET)
    root = logging.getLogger()
    handler_ = logging.StreamHandler()
    monkeypatch.setattr(root, "handlers", [handler_])
    logs.configure_logging()
    [redacting] = [f for f in handler_.filters if isinstance(f, RedactingFilter)]
    assert WEBHOOK_SECRET in redacting.secrets
