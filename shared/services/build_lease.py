"""One transform builds at a time: a lease in the ledger.

Service Bus delivers several transform messages at once, on several instances; each would build
every pending day, and the builds would queue on the warehouse's lock to do the same work again.
The first transform to take the lease builds; the others complete at once. The holder looks for
pending days again after it lets go of the lease, so a day marked while it worked is never left
behind: either the holder sees the mark, or the marker's own transform finds the lease free. The
holder extends the lease before each round and stops building when that is refused. The
protocol is written out in one place: `shared.services.transform._build_under_lease`.

A holder that dies keeps the lease until it expires (LEASE_S, longer than the function timeout);
a redelivery of the holder's own message (the same message id) takes it over at once.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, datetime, timedelta
from typing import Any

from shared.domain import names
from shared.ports import Services
from shared.services.ledger import update_entry

KEY = "transform"
LEASE_S = 11 * 60  # host.json functionTimeout is 10 minutes: no live holder outlasts this


def acquire(services: Services, holder: str) -> bool:
    """Take (or extend) the lease; False when another live holder has it."""
    now = services.clock()

    def take(current: Mapping[str, Any] | None) -> dict[str, Any] | None:
        if current and current.get("holder") not in ("", holder) and _expires(current) > now:
            return None
        return {"holder": holder, "expires_at": (now + timedelta(seconds=LEASE_S)).isoformat()}

    entry = update_entry(services.ledger, names.LOCKS, KEY, take)
    return entry is not None and entry.data.get("holder") == holder


def release(services: Services, holder: str) -> None:
    """Let go of the lease, if it is still ours."""

    def free(current: Mapping[str, Any] | None) -> dict[str, Any] | None:
        if not current or current.get("holder") != holder:
            return None
        return {"holder": "", "expires_at": ""}

    update_entry(services.ledger, names.LOCKS, KEY, free)


def holder_of(services: Services) -> str:
    """Who holds the lease now ("" when nobody does)."""
    entry = services.ledger.get(names.LOCKS, KEY)
    if entry is None or _expires(entry.data) <= services.clock():
        return ""
    return str(entry.data.get("holder") or "")


def _expires(data: Mapping[str, Any]) -> datetime:
    try:
        expires = datetime.fromisoformat(str(data.get("expires_at")))
    except ValueError:
        return datetime.min.replace(tzinfo=UTC)
    return expires if expires.tzinfo else expires.replace(tzinfo=UTC)
