"""Days waiting for the transform: marks in the ledger's `days` partition.

A loader that staged an input marks the days it affects (`mark_days`): "build" for the days whose
rows may change, "gate" for the days whose quality gate must be checked again. Every mark carries
a fresh token. The transform reads the marks, does the work, and clears a mark only if its token is
still the one it read (`settle_day`), so a mark made while it worked survives for the next round.
However many inputs change while a transform waits in its queue, each day is built once.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import date
from typing import Any

from shared.domain import names
from shared.domain.transform_plan import BUILD, Need, merge_needs
from shared.ports import LedgerEntry, Services
from shared.services.ledger import update_entry

# Fields of a `days` entry; the transform's own fields (status, rows, rules, ...) sit beside them.
NEED = "pending"  # "build", "gate", or "" once settled
TOKEN = "pending_token"  # changes with every mark
RUN = "pending_run_id"  # the run whose input asked for the rebuild: the rows' pipeline_run_id
SINCE = "pending_since"  # when the day was first marked since it was last settled


@dataclass(frozen=True)
class PendingDay:
    day: date
    need: Need
    token: str
    run_id: str


def mark_days(services: Services, marks: Mapping[date, Need], run_id: str) -> None:
    """Ask the transform to rebuild or re-check these days, on behalf of `run_id`."""
    now = services.clock().isoformat()
    for day, need in sorted(marks.items()):
        token = f"{run_id}/{uuid.uuid4().hex[:12]}"

        def mark(current: Mapping[str, Any] | None, need: Need = need, token: str = token) -> dict[str, Any]:
            entry = dict(current or {})
            was = entry.get(NEED) or None
            entry[NEED] = merge_needs(need, was)
            entry[TOKEN] = token
            if need == BUILD or not entry.get(RUN):
                entry[RUN] = run_id
            if not was:
                entry[SINCE] = now
            return entry

        update_entry(services.ledger, names.DAYS, day.isoformat(), mark)


def pending_days(entries: Iterable[LedgerEntry]) -> dict[date, PendingDay]:
    """The marked days among the `days` entries."""
    found = {}
    for entry in entries:
        need = entry.data.get(NEED)
        if need:
            day = date.fromisoformat(entry.key)
            found[day] = PendingDay(day, need, str(entry.data.get(TOKEN, "")), str(entry.data.get(RUN, "")))
    return found


def settle_day(
    services: Services,
    day: date,
    seen: PendingDay | None,
    state: Mapping[str, Any] | None = None,
) -> None:
    """Record the day's new state (when there is one) and clear the mark the transform acted on,
    unless the day was marked again since it was read: that mark is the next round's work."""

    def settle(current: Mapping[str, Any] | None) -> dict[str, Any] | None:
        entry = dict(current or {})
        if state is not None:
            entry.update(state)
            entry["updated_at"] = services.clock().isoformat()
        if seen is not None and entry.get(TOKEN) == seen.token:
            entry.update({NEED: "", TOKEN: "", RUN: "", SINCE: ""})
        return entry if entry != dict(current or {}) else None

    update_entry(services.ledger, names.DAYS, day.isoformat(), settle)
