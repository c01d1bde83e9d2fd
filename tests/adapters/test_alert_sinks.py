"""Alert sinks: a Teams/Slack-style webhook with retries, alerts.jsonl, the log; and which one is used."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from dataclasses import replace
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from shared.adapters.alert_file import JsonLinesAlertSink
from shared.adapters.alert_log import LogAlertSink
from shared.adapters.alert_webhook import WebhookAlertSink
from shared.bootstrap import alert_sink
from shared.config import Settings
from shared.domain.alerts import Alert, alert_from_dead_letter

ALERT = Alert(
    "error",
    "quality-gate",
    "quality_error",
    "2026-10-01 not built: zero usage records",
    "run-1",
    "2026-10-01",
    "detail",
)


class Hook:
    def __init__(self, statuses: list[int]) -> None:
        self.statuses = statuses
        self.bodies: list[dict] = []


@pytest.fixture
def hook() -> Iterator[tuple[Hook, str]]:
    state = Hook([])

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            state.bodies.append(json.loads(self.rfile.read(int(self.headers["Content-Length"]))))
            status = state.statuses.pop(0) if state.statuses else 200
            self.send_response(status)
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, *args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield state, f"http://127.0.0.1:{server.server_address[1]}/services/T1/B2/token"
    server.shutdown()


def test_posts_a_slack_and_teams_readable_payload(hook, tmp_path: Path) -> None:
    state, url = hook
    WebhookAlertSink(url, [url], backoff_s=0.01).deliver(ALERT)
    assert len(state.bodies) == 1
    body = state.bodies[0]
    assert body["text"] == "[ERROR] quality-gate 2026-10-01: 2026-10-01 not built: zero usage records"
    assert {
        k: body["alert"][k] for k in ("severity", "stage", "activity_date", "run_id", "message", "detail")
    } == {
        "severity": "error",
        "stage": "quality-gate",
        "activity_date": "2026-10-01",
        "run_id": "run-1",
        "message": ALERT.message,
        "detail": "detail",
    }


def test_retries_server_errors_then_succeeds(hook, tmp_path: Path) -> None:
    state, url = hook
    state.statuses[:] = [503, 500]
    WebhookAlertSink(url, [url], backoff_s=0.01).deliver(ALERT)
    assert len(state.bodies) == 3


def test_a_refusal_is_not_retried_and_does_not_print_the_url(hook, tmp_path: Path) -> None:
    state, url = hook
    state.statuses[:] = [404]
    with pytest.raises(RuntimeError) as error:
        WebhookAlertSink(url, [url], backoff_s=0.01).deliver(ALERT)
    assert len(state.bodies) == 1
    assert "token" not in str(error.value) and "404" in str(error.value)


def test_without_a_webhook_alerts_are_appended_as_json_lines(tmp_path: Path) -> None:
    sink = JsonLinesAlertSink(tmp_path / "alerts.jsonl", ["s3cret-key"])
    sink.deliver(ALERT)
    sink.deliver(Alert("warning", "fetch", "x", "answer had s3cret-key in it"))
    lines = [json.loads(line) for line in (tmp_path / "alerts.jsonl").read_text().splitlines()]
    assert [line["severity"] for line in lines] == ["error", "warning"]
    assert "s3cret-key" not in lines[1]["message"]


def test_a_dead_letter_becomes_an_alert_naming_the_queue_and_error() -> None:
    alert = alert_from_dead_letter(
        b'{"date": "2026-10-01", "run_id": "fetch-1"}',
        "fetch-requests",
        "MaxDeliveryCountExceeded",
        "Traceback...\nTransientApiError: usage API 2026-10-01 page 3: still failing after 6 attempts",
    )
    assert (
        alert.severity == "error" and alert.stage == "fetch-requests" and alert.activity_date == "2026-10-01"
    )
    assert "still failing after 6 attempts" in alert.message and "\n" not in alert.message


def test_the_sink_follows_the_settings(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("WEBSITE_SITE_NAME", raising=False)
    local = Settings(local_data_dir=tmp_path)
    assert isinstance(alert_sink(local), JsonLinesAlertSink)
    assert isinstance(
        alert_sink(replace(local, alert_webhook_url="https://hooks.example/x")), WebhookAlertSink
    )
    monkeypatch.setenv("WEBSITE_SITE_NAME", "func-company-activity")  # on Azure, no webhook: the log
    assert isinstance(alert_sink(local), LogAlertSink)
    assert isinstance(
        alert_sink(replace(local, alert_webhook_url="https://hooks.example/x")), WebhookAlertSink
    )


def test_on_azure_without_a_webhook_the_alert_is_an_error_log_line(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level("ERROR"):
        LogAlertSink().deliver(ALERT)
    assert "[ERROR] quality-gate 2026-10-01: 2026-10-01 not built: zero usage records" in caplog.text


def test_each_sink_says_where_alerts_go_without_a_secret(tmp_path: Path) -> None:
    """GET /api/health's alert_sink check names the target: never the webhook's path or query."""
    url = "https://user:pw@hooks.example.com/services/T1/B2/s3cret-path?token=s3cret-query"
    assert WebhookAlertSink(url, [url]).target == "webhook https://hooks.example.com"
    assert JsonLinesAlertSink(tmp_path / "alerts.jsonl", []).target == f"file {tmp_path / 'alerts.jsonl'}"
    assert "log" in LogAlertSink().target
