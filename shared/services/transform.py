"""Fan-in and transform: from "inputs changed" to rebuilt analytics days, each day built once.

Loaders mark the days an input affects in the ledger (`shared.services.pending`) and send one
transform message each. A transform message is a wake-up, not a work order: the transform takes
every pending mark, plans them together (`plan_transform`: which days wait for a snapshot, which
the quality gate blocks, which are built, which only needed their gate checked again), raises the
alerts, has the warehouse rebuild the days in one set-based MERGE per round, and clears the marks
it acted on. A transform whose marks another transform already built finds nothing to do. One
transform builds at a time (`build_lease`), so a burst of messages does the work once; how
rounds, the lease and the work budget fit together is `_build_under_lease`.

Each day records the rules it was decided under; days decided under other rules are rebuilt with
the next round, so a change of CHURN_* or CRM_MAX_SNAPSHOT_AGE_DAYS never leaves a mixed table.
Every build recomputes from what is staged at that moment, so duplicates, reordering and replays
of these messages cannot change the outcome: the table converges.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from typing import Any, NamedTuple

from shared.domain import names
from shared.domain.alerts import Alert
from shared.domain.days import ROLLING_DAYS, effective_snapshot
from shared.domain.ledger_records import DayBlocked, DayBuilt, DayFailed, DayRecord, DayWaiting
from shared.domain.quality import BASELINE_DAYS, FORCE_ADVICE, Coverage
from shared.domain.rules import Rules, stale_days
from shared.domain.transform_plan import (
    BUILD,
    TransformPlan,
    TransformRequest,
    days_to_mark,
    days_to_plan,
    plan_transform,
)
from shared.domain.wording import counted
from shared.ports import BuildParams, LedgerEntry, OutgoingMessage, Services, WarehouseOutOfMemory
from shared.services import build_lease
from shared.services.alerts import raise_alert
from shared.services.ledger import entries_between, read_record
from shared.services.pending import NEED, PendingDay, mark_days, pending_days, settle_day

log = logging.getLogger(__name__)

# One build (one warehouse transaction) takes at most this many days: a long backfill is built in
# rounds, so no transaction and no function invocation grows without bound.
MAX_DAYS_PER_BUILD = 31
# Rows a round may touch per MB of a warehouse's memory cap (LOCAL_WAREHOUSE_MEMORY_MB), measured
# on DuckDB (docs/performance.md): at 256 MB a round of one day of 1,000,000 companies with six
# days of window behind it (8 million rows) builds, one of 7 such days (14 million) does not.
# Set below the line, so a round's rows stay under about 6 million at 256 MB.
BUILD_ROWS_PER_MB = 24_000
# After this long, what is still pending goes to a new transform message instead: the function
# timeout (host.json, 10 minutes) must never cut a round off.
WORK_BUDGET_S = 300.0


@dataclass
class TransformOutcome:
    built: list[str] = field(default_factory=list)
    waiting: list[str] = field(default_factory=list)
    blocked: list[str] = field(default_factory=list)
    rechecked: list[str] = field(default_factory=list)  # gate checked again, rows stand
    rows_changed: int = 0
    deferred: bool = False  # the rest was left to another transform (the lease, or the budget)


@dataclass
class _Transform:
    """What one transform message carries from round to round."""

    services: Services
    request: TransformRequest
    rules: Rules
    holder: str  # this attempt's name on the build lease
    started: datetime
    outcome: TransformOutcome = field(default_factory=TransformOutcome)
    tried: dict[date, str] = field(default_factory=dict)  # day -> the mark's token ("" for stale)
    one_day: bool = False  # a round of several days did not fit in memory: one day a round

    def untried(self, day: date, mark: PendingDay | None = None) -> bool:
        """Not acted on by this transform yet: a day it has not planned, or a pending day marked
        again since it was planned (a new mark is new work; a stale day is tried once)."""
        return day not in self.tried or (mark is not None and self.tried[day] != mark.token)

    def have_tried(self, days: Iterable[date], pending: Mapping[date, PendingDay]) -> None:
        self.tried.update({d: pending[d].token if d in pending else "" for d in days})

    def try_again(self, days: Iterable[date]) -> None:
        for day in days:
            self.tried.pop(day, None)

    def out_of_time(self) -> bool:
        return (self.services.clock() - self.started).total_seconds() > WORK_BUDGET_S


def run_transform(services: Services, request: TransformRequest, holder: str = "") -> TransformOutcome:
    """Build everything pending. `holder` names this attempt for the build lease: the message id,
    so that a redelivery of the same message takes over a lease its dead attempt left behind."""
    if request.kind == "day":
        _mark_requested_day(services, request)
    work = _Transform(
        services,
        request,
        services.settings.rules(),
        holder or f"{request.run_id}/{uuid.uuid4().hex[:8]}",
        services.clock(),
    )
    _build_under_lease(work)
    outcome = work.outcome
    log.info(
        "transform %s %s (run %s): built %s, waiting %s, blocked %s, rechecked %s, %d rows changed",
        request.kind,
        request.day,
        request.run_id,
        outcome.built or "-",
        outcome.waiting or "-",
        outcome.blocked or "-",
        outcome.rechecked or "-",
        outcome.rows_changed,
    )
    return outcome


def _build_under_lease(work: _Transform) -> None:
    """The concurrency protocol. Each pass holds the build lease (takes it, or extends it for
    one more round), builds one round, then goes on under the lease or lets go and looks again.

    * The lease refused, taken or extended: another holder builds. This transform builds
      nothing more and leaves the rest to it (the holder looks for marks after it lets go).
    * A round that found work, within WORK_BUDGET_S: the next round follows under the lease.
    * Otherwise the lease is let go and the ledger read once more, since a day marked before
      that found the lease taken and was left to us. What is left is built in another pass,
      or, past the budget, handed to a new transform message.
    """
    services, holder, leased = work.services, work.holder, False
    while True:
        if not build_lease.acquire(services, holder):
            _leave_to_holder(work, lost=leased)
            return
        leased = True
        try:
            found_work = _one_round(work)
        except BaseException:
            build_lease.release(services, holder)
            raise
        out_of_time = work.out_of_time()
        if found_work and not out_of_time:
            continue
        build_lease.release(services, holder)
        leased = False
        if not _work_left(work):
            return
        if out_of_time:
            _continue_later(services, work.request)
            work.outcome.deferred = True
            return


def _leave_to_holder(work: _Transform, *, lost: bool) -> None:
    """Another transform holds the lease: it builds what is pending, this one's marks too."""
    holder = build_lease.holder_of(work.services)
    if lost:  # ours expired under a slow round; building on would build beside the new holder
        log.warning(
            "transform %s lost the build lease to %s; it builds the rest", work.request.run_id, holder
        )
    else:
        log.info("another transform is building (%s); it takes this change too", holder)
    work.outcome.deferred = True


