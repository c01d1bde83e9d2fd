"""Fan-in and transform: from "an input changed" to rebuilt analytics days.

A message names one staged input (a usage day or a CRM snapshot). The ledger says which days
that input can affect and which of them have everything they need; the quality gate decides
which may be built; the warehouse rebuilds them from staging with one set-based MERGE.
Because every build recomputes from what is staged at that moment, duplicates, reordering and
replays of these messages cannot change the outcome: the table converges.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import date, timedelta
from typing import Any

from shared import names
from shared.alerts import Alert, raise_alert
from shared.bootstrap import Services
from shared.ports import BuildParams, ConcurrencyConflict
from shared.quality import BASELINE_DAYS, check_day

log = logging.getLogger(__name__)
ROLLING_DAYS = 7


class BadTransformMessage(ValueError):
    """The message cannot be understood; retrying will not help."""


@dataclass(frozen=True)
class TransformRequest:
    kind: str  # usage, crm or day
    day: date
    run_id: str
    force: bool = False

    @classmethod
    def from_json(cls, body: Any) -> TransformRequest:
        if not isinstance(body, dict) or body.get("kind") not in ("usage", "crm", "day"):
            raise BadTransformMessage(f"not a transform request: {str(body)[:200]}")
        try:
            day = date.fromisoformat(str(body.get("date")))
        except ValueError:
            raise BadTransformMessage(f"transform request with a bad date {body.get('date')!r}") from None
        return cls(body["kind"], day, str(body.get("run_id") or "manual"), bool(body.get("force")))


@dataclass
class TransformOutcome:
    built: list[str] = field(default_factory=list)
    waiting: list[str] = field(default_factory=list)
    blocked: list[str] = field(default_factory=list)
    rows_changed: int = 0


def affected_days(request: TransformRequest, snapshot_dates: list[date], max_age: int) -> list[date]:
    """Days whose rows may change when the named input changes."""
    if request.kind == "usage":
        # D..D+6 hold D in their rolling window; D+7 only in its quality-gate baseline.
        return [request.day + timedelta(days=n) for n in range(max(ROLLING_DAYS, BASELINE_DAYS + 1))]
    if request.kind == "crm":
        later = [s for s in snapshot_dates if s > request.day]
        last = request.day + timedelta(days=max_age)
        if later:
            last = min(last, later[0] - timedelta(days=1))
        return [request.day + timedelta(days=n) for n in range((last - request.day).days + 1)]
    return [request.day]


def effective_snapshot(day: date, snapshot_dates: list[date], max_age: int) -> date | None:
    candidates = [s for s in snapshot_dates if s <= day and (day - s).days <= max_age]
    return max(candidates) if candidates else None


def run_transform(services: Services, request: TransformRequest) -> TransformOutcome:
    settings = services.settings
    usage = {e.key: e.data for e in services.ledger.query(names.USAGE)}
    snapshots = sorted(date.fromisoformat(e.key) for e in services.ledger.query(names.CRM))
    outcome = TransformOutcome()

    to_build: list[date] = []
    gates: dict[date, Any] = {}
    for day in affected_days(request, snapshots, settings.crm_max_snapshot_age_days):
        key = day.isoformat()
        if key not in usage:
            continue  # nothing staged for that day yet: its own usage will trigger it
        snapshot = effective_snapshot(day, snapshots, settings.crm_max_snapshot_age_days)
        if snapshot is None:
            outcome.waiting.append(key)
            _set_day(
                services,
                key,
                {
                    "status": "waiting",
                    "reason": f"no CRM snapshot within {settings.crm_max_snapshot_age_days} days",
                    "run_id": request.run_id,
                },
            )
            continue
        gate = check_day(day, usage)
        gates[day] = gate
        for warning in gate.warnings:
            raise_alert(
                services.bus,
                Alert("warning", "quality-gate", "quality_warning", warning, request.run_id, key),
            )
        if not gate.passed:
            outcome.blocked.append(key)
            message = f"{key} not built: " + "; ".join(gate.errors)
            raise_alert(
                services.bus,
                Alert(
                    "error",
                    "quality-gate",
                    "quality_error",
                    message,
                    request.run_id,
                    key,
                    detail="replay the day with force to override",
                ),
            )
            _set_day(
                services,
                key,
                {
                    "status": "gate_failed",
                    "errors": json.dumps(gate.errors),
                    "warnings": json.dumps(gate.warnings),
                    "run_id": request.run_id,
                },
            )
            continue
        to_build.append(day)

    result = services.warehouse.build_days(
        to_build,
        BuildParams(
            run_id=request.run_id,
            churn_min_rolling_users=settings.churn_min_rolling_users,
            churn_max_contact_age_days=settings.churn_max_contact_age_days,
            crm_max_snapshot_age_days=settings.crm_max_snapshot_age_days,
        ),
    )
    built_at = services.clock().isoformat()
    for built in result.days:
        key = built.activity_date.isoformat()
        gate = gates[built.activity_date]
        outcome.built.append(key)
        notes = gate.warnings + (
            [f"errors overridden by a forced replay: {'; '.join(gate.errors)}"] if gate.overridden else []
        )
        _set_day(
            services,
            key,
            {
                "status": "built",
                "snapshot_date": built.snapshot_date.isoformat(),
                "rows": built.rows,
                "inserted": built.inserted,
                "updated": built.updated,
                "deleted": built.deleted,
                "warnings": json.dumps(notes),
                "errors": "[]",
                "run_id": request.run_id,
                "built_at": built_at,
            },
        )
    outcome.rows_changed = result.changed
    log.info(
        "transform %s %s (run %s): built %s, waiting %s, blocked %s, %d rows changed",
        request.kind,
        request.day,
        request.run_id,
        outcome.built or "-",
        outcome.waiting or "-",
        outcome.blocked or "-",
        outcome.rows_changed,
    )
    return outcome


def _set_day(services: Services, key: str, data: Mapping[str, Any]) -> None:
    """Record a day's build state; keep what a racing transform wrote only if it is newer."""
    for _ in range(10):
        current = services.ledger.get(names.DAYS, key)
        merged = {**(current.data if current else {}), **data, "updated_at": services.clock().isoformat()}
        try:
            services.ledger.put(names.DAYS, key, merged, etag=current.etag if current else "")
            return
        except ConcurrencyConflict:
            continue
    log.warning("day %s: ledger kept changing; state not recorded this time", key)
