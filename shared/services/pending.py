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
from dataclasses import dataclass, replace
from datetime import date, timedelta
from typing import Any

from shared.domain import ledger_records, names
from shared.domain.days import days_affected_by_usage
from shared.domain.ledger_records import DayRecord, DayState, LedgerRecord, from_data, to_data
from shared.domain.transform_plan import BUILD, Need, merge_needs
from shared.ports import LedgerEntry, Services
from shared.services.ledger import entries_between, update_record

# The field of a `days` entry (`DayRecord`) that says what is owed; the transform's own fields
# (status, rows, rules, ...) sit beside the marks. Kept under this name for the views.
NEED = ledger_records.PENDING
_NO_MARK = (None, "")  # the stored values of a settled (or never marked) day's NEED


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

        def mark(current: DayRecord | None, need: Need = need, token: str = token) -> DayRecord:
            entry = current or from_data(DayRecord, None)
            was = entry.pending or None
            return replace(
                entry,
                pending=merge_needs(need, was),
                pending_token=token,
                pending_run_id=run_id if need == BUILD or not entry.pending_run_id else entry.pending_run_id,
                pending_since=entry.pending_since if was else now,
            )

        update_record(services.ledger, DayRecord, day.isoformat(), mark)


def marking_inputs(services: Services, day: date) -> tuple[set[str], list[date]]:
    """What `days_to_mark` needs of the ledger for an input of `day` (usage, a snapshot or a day
    rebuilt by hand): the days with usage staged (ISO dates) and the CRM snapshots, among the
    days it can mark and the snapshots that can take one of them over from it. Both lie from
    `day` to the last day its usage reaches or CRM_MAX_SNAPSHOT_AGE_DAYS after it, so they are
    read by key range: a long history costs nothing here."""
    max_age = max(services.settings.crm_max_snapshot_age_days, 0)
    last = max(days_affected_by_usage(day)[-1], day + timedelta(days=max_age))
    staged = {e.key for e in entries_between(services.ledger, names.USAGE, day, last)}
    snapshots = [date.fromisoformat(e.key) for e in entries_between(services.ledger, names.CRM, day, last)]
    return staged, snapshots


def pending_days(entries: Iterable[LedgerEntry]) -> dict[date, PendingDay]:
    """The marked days among the `days` entries."""
    found = {}
    for entry in entries:
        # Most days of a long history are settled: skip them before decoding the record (which
        # costs more than reading the entry), by the stored value that decodes to no mark.
        if entry.data.get(NEED) in _NO_MARK:
            continue
        record = from_data(DayRecord, entry.data)
        if record.pending:
            day = date.fromisoformat(entry.key)
            found[day] = PendingDay(day, record.pending, record.pending_token, record.pending_run_id)
    return found


def settle_day(
    services: Services,
    day: date,
    seen: PendingDay | None,
    state: DayState | Mapping[str, Any] | None = None,
) -> None:
    """Record the day's new state (when there is one) and clear the mark the transform acted on,
    unless the day was marked again since it was read: that mark is the next round's work.

    The state's fields (a DayState, or the same fields as stored) replace the entry's; the
    others (the marks', an earlier build's) stay."""
    decided = to_data(state) if isinstance(state, LedgerRecord) else state

    def settle(current: DayRecord | None) -> DayRecord | None:
        entry = current or from_data(DayRecord, None)
        if decided is not None:
            entry = from_data(
                DayRecord, {**to_data(entry), **decided, "updated_at": services.clock().isoformat()}
            )
        if seen is not None and entry.pending_token == seen.token:
            entry = replace(entry, pending="", pending_token="", pending_run_id="", pending_since="")
        return entry

    update_record(services.ledger, DayRecord, day.isoformat(), settle)
