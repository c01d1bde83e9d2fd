"""Alerts: what they carry (contract section 5), how they are raised, and how they are delivered."""

from __future__ import annotations

import hashlib
import json
import logging
import os
from collections.abc import Mapping
from dataclasses import asdict, dataclass
from datetime import datetime
from pathlib import Path
from typing import Any, Literal

import requests
from tenacity import Retrying, retry_if_exception_type, stop_after_attempt, wait_exponential

from shared import names
from shared.ports import MessageBus, OutgoingMessage
from shared.redact import redact

log = logging.getLogger(__name__)

Severity = Literal["error", "warning"]


@dataclass(frozen=True)
class Alert:
    severity: Severity
    stage: str  # fetch, usage-load, crm-load, quality-gate, transform, dead-letter
    kind: str  # a stable name per failure kind, e.g. "crm_file_rejected"
    message: str  # one line for a human
    run_id: str = ""
    activity_date: str | None = None
    detail: str = ""

    def fingerprint(self) -> str:
        """Same failure, same fingerprint, whichever run saw it: lets the bus drop repeats."""
        key = "|".join((self.kind, self.stage, self.activity_date or "", self.message))
        return hashlib.sha256(key.encode()).hexdigest()[:32]

    def to_json(self) -> dict[str, Any]:
        return {"type": "alert", **asdict(self)}

    @classmethod
    def from_json(cls, body: Mapping[str, Any]) -> Alert:
        return cls(
            severity="warning" if body.get("severity") == "warning" else "error",
            stage=str(body.get("stage") or "unknown"),
            kind=str(body.get("kind") or "unknown"),
            message=str(body.get("message") or "(no message)"),
            run_id=str(body.get("run_id") or ""),
            activity_date=body.get("activity_date") or None,
            detail=str(body.get("detail") or ""),
        )


def raise_alert(bus: MessageBus, alert: Alert) -> None:
    log.log(logging.ERROR if alert.severity == "error" else logging.WARNING, "alert: %s", alert.message)
    bus.send(
        names.ALERTS_QUEUE, [OutgoingMessage(body=alert.to_json(), message_id="alert-" + alert.fingerprint())]
    )


def alert_from_dead_letter(body: bytes, source_queue: str, reason: str, description: str) -> Alert:
    """A message that no retry could handle, forwarded from a queue's dead letters."""
    try:
        original = json.loads(body)
    except (UnicodeDecodeError, json.JSONDecodeError):
        original = None
    day = original.get("date") if isinstance(original, dict) else None
    run_id = original.get("run_id", "") if isinstance(original, dict) else ""
    last_line = (description or reason or "unknown error").strip().splitlines()[-1:] or [""]
    return Alert(
        severity="error",
        stage=source_queue or "unknown",
        kind="dead_letter",
        message=f"message on '{source_queue}' dead-lettered ({reason}): {last_line[0]}"[:500],
        run_id=str(run_id or ""),
        activity_date=str(day) if day else None,
        detail=f"body: {body[:2000].decode('utf-8', 'replace')}\nerror: {description}",
    )


class AlertSink:
    """Posts to a Teams/Slack-style webhook, or appends to alerts.jsonl when none is set."""

    def __init__(
        self,
        webhook_url: str,
        jsonl_path: Path,
        secrets: list[str],
        attempts: int = 4,
        backoff_s: float = 0.5,
    ) -> None:
        self._webhook_url = webhook_url
        self.backoff_s = backoff_s
        self.jsonl_path = jsonl_path
        self._secrets = secrets
        self.attempts = attempts

    def deliver(self, alert: Alert) -> None:
        record = {
            k: redact(v, self._secrets) if isinstance(v, str) else v for k, v in alert.to_json().items()
        }
        if not self._webhook_url:
            self.jsonl_path.parent.mkdir(parents=True, exist_ok=True)
            with self.jsonl_path.open("a", encoding="utf-8") as handle:
                handle.write(json.dumps(record, ensure_ascii=False) + "\n")
            return
        title = f"[{alert.severity.upper()}] {alert.stage}" + (
            f" {alert.activity_date}" if alert.activity_date else ""
        )
        payload = {"text": f"{title}: {record['message']}", "alert": record}  # Slack and Teams read "text"
        try:
            for attempt in Retrying(
                stop=stop_after_attempt(self.attempts),
                wait=wait_exponential(multiplier=self.backoff_s, max=8),
                retry=retry_if_exception_type(requests.RequestException),
                reraise=True,
            ):
                with attempt:
                    self._post(payload)
        except requests.RequestException as exc:
            # Only the exception's kind: requests puts the URL, whose path is the secret, in its messages.
            raise RuntimeError(f"alert webhook failed after {self.attempts} attempts: {_kind(exc)}") from None

    def _post(self, payload: dict[str, Any]) -> None:
        response = requests.post(self._webhook_url, json=payload, timeout=10)
        if response.status_code >= 500 or response.status_code == 429:
            raise requests.HTTPError(f"webhook answered HTTP {response.status_code}")
        if response.status_code >= 400:
            # A bad URL or payload: retrying will not help.
            raise RuntimeError(f"alert webhook refused the alert: HTTP {response.status_code}")


def _kind(exc: requests.RequestException) -> str:
    if isinstance(exc, requests.HTTPError) and exc.response is None:
        return str(exc)  # our own "webhook answered HTTP 503"
    return exc.__class__.__name__


def alert_from_body(body: bytes) -> Alert:
    try:
        data = json.loads(body)
    except (UnicodeDecodeError, json.JSONDecodeError):
        data = None
    if not isinstance(data, dict):
        return Alert(
            "error",
            "alerts",
            "unreadable_alert",
            "an alert message could not be read",
            detail=body[:2000].decode("utf-8", "replace"),
        )
    return Alert.from_json(data)


def deliver_alert(services: Any, alert: Alert) -> None:
    """Deliver an alert unless the same one was delivered within ALERT_REPEAT_WINDOW_S: a day
    that fails the same way on every run should page someone once, not every time."""
    settings = services.settings
    key = alert.fingerprint()
    previous = services.ledger.get(names.ALERTS, key)
    now = services.clock()
    if previous is not None:
        last = datetime.fromisoformat(str(previous.data["last_sent"]))
        if (now - last).total_seconds() < settings.alert_repeat_window_s:
            log.info(
                "alert repeated within %.0f s, not sent again: %s",
                settings.alert_repeat_window_s,
                alert.message,
            )
            services.ledger.put(
                names.ALERTS,
                key,
                {**previous.data, "suppressed": int(previous.data.get("suppressed", 0)) + 1},
            )
            return
    _send(settings, alert)
    services.ledger.put(
        names.ALERTS,
        key,
        {
            "kind": alert.kind,
            "stage": alert.stage,
            "activity_date": alert.activity_date or "",
            "message": alert.message[:1000],
            "last_sent": now.isoformat(),
            "suppressed": 0,
        },
    )


def _send(settings: Any, alert: Alert) -> None:
    if not settings.alert_webhook_url and os.environ.get("WEBSITE_SITE_NAME"):
        # On Azure without a webhook there is no local file to append to: the log
        # (Application Insights) is where the alert lands.
        log.error(
            "alert: [%s] %s %s: %s", alert.severity, alert.stage, alert.activity_date or "", alert.message
        )
        return
    AlertSink(
        settings.alert_webhook_url,
        settings.local_data_dir / "alerts.jsonl",
        settings.secrets(),
        backoff_s=settings.alert_webhook_backoff_s,
    ).deliver(alert)
