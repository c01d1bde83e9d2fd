"""Alerts posted to a Teams/Slack-style incoming webhook."""

from __future__ import annotations

from typing import Any
from urllib.parse import urlsplit

import requests
from tenacity import Retrying, retry_if_exception_type, stop_after_attempt, wait_exponential

from shared.domain import http_status
from shared.domain.alerts import Alert
from shared.observability.redact import redact_fields


class WebhookAlertSink:
    def __init__(self, url: str, secrets: list[str], *, attempts: int = 4, backoff_s: float = 0.5) -> None:
        self._url = url
        self._secrets = secrets
        parts = urlsplit(url)  # the path and query are the webhook's key: only scheme and host
        self.target = f"webhook {parts.scheme}://{parts.hostname or '?'}"
        self.attempts = attempts
        self.backoff_s = backoff_s

    def deliver(self, alert: Alert) -> None:
        record = redact_fields(alert.to_json(), self._secrets)
        payload = {
            "text": f"{alert.title()}: {record['message']}",
            "alert": record,
        }  # Slack and Teams read "text"
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
        response = requests.post(self._url, json=payload, timeout=10)
        if http_status.is_transient(response.status_code):
            raise requests.HTTPError(f"webhook answered HTTP {response.status_code}")
        if response.status_code >= 400:
            # A bad URL or payload: retrying will not help.
            raise RuntimeError(f"alert webhook refused the alert: HTTP {response.status_code}")


def _kind(exc: requests.RequestException) -> str:
    if isinstance(exc, requests.HTTPError) and exc.response is None:
        return str(exc)  # our own "webhook answered HTTP 503"
    return exc.__class__.__name__
