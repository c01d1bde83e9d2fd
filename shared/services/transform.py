"""Fan-in and transform: from "an input changed" to rebuilt analytics days.

A message names one staged input (a usage day or a CRM snapshot). The ledger says which
inputs are staged; `plan_transform` (domain) decides which affected days wait, which the
quality gate blocks and which are built; this service raises the alerts, records each day's
state and has the warehouse rebuild the days from staging with one set-based MERGE. Each day
records the rules it was decided under; days decided under other rules are planned again with
the next build, so a change of CHURN_* or CRM_MAX_SNAPSHOT_AGE_DAYS never leaves a mixed table.
Because
every build recomputes from what is staged at that moment, duplicates, reordering and replays
of these messages cannot change the outcome: the table converges.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import date
from typing import Any, Literal

from shared.domain import names
from shared.domain.alerts import Alert
from shared.domain.days import ROLLING_DAYS
from shared.domain.rules import Rules, stale_days
from shared.domain.transform_plan import TransformPlan, TransformRequest, plan_transform
from shared.ports import BuildParams, BuildResult, Services
from shared.services.alerts import raise_alert
from shared.services.ledger import update_entry

log = logging.getLogger(__name__)

# A day's build state in the ledger's `days` partition.
DayStatus = Literal["waiting", "gate_failed", "built"]


@dataclass
class TransformOutcome:
    built: list[str] = field(default_factory=list)
    waiting: list[str] = field(default_factory=list)
    blocked: list[str] = field(default_factory=list)
    rows_changed: int = 0


def run_transform(services: Services, request: TransformRequest) -> TransformOutcome:
    rules = services.settings.rules()
    usage = {e.key: e.data for e in services.ledger.query(names.USAGE)}
    snapshots = sorted(date.fromisoformat(e.key) for e in services.ledger.query(names.CRM))
    stale = stale_days({e.key: e.data for e in services.ledger.query(names.DAYS)}, rules)
    plan = plan_transform(request, usage, snapshots, rules.crm_max_snapshot_age_days, stale)
    if plan.rules_only:
        log.warning(
            "%d days were decided under other rules; rebuilding them under %s",
            len(plan.rules_only),
            rules.short(),
        )

    _record_waiting(services, request, plan, rules)
    _record_gates(services, request, plan, rules)
    # Waiting days go to the warehouse too: one that lost its snapshot (a lower snapshot age
    # limit) must lose the rows it was built with.
    result = services.warehouse.build_days(
        plan.to_build + plan.waiting,
        BuildParams(
            run_id=request.run_id,
            churn_min_rolling_users=rules.churn_min_rolling_users,
            churn_max_contact_age_days=rules.churn_max_contact_age_days,
            crm_max_snapshot_age_days=rules.crm_max_snapshot_age_days,
            rolling_days=ROLLING_DAYS,
        ),
    )
    _record_built(services, request, plan, result, rules)

    outcome = TransformOutcome(
        built=[d.activity_date.isoformat() for d in result.days],
        waiting=[d.isoformat() for d in plan.waiting],
        blocked=[d.isoformat() for d in plan.blocked],
        rows_changed=result.changed,
    )
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


def _record_waiting(services: Services, request: TransformRequest, plan: TransformPlan, rules: Rules) -> None:
    for day in plan.waiting:
        _set_day(
            services,
            day,
            "waiting",
            {
                "reason": f"no CRM snapshot within {rules.crm_max_snapshot_age_days} days",
                "run_id": request.run_id,
                "rules": rules.encode(),
            },
        )


def _record_gates(services: Services, request: TransformRequest, plan: TransformPlan, rules: Rules) -> None:
    """Warnings of every checked day, and the errors of the days the gate blocked."""
    for day, gate in plan.gates.items():
        if day in plan.rules_only:
            continue  # raised when the day was first checked; its input has not changed
        key = day.isoformat()
        for warning in gate.warnings:
            raise_alert(
                services.bus,
                Alert("warning", "quality-gate", "quality_warning", warning, request.run_id, key),
            )
    for day in plan.blocked:
        gate, key = plan.gates[day], day.isoformat()
        raise_alert(
            services.bus,
            Alert(
                "error",
                "quality-gate",
                "quality_error",
                f"{key} not built: " + "; ".join(gate.errors),
                request.run_id,
                key,
                detail="replay the day with force to override",
            ),
        )
        _set_day(
            services,
            day,
            "gate_failed",
            {
                "errors": json.dumps(gate.errors),
                "warnings": json.dumps(gate.warnings),
                "run_id": request.run_id,
                "rules": rules.encode(),
            },
        )


def _record_built(
    services: Services, request: TransformRequest, plan: TransformPlan, result: BuildResult, rules: Rules
) -> None:
    built_at = services.clock().isoformat()
    for built in result.days:
        gate = plan.gates[built.activity_date]
        notes = gate.warnings + (
            [f"errors overridden by a forced replay: {'; '.join(gate.errors)}"] if gate.overridden else []
        )
        _set_day(
            services,
            built.activity_date,
            "built",
            {
                "snapshot_date": built.snapshot_date.isoformat(),
                "rows": built.rows,
                "inserted": built.inserted,
                "updated": built.updated,
                "deleted": built.deleted,
                "warnings": json.dumps(notes),
                "errors": "[]",
                "run_id": request.run_id,
                "built_at": built_at,
                "rules": rules.encode(),
            },
        )


def _set_day(services: Services, day: date, status: DayStatus, data: Mapping[str, Any]) -> None:
    """Record a day's build state over what the ledger holds for it."""
    new = {**data, "status": status, "updated_at": services.clock().isoformat()}
    update_entry(services.ledger, names.DAYS, day.isoformat(), lambda current: {**(current or {}), **new})