def _mark_requested_day(services: Services, request: TransformRequest) -> None:
    """A day rebuilt by hand is marked like any other, if it has usage to build from."""
    key = request.day.isoformat()
    staged = {key} if services.ledger.get(names.USAGE, key) is not None else set()
    mark_days(services, days_to_mark("day", request.day, [], 0, staged), request.run_id)


@dataclass(frozen=True)
class _Untried:
    """One look at the ledger: the work in it that this transform has not tried yet."""

    pending: dict[date, PendingDay]  # marked, but for the days held back under the memory cap
    stale: list[date]  # decided under other rules

    @property
    def empty(self) -> bool:
        return not self.pending and not self.stale


def _untried(work: _Transform, day_entries: list[LedgerEntry], held: set[date]) -> _Untried:
    states = {e.key: e.data for e in day_entries}
    return _Untried(
        pending={d: p for d, p in pending_days(day_entries).items() if d not in held and work.untried(d, p)},
        stale=[d for d in stale_days(states, work.rules) if work.untried(d)],
    )


def _one_round(work: _Transform) -> bool:
    """Plan the pending days (and the days decided under other rules) up to one build's worth,
    and carry the plan out. False when there was nothing left to do."""
    services, rules = work.services, work.rules
    # The whole `days` partition: a mark, or a day decided under other rules, may be on any day.
    day_entries = services.ledger.query(names.DAYS)
    states = {e.key: e.data for e in day_entries}
    cap = _memory_cap(services)
    untried = _untried(work, day_entries, _held_back(services, states, cap))
    if untried.empty:
        return False
    pending, stale = untried.pending, untried.stale
    usage, crm_entries = _inputs_for(
        services, days_to_plan(pending, stale, MAX_DAYS_PER_BUILD), rules.crm_max_snapshot_age_days
    )
    snapshots = sorted(date.fromisoformat(e.key) for e in crm_entries)
    built = {date.fromisoformat(k) for k, s in states.items() if s.get("status") == "built"}
    limit = days_per_round(
        _largest(usage.values()),
        _largest(e.data for e in crm_entries),
        cap,
    )
    if work.one_day:
        limit = 1
    coverage = _coverage(
        services,
        days_to_plan(pending, stale, limit),
        usage,
        snapshots,
        rules.crm_max_snapshot_age_days,
    )
    plan = plan_transform(
        {d: p.need for d, p in pending.items()},
        usage,
        snapshots,
        rules.crm_max_snapshot_age_days,
        stale=stale,
        built=built,
        limit=limit,
        coverage=coverage,
    )
    if plan.rules_only:
        log.warning(
            "%d days were decided under other rules; rebuilding them under %s",
            len(plan.rules_only),
            rules.short(),
        )
    planned = [*plan.skipped, *plan.waiting, *plan.blocked, *plan.standing, *plan.to_build]
    work.have_tried(planned, pending)
    _carry_out(work, plan, pending)
    return True


