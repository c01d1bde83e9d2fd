"""The transform's decisions, pure: which days a changed input marks for the transform (a rebuild,
or a quality-gate re-check), and, for the days pending, which wait for a snapshot, which the gate
blocks, which are built and which stand as they are. The services carry them out."""

from __future__ import annotations

from collections.abc import Collection, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import date
from typing import Any, Literal, get_args

from shared.domain.days import (
    days_affected_by_snapshot,
    days_rebuilt_by_usage,
    days_rechecked_by_usage,
    effective_snapshot,
    parse_day,
    too_early,
)
from shared.domain.errors import PermanentError
from shared.domain.quality import Coverage, GateResult, check_day

# What a transform message says changed: a usage day, a CRM snapshot, one day to rebuild by
# hand, or "pending": the rest of the pending days, left by a transform that ran out of time.
InputKind = Literal["usage", "crm", "day", "pending"]
INPUT_KINDS: tuple[str, ...] = get_args(InputKind)

# What a pending day needs: its rows rebuilt, or only its quality gate checked again (its rows
# cannot change). A rebuild includes the check.
Need = Literal["build", "gate"]
BUILD: Need = "build"
GATE: Need = "gate"


class BadTransformMessage(PermanentError, ValueError):
    """The message cannot be understood; retrying will not help."""

    kind = "bad_transform_request"


@dataclass(frozen=True)
class TransformRequest:
    kind: InputKind
    day: date
    run_id: str
    force: bool = False

    @classmethod
    def from_json(cls, body: Any) -> TransformRequest:
        if not isinstance(body, dict) or body.get("kind") not in INPUT_KINDS:
            raise BadTransformMessage(f"not a transform request: {str(body)[:200]}")
        try:
            day = parse_day(body.get("date"))
        except ValueError:
            raise BadTransformMessage(f"transform request with a bad date {body.get('date')!r}") from None
        if problem := too_early(day):
            raise BadTransformMessage(f"transform request: {problem}")
        return cls(body["kind"], day, str(body.get("run_id") or "manual"), bool(body.get("force")))


def merge_needs(*needs: Need | None) -> Need:
    """A rebuild covers a re-check: "build" wins."""
    return BUILD if BUILD in needs else GATE


def days_to_mark(
    kind: InputKind,
    day: date,
    snapshot_dates: Iterable[date],
    max_age: int,
    staged_usage: Collection[str],
) -> dict[date, Need]:
    """The days a changed input asks the transform to look at, among the days with usage staged
    (a day without usage has nothing to build; its own usage marks it when it arrives).

    A usage day D: D..D+6 are rebuilt (their rolling window holds D), D+7 is re-checked (its
    gate baseline holds D). A snapshot: every day it is now the effective snapshot of."""
    marks: dict[date, Need]
    if kind == "usage":
        marks = {d: GATE for d in days_rechecked_by_usage(day)}
        marks.update({d: BUILD for d in days_rebuilt_by_usage(day)})
    elif kind == "crm":
        marks = {d: BUILD for d in days_affected_by_snapshot(day, snapshot_dates, max_age)}
    else:
        marks = {day: BUILD}
    return {d: need for d, need in marks.items() if d.isoformat() in staged_usage}


@dataclass(frozen=True)
class TransformPlan:
    waiting: list[date] = field(default_factory=list)  # usage staged, no effective snapshot yet
    blocked: list[date] = field(default_factory=list)  # the quality gate said no
    to_build: list[date] = field(default_factory=list)
    standing: list[date] = field(default_factory=list)  # re-checked, passed, rows stand as built
    skipped: list[date] = field(default_factory=list)  # no usage staged: nothing to build
    deferred: list[date] = field(default_factory=list)  # past this round's limit: the next round
    gates: dict[date, GateResult] = field(default_factory=dict)  # every checked day's gate
    # Days planned only because they were decided under other rules: their input did not
    # change, so their gate's warnings were raised when they were first built.
    rules_only: set[date] = field(default_factory=set)


def days_to_plan(pending: Iterable[date], stale: Iterable[date], limit: int | None) -> list[date]:
    """The days one round plans: the first `limit` of the pending and stale days, in date order.
    A waiting day (no effective snapshot) is planned but not checked: its coverage, like the
    rest of its gate, is checked when a snapshot arrives and the day is built."""
    ordered = sorted({*pending, *stale})
    return ordered if limit is None else ordered[:limit]


def plan_transform(
    pending: Mapping[date, Need],
    usage: Mapping[str, Mapping[str, Any]],
    snapshot_dates: list[date],
    max_age: int,
    *,
    stale: Iterable[date] = (),
    built: Collection[date] = (),
    limit: int | None = None,
    coverage: Mapping[date, Coverage] | None = None,
) -> TransformPlan:
    """`pending` is what the marks ask for each day; `usage` the ledger's staged-usage entries by
    ISO date; `stale` the days decided under other rules (rebuilt with the pending ones); `built`
    the days whose rows are built; `coverage` what each day's effective snapshot holds of its
    usage companies (a day without it is not checked for coverage). The first `limit` days are
    planned, in date order; the rest are deferred to the next round (`days_to_plan`)."""
    stale = set(stale)
    wanted = {d: BUILD for d in stale}
    for d, need in pending.items():
        wanted[d] = merge_needs(need, wanted.get(d))
    ordered = sorted(wanted)
    planned = days_to_plan(pending, stale, limit)
    plan = TransformPlan(rules_only=stale - set(pending), deferred=ordered[len(planned) :])
    for day in planned:
        if day.isoformat() not in usage:
            plan.skipped.append(day)
            continue
        if effective_snapshot(day, snapshot_dates, max_age) is None:
            plan.waiting.append(day)
            continue
        gate = check_day(day, usage, (coverage or {}).get(day))
        plan.gates[day] = gate
        if not gate.passed:
            plan.blocked.append(day)
        elif wanted[day] == GATE and day in built:
            plan.standing.append(day)
        else:
            plan.to_build.append(day)
    return plan
