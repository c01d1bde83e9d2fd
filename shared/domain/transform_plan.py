"""The transform's decision, pure: for a changed input, which days wait, which the quality gate
blocks, and which are built. The service carries it out (ledger, alerts, warehouse)."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import date
from typing import Any, Literal, get_args

from shared.domain.days import (
    days_affected_by_snapshot,
    days_affected_by_usage,
    effective_snapshot,
    parse_day,
)
from shared.domain.errors import PermanentError
from shared.domain.quality import GateResult, check_day

InputKind = Literal["usage", "crm", "day"]
INPUT_KINDS: tuple[str, ...] = get_args(InputKind)


class BadTransformMessage(PermanentError, ValueError):
    """The message cannot be understood; retrying will not help."""

    kind = "bad_transform_request"


@dataclass(frozen=True)
class TransformRequest:
    kind: InputKind  # which staged input changed: a usage day, a CRM snapshot, or one day by hand
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
        return cls(body["kind"], day, str(body.get("run_id") or "manual"), bool(body.get("force")))


@dataclass(frozen=True)
class TransformPlan:
    waiting: list[date] = field(default_factory=list)  # usage staged, no effective snapshot yet
    blocked: list[date] = field(default_factory=list)  # the quality gate said no
    to_build: list[date] = field(default_factory=list)
    gates: dict[date, GateResult] = field(default_factory=dict)  # every blocked or built day's gate
    # Days planned again only because they were decided under other rules: their input did
    # not change, so their gate's warnings were raised when they were first built.
    rules_only: set[date] = field(default_factory=set)


def affected_days(request: TransformRequest, snapshot_dates: list[date], max_age: int) -> list[date]:
    """Days whose rows or gate may change when the named input changes."""
    if request.kind == "usage":
        return days_affected_by_usage(request.day)
    if request.kind == "crm":
        return days_affected_by_snapshot(request.day, snapshot_dates, max_age)
    return [request.day]


def plan_transform(
    request: TransformRequest,
    usage: Mapping[str, Mapping[str, Any]],
    snapshot_dates: list[date],
    max_age: int,
    stale: Iterable[date] = (),
) -> TransformPlan:
    """`usage` is the ledger's staged-usage entries by ISO date; `snapshot_dates` the staged
    snapshots; `stale` the days decided under other rules, planned again with the affected ones."""
    affected = affected_days(request, snapshot_dates, max_age)
    plan = TransformPlan(rules_only=set(stale) - set(affected))
    for day in sorted({*affected, *plan.rules_only}):
        if day.isoformat() not in usage:
            continue  # nothing staged for that day yet: its own usage will trigger it
        if effective_snapshot(day, snapshot_dates, max_age) is None:
            plan.waiting.append(day)
            continue
        gate = check_day(day, usage)
        plan.gates[day] = gate
        (plan.to_build if gate.passed else plan.blocked).append(day)
    return plan
