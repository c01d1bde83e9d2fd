"""Alert delivery reads its repeat window from the ledger as a typed record."""

from __future__ import annotations

from collections.abc import Callable

from shared.domain import names
from shared.domain.alerts import Alert
from shared.ports import Services
from shared.services.alerts import deliver_alert

ALERT = Alert("error", "fetch", "fetch_failed", "fetch of 2026-10-01 failed: HTTP 401", "run-1", "2026-10-01")


def test_an_entry_without_a_readable_send_time_delivers_instead_of_failing(
    make_services: Callable[..., Services], api
) -> None:
    services = make_services(api)
    services.ledger.put(names.ALERTS, ALERT.fingerprint(), {"kind": "fetch_failed", "suppressed": 3})
    deliver_alert(services, ALERT)
    entry = services.ledger.get(names.ALERTS, ALERT.fingerprint())
    assert entry is not None and (entry.data["suppressed"], entry.data["kind"]) == (0, "fetch_failed")
    assert entry.data["last_sent"]  # sent now, and the window starts again
