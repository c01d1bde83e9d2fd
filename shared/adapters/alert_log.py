"""Alerts written to the log at error level: on Azure without a webhook, Application Insights
is where they land (there is no local file to append to)."""

from __future__ import annotations

import logging

from shared.domain.alerts import Alert

log = logging.getLogger(__name__)


class LogAlertSink:
    target = "the log (Application Insights): no ALERT_WEBHOOK_URL is set"

    def deliver(self, alert: Alert) -> None:
        log.error("alert: %s: %s", alert.title(), alert.message)