class InputsWindow(NamedTuple):
    """The days of the ledger's `usage` and `crm` partitions a round can look at."""

    usage_from: date
    snapshots_from: date
    last: date


def inputs_window(days: list[date], max_age: int) -> InputsWindow:
    """For a round of some of `days` (in date order, the first among them): their usage and the
    gate's baseline before it (BASELINE_DAYS, which holds the rolling window), and the snapshots
    that can be effective for them (at most `max_age` days old)."""
    first, last = days[0], days[-1]
    return InputsWindow(first - timedelta(days=BASELINE_DAYS), first - timedelta(days=max(max_age, 0)), last)


def _inputs_for(
    services: Services, days: list[date], max_age: int
) -> tuple[dict[str, Mapping[str, Any]], list[LedgerEntry]]:
    """The staged usage entries (by ISO date) and CRM snapshot entries of `inputs_window`, read
    by key range: a long history costs nothing here. `max_age` is the round's rule, the one its
    plan uses, so no snapshot the plan could take is left unread."""
    window = inputs_window(days, max_age)
    usage = entries_between(services.ledger, names.USAGE, window.usage_from, window.last)
    crm = entries_between(services.ledger, names.CRM, window.snapshots_from, window.last)
    return {e.key: e.data for e in usage}, crm


def days_per_round(usage_rows: int, snapshot_rows: int, memory_mb: int | None) -> int:
    """How many days one round builds: MAX_DAYS_PER_BUILD, or fewer when the warehouse has a
    memory cap (DuckDB's LOCAL_WAREHOUSE_MEMORY_MB; Azure SQL has none of ours) that the round's
    rows would pass. A round of k days reads the usage of k days and the ROLLING_DAYS - 1 before
    them and writes k days of rows (the union of usage and snapshot companies); sized on the
    largest day staged among those the round can read (`_inputs_for`), so a round of a
    million-company backfill is one day at 256 MB, one of 100,000 companies 27 days. At least
    one day: a day that cannot fit fails with the setting named (WarehouseOutOfMemory), once
    (`_carry_out`)."""
    if not memory_mb or usage_rows <= 0:
        return MAX_DAYS_PER_BUILD
    budget = memory_mb * BUILD_ROWS_PER_MB
    per_day = usage_rows + max(usage_rows, snapshot_rows)
    fitting = (budget - (ROLLING_DAYS - 1) * usage_rows) // per_day
    return max(1, min(MAX_DAYS_PER_BUILD, fitting))


def _largest(entries: Iterable[Mapping[str, Any]]) -> int:
    """The most rows any staged input holds (its ledger entry's `staged`)."""
    return max((int(e.get("staged") or 0) for e in entries), default=0)


def _coverage(
    services: Services, days: list[date], usage: dict[str, Any], snapshots: list[date], max_age: int
) -> dict[date, Coverage]:
    """For each day to plan that has usage staged and an effective snapshot, what the snapshot
    holds of the day's usage companies (`coverage_day.sql`, read-only). A day with no effective
    snapshot waits and is not checked: the snapshot that ends the wait marks it, and its gate,
    coverage included, is checked then."""
    found: dict[date, Coverage] = {}
    for day in days:
        snapshot = effective_snapshot(day, snapshots, max_age) if day.isoformat() in usage else None
        if snapshot is not None:
            rows = services.warehouse.fetch_rows(
                "coverage_day", {"activity_date": day, "snapshot_date": snapshot}
            )
            found[day] = Coverage.from_rows(snapshot, rows)
    return found


