"""The settings a function needs, checked when it runs: a bad one fails that invocation with
one line naming every bad one it needs, and an alert when the alert path works (contract
section 8). Importing the app checks nothing, and a function runs whatever the settings it
does not need say, so one bad setting never stops the others, or the alert function."""

from __future__ import annotations

import logging

from shared import bootstrap
from shared.config import SettingsError, settings_of
from shared.domain.alerts import Alert
from shared.ports import Services
from shared.services.alerts import raise_alert

log = logging.getLogger(__name__)


# What each function's work is built from (shared.config.PIECES). Every one stores, queues and
# raises alerts; a piece a function does not use is not checked for it.
_BASE = ("storage", "bus", "alerts")
NEEDS: dict[str, frozenset[str]] = {
    "fetch-timer": settings_of(*_BASE),  # only enqueues yesterday's fetch
    "fetch": settings_of(*_BASE, "usage_api"),
    "ingest": settings_of(*_BASE, "warehouse", "rules"),  # stages; the CRM snapshot's age limit
    "transform": settings_of(*_BASE, "warehouse", "rules"),
    "http-replay": settings_of(*_BASE, "usage_api"),
    "http-status": settings_of("storage", "rules"),
    "http-reconcile": settings_of(*_BASE, "warehouse", "usage_api", "rules"),
}


def services_for(stage: str) -> Services:
    """The services, or `SettingsError("<stage>: setting X must be ..., got ...; setting Y ...")`
    naming each bad setting the stage needs, after logging that line and queueing it as an alert."""
    try:
        return bootstrap.get_services(NEEDS[stage])
    except SettingsError as exc:
        line = f"{stage}: {exc}"
        log.error("%s", line)
        _alert(stage, line)
        raise SettingsError(line) from None


def _alert(stage: str, line: str) -> None:
    try:
        bus = bootstrap.alert_bus()
        if bus is not None:
            raise_alert(bus, Alert("error", stage, "bad_setting", line[:500]))
    except Exception as exc:  # the setting is the news; a bus that fails too is a footnote
        log.warning("%s: the alert about it could not be queued: %s", stage, exc.__class__.__name__)
