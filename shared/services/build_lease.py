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

from dataclasses import replace
from datetime import timedelta

from shared.domain.ledger_records import LockRecord, stamp_time
from shared.ports import Services
from shared.services.ledger import read_record, update_record

KEY = "transform"
LEASE_S = 11 * 60  # host.json functionTimeout is 10 minutes: no live holder outlasts this


def acquire(services: Services, holder: str) -> bool:
    """Take (or extend) the lease; False when another live holder has it."""
    now = services.clock()

    def take(current: LockRecord | None) -> LockRecord | None:
        if current and current.holder not in ("", holder) and stamp_time(current.expires_at) > now:
            return None
        expires_at = (now + timedelta(seconds=LEASE_S)).isoformat()
        return replace(current or LockRecord(), holder=holder, expires_at=expires_at)

    lease = update_record(services.ledger, LockRecord, KEY, take)
    return lease is not None and lease.holder == holder


def release(services: Services, holder: str) -> None:
    """Let go of the lease, if it is still ours."""

    def free(current: LockRecord | None) -> LockRecord | None:
        if not current or current.holder != holder:
            return None
        return replace(current, holder="", expires_at="")

    update_record(services.ledger, LockRecord, KEY, free)


def holder_of(services: Services) -> str:
    """Who holds the lease now ("" when nobody does)."""
    lease = read_record(services.ledger, LockRecord, KEY)
    if lease is None or stamp_time(lease.expires_at) <= services.clock():
        return ""
    return lease.holder
