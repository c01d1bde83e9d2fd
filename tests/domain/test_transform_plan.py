"""The transform's plan, pure: which affected days wait, which are blocked, which are built."""

from __future__ import annotations

from datetime import date, timedelta
from typing import Any

import pytest

from shared.domain.transform_plan import BadTransformMessage, TransformRequest, affected_days, plan_transform
from tests.conftest import day


def usage(*days: str, staged: int = 100, **overrides: dict[str, Any]) -> dict[str, dict[str, Any]]:
    entries = {d: {"staged": staged, "quarantined": 0} for d in days}
    for key, change in overrides.items():
        entries[key.replace("_", "-")].update(change)
    return entries


def request(kind: str, on: str, force: bool = False) -> TransformRequest:
    return TransformRequest.from_json({"kind": kind, "date": on, "run_id": "run-1", "force": force})


def test_a_usage_change_builds_the_staged_days_it_reaches_with_a_snapshot() -> None:
    staged = usage("2026-10-01", "2026-10-02", "2026-10-03", "2026-10-09")
    plan = plan_transform(request("usage", "2026-10-01"), staged, [day("2026-10-01")], 7)
    assert plan.to_build == [day("2026-10-01"), day("2026-10-02"), day("2026-10-03")]
    assert plan.waiting == [] and plan.blocked == []  # 2026-10-09 is past D+7; days without usage are skipped
    assert set(plan.gates) == set(plan.to_build)


def test_days_without_an_effective_snapshot_wait() -> None:
    staged = usage("2026-10-01", "2026-10-02")
    plan = plan_transform(request("usage", "2026-10-01"), staged, [day("2026-10-02")], 7)
    assert plan.waiting == [day("2026-10-01")] and plan.to_build == [day("2026-10-02")]


def test_the_gate_blocks_a_day_and_force_lets_it_through() -> None:
    staged = usage("2026-10-01")
    staged["2026-10-01"].update(staged=0)
    blocked = plan_transform(request("day", "2026-10-01"), staged, [day("2026-10-01")], 7)
    assert blocked.blocked == [day("2026-10-01")] and blocked.to_build == []
    assert "zero usage records" in blocked.gates[day("2026-10-01")].errors[0]
    staged["2026-10-01"]["force"] = True
    forced = plan_transform(request("day", "2026-10-01"), staged, [day("2026-10-01")], 7)
    assert forced.to_build == [day("2026-10-01")] and forced.gates[day("2026-10-01")].overridden


def test_a_snapshot_change_affects_the_days_it_is_effective_for() -> None:
    snapshots = [day("2026-10-01"), day("2026-10-04")]
    assert affected_days(request("crm", "2026-10-01"), snapshots, 7) == [
        day("2026-10-01") + timedelta(days=n) for n in range(3)
    ]
    assert affected_days(request("day", "2026-10-02"), snapshots, 7) == [day("2026-10-02")]


@pytest.mark.parametrize(
    "body", [None, [], {"kind": "nonsense", "date": "2026-10-01"}, {"kind": "usage", "date": "yesterday"}]
)
def test_a_message_that_is_not_a_transform_request_is_permanent(body: Any) -> None:
    with pytest.raises(BadTransformMessage) as error:
        TransformRequest.from_json(body)
    assert error.value.kind == "bad_transform_request"


def test_a_request_defaults_its_run_and_force() -> None:
    parsed = TransformRequest.from_json({"kind": "crm", "date": "2026-10-01"})
    assert parsed == TransformRequest("crm", date(2026, 10, 1), "manual", False)