def _carry_out(work: _Transform, plan: TransformPlan, pending: dict[date, PendingDay]) -> None:
    services, request, rules, outcome = work.services, work.request, work.rules, work.outcome
    encoded = rules.encode()
    for day in plan.skipped:
        settle_day(services, day, pending.get(day))
    for day in plan.waiting:
        reason = f"no CRM snapshot within {counted(rules.crm_max_snapshot_age_days, 'day')}"
        # A day waiting holds no rows (one that lost its snapshot had them removed): DayWaiting
        # clears its snapshot, rows and build time, so nothing of an earlier build shows as current.
        waiting = DayWaiting(reason=reason, run_id=_run_of(day, pending, request), rules=encoded)
        settle_day(services, day, pending.get(day), waiting)
        outcome.waiting.append(day.isoformat())
    _raise_warnings(work, plan)
    for day in plan.blocked:
        gate, key = plan.gates[day], day.isoformat()
        raise_alert(
            services.bus,
            Alert(
                "error",
                "quality-gate",
                "quality_error",
                f"{key} not built: " + "; ".join(gate.errors),
                _run_of(day, pending, request),
                key,
                detail=gate.advice or FORCE_ADVICE,
            ),
        )
        blocked = DayBlocked(
            errors=tuple(gate.errors),
            warnings=tuple(gate.warnings),
            run_id=_run_of(day, pending, request),
            rules=encoded,
        )
        settle_day(services, day, pending.get(day), blocked)
        outcome.blocked.append(key)
    for day in plan.standing:
        settle_day(services, day, pending.get(day))
        outcome.rechecked.append(day.isoformat())

    # Waiting days go to the warehouse too: one that lost its snapshot (a lower snapshot age
    # limit) must lose the rows it was built with.
    run_ids = {d: _run_of(d, pending, request) for d in plan.to_build + plan.waiting}
    try:
        result = services.warehouse.build_days(
            plan.to_build + plan.waiting,
            BuildParams(
                run_id=request.run_id,
                churn_min_rolling_users=rules.churn_min_rolling_users,
                churn_max_contact_age_days=rules.churn_max_contact_age_days,
                crm_max_snapshot_age_days=rules.crm_max_snapshot_age_days,
                rolling_days=ROLLING_DAYS,
                day_run_ids=run_ids,
            ),
        )
    except WarehouseOutOfMemory as exc:
        _out_of_memory(work, plan, pending, exc)
        return
    built_at = services.clock().isoformat()
    for built in result.days:
        gate = plan.gates[built.activity_date]
        notes = gate.warnings + (
            [f"errors overridden by a forced replay: {'; '.join(gate.errors)}"] if gate.overridden else []
        )
        state = DayBuilt(
            snapshot_date=built.snapshot_date.isoformat(),
            rows=built.rows,
            inserted=built.inserted,
            updated=built.updated,
            deleted=built.deleted,
            warnings=tuple(notes),
            errors=(),
            run_id=run_ids[built.activity_date],
            built_at=built_at,
            rules=encoded,
        )
        settle_day(services, built.activity_date, pending.get(built.activity_date), state)
        outcome.built.append(built.activity_date.isoformat())
    outcome.rows_changed += result.changed


def _out_of_memory(
    work: _Transform, plan: TransformPlan, pending: dict[date, PendingDay], exc: WarehouseOutOfMemory
) -> None:
    """A round the warehouse's memory cap could not hold. Of several days, the next rounds take
    one day each. One day that does not fit fails once: it is recorded as failed under this cap
    with the message that names the setting, and the error settles the transform message at
    once (a PermanentError). Its mark stands, but no redelivery or later wake-up builds it, nor
    any other day about as large, under the same cap (`_held_back`); with a higher cap, the next
    transform (`rebuild`) does."""
    if len(plan.to_build) > 1:
        log.warning(
            "%d days did not fit in the warehouse's memory in one round; building them one a round",
            len(plan.to_build),
        )
        work.one_day = True
        work.try_again(plan.to_build)
        return
    services = work.services
    for day in plan.to_build:
        staged = services.ledger.get(names.USAGE, day.isoformat())
        rows = _rows({day.isoformat(): staged.data} if staged else {}, day)
        _record_failed(services, day, str(exc), _memory_cap(services), rows, work.request.run_id)
    log.error("transform %s: %s not built: %s", work.request.run_id, plan.to_build[0], exc)
    raise exc


