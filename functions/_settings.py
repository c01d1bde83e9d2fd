"""The settings a function needs, checked when it runs: a bad one fails that invocation with
one line naming it, and an alert when the alert path works (contract section 8). Importing
the app checks nothing, so one bad setting never stops the others, or the alert function."""

from __future__ import annotations

import logging

from shared import bootstrap
from shared.config import SettingsError
from shared.domain.alerts import Alert
from shared.ports import Services
from shared.services.alerts import raise_alert

log = logging.getLogger(__name__)


def services_for(stage: str) -> Services:
    """The services, or `SettingsError("<stage>: setting X must be ..., got ...")` after logging
    that line and queueing it as an alert."""
    try:
        return bootstrap.get_services()
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
