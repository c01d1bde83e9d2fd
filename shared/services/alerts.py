"""Raising alerts (onto the `alerts` queue) and delivering them (once per repeat window)."""

from __future__ import annotations

import logging
import time
from dataclasses import replace

from shared.domain import names
from shared.domain.alerts import Alert
from shared.domain.ledger_records import AlertRecord, stamp_time
from shared.ports import MessageBus, OutgoingMessage, Services
from shared.services.ledger import put_record, read_record

log = logging.getLogger(__name__)


def raise_alert(bus: MessageBus, alert: Alert) -> None:
    """Queue an alert. Its message id is its fingerprint and the UTC hour, so the bus drops
    repeats within the hour (the queue's duplicate detection keeps ids for a day, for Event
    Grid's retries); `deliver_alert` applies ALERT_REPEAT_WINDOW_S on top."""
    log.log(logging.ERROR if alert.severity == "error" else logging.WARNING, "alert: %s", alert.message)
    hour = int(time.time() // 3600)
    bus.send(
        names.ALERTS_QUEUE,
        [OutgoingMessage(body=alert.to_json(), message_id=f"alert-{alert.fingerprint()}-{hour}")],
    )


def deliver_alert(services: Services, alert: Alert) -> None:
    """Deliver an alert unless the same one was delivered within ALERT_REPEAT_WINDOW_S: a day
    that fails the same way on every run should page someone once, not every time."""
    window_s = services.settings.alert_repeat_window_s
    key = alert.fingerprint()
    previous = read_record(services.ledger, AlertRecord, key)
    now = services.clock()
    if previous is not None and (now - stamp_time(previous.last_sent)).total_seconds() < window_s:
        log.info("alert repeated within %.0f s, not sent again: %s", window_s, alert.message)
        put_record(services.ledger, key, replace(previous, suppressed=previous.suppressed + 1))
        return
    services.alert_sink(services.settings).deliver(alert)
    sent = AlertRecord(
        kind=alert.kind,
        stage=alert.stage,
        activity_date=alert.activity_date or "",
        message=alert.message[:1000],
        last_sent=now.isoformat(),
        suppressed=0,
    )
    put_record(services.ledger, key, sent)