# A day within this share of the size of a day that did not fit in memory does not fit either.
FIT_MARGIN = 0.9


def _memory_cap(services: Services) -> int | None:
    """The warehouse's memory cap in MB (DuckDB's LOCAL_WAREHOUSE_MEMORY_MB), None without one."""
    cap = getattr(services.warehouse, "memory_mb", None)
    return cap if isinstance(cap, int) else None


def _rows(usage: Mapping[str, Mapping[str, Any]], day: date) -> int:
    return int((usage.get(day.isoformat()) or {}).get("staged") or 0)


def _record_failed(
    services: Services, day: date, reason: str, cap: int | None, rows: int, run_id: str = "rebuild"
) -> None:
    """The day is recorded as failed under this cap and stays owed: its mark stands, and a day
    rebuilt without one (for a change of rules) is marked, so a higher cap builds it."""
    settle_day(services, day, None, DayFailed(reason=reason, memory_mb=cap, usage_rows=rows))
    entry = read_record(services.ledger, DayRecord, day.isoformat())
    if entry is None or not entry.pending:
        mark_days(services, {day: BUILD}, run_id)


def _held_back(
    services: Services,
    states: Mapping[str, Mapping[str, Any]],
    cap: int | None,
    *,
    record: bool = True,
) -> set[date]:
    """The pending days not to build under this memory cap: a day of this cap's smallest failed
    size (within FIT_MARGIN) or larger. Those not recorded as failed yet are (`record`)."""
    failed = [s for s in states.values() if s.get("status") == "failed" and s.get("memory_mb") == cap]
    if not failed or not (marked := _marked(states)):
        return set()
    smallest = min(int(s.get("usage_rows") or 0) for s in failed)
    reason = str(failed[0].get("reason") or "")
    usage = {e.key: e.data for e in entries_between(services.ledger, names.USAGE, min(marked), max(marked))}
    held = set()
    for day in marked:
        rows = _rows(usage, day)
        if rows >= FIT_MARGIN * smallest:
            held.add(day)
            state = states.get(day.isoformat()) or {}
            if record and not (state.get("status") == "failed" and state.get("memory_mb") == cap):
                _record_failed(services, day, reason, cap, rows)
    return held


def _marked(states: Mapping[str, Mapping[str, Any]]) -> list[date]:
    return [date.fromisoformat(k) for k, s in states.items() if s.get(NEED)]


def _raise_warnings(work: _Transform, plan: TransformPlan) -> None:
    """Warnings of every checked day, but of the days rebuilt only for a change of rules: their
    input did not change, so their warnings were raised when they were first checked."""
    for day, gate in plan.gates.items():
        if day in plan.rules_only:
            continue
        for warning in gate.warnings:
            raise_alert(
                work.services.bus,
                Alert(
                    "warning",
                    "quality-gate",
                    "quality_warning",
                    warning,
                    work.request.run_id,
                    day.isoformat(),
                ),
            )


def _run_of(day: date, pending: dict[date, PendingDay], request: TransformRequest) -> str:
    """The run whose input asked for the day's rebuild: the lineage its rows carry."""
    mark = pending.get(day)
    return mark.run_id if mark is not None and mark.need == BUILD and mark.run_id else request.run_id


def _work_left(work: _Transform) -> bool:
    """Anything pending that this transform has not acted on yet: marked while it held the lease."""
    services = work.services
    day_entries = services.ledger.query(names.DAYS)
    states = {e.key: e.data for e in day_entries}
    held = _held_back(services, states, _memory_cap(services), record=False)
    return not _untried(work, day_entries, held).empty


def _continue_later(services: Services, request: TransformRequest) -> None:
    """Hand what is still pending to a new transform message: this one has used its time."""
    body = {"kind": "pending", "date": request.day.isoformat(), "run_id": request.run_id}
    message_id = f"transform-pending-{uuid.uuid4().hex}"
    services.bus.send(names.TRANSFORM_QUEUE, [OutgoingMessage(body=body, message_id=message_id)])
    log.info(
        "transform %s: more pending after %.0f s; continued in %s", request.run_id, WORK_BUDGET_S, message_id
    )
