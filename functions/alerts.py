"""`alerts` trigger: alerts raised by the pipeline and dead letters forwarded from every queue."""

from __future__ import annotations

import logging

import azure.functions as func

from shared.bootstrap import get_alert_services
from shared.config import SettingsError
from shared.domain import names
from shared.domain.alerts import alert_from_body, alert_from_dead_letter
from shared.observability.context import log_context
from shared.ports import Services
from shared.services import build_lease
from shared.services.alerts import deliver_alert

log = logging.getLogger(__name__)


def on_alert(msg: func.ServiceBusMessage) -> None:
    # No permanent-error settling here: an unreadable alert is still an alert, and a failing
    # sink is worth redelivering. The alerts queue's own dead letters are terminal.
    props = {**(msg.application_properties or {}), **(getattr(msg, "user_properties", None) or {})}
    reason = msg.dead_letter_reason or props.get("DeadLetterReason")
    body = msg.get_body()
    if reason:
        alert = alert_from_dead_letter(
            body,
            msg.dead_letter_source or str(props.get("DeadLetterSource") or "unknown"),
            str(reason),
            str(msg.dead_letter_error_description or props.get("DeadLetterErrorDescription") or ""),
        )
    else:
        alert = alert_from_body(body)
    with log_context(stage="alerts", date=alert.activity_date, run_id=alert.run_id):
        try:
            # Only the sink's own settings are needed: another bad one is what alerts report.
            services = get_alert_services()
        except SettingsError as exc:
            # No working sink: the log keeps the alert (Application Insights on Azure).
            line = f"alerts: {exc}; alert not delivered: {alert.title()}: {' '.join(alert.message.split())}"
            log.error("%s", line)
            raise SettingsError(line) from None
        if reason and (msg.dead_letter_source or props.get("DeadLetterSource")) == names.TRANSFORM_QUEUE:
            _free_lease_of(services, msg.message_id or "")
        deliver_alert(services, alert)


def _free_lease_of(services: Services, holder: str) -> None:
    """A dead-lettered transform holds the build lease no more: its days stay pending, and the
    next wake-up builds them at once instead of waiting for the lease to expire."""
    try:
        build_lease.release(services, holder)
    except Exception as exc:  # the alert is the news; the lease expires on its own anyway
        log.warning("alerts: the build lease of %s could not be freed: %s", holder, exc.__class__.__name__)
