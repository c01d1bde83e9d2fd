"""The transform's decisions, pure: which days a change marks, and the plan for the pending days."""

from __future__ import annotations

from datetime import date, timedelta
from typing import Any

import pytest

from shared.domain.transform_plan import (
    BUILD,
    GATE,
    BadTransformMessage,
    TransformRequest,
    days_to_mark,
    merge_needs,
    plan_transform,
)
from tests.support import day


def usage(*days: str, staged: int = 100) -> dict[str, dict[str, Any]]:
    return {d: {"staged": staged, "quarantined": 0} for d in days}


def span(first: str, n: int) -> list[str]:
    return [(day(first) + timedelta(days=k)).isoformat() for k in range(n)]


def test_a_usage_change_marks_its_window_for_a_rebuild_and_the_day_after_for_a_gate_check() -> None:
    staged = span("2026-10-01", 10)
    marks = days_to_mark("usage", day("2026-10-01"), [], 7, staged)
    assert marks == {**{day(d): BUILD for d in span("2026-10-01", 7)}, day("2026-10-08"): GATE}


def test_only_days_with_usage_staged_are_marked() -> None:
    marks = days_to_mark("usage", day("2026-10-01"), [], 7, ["2026-10-01", "2026-10-03", "2026-10-12"])
    assert marks == {day("2026-10-01"): BUILD, day("2026-10-03"): BUILD}
    assert days_to_mark("day", day("2026-10-05"), [], 7, ["2026-10-01"]) == {}


def test_a_snapshot_marks_the_days_it_is_effective_for() -> None:
    snapshots = [day("2026-10-01"), day("2026-10-04")]
    marks = days_to_mark("crm", day("2026-10-01"), snapshots, 7, span("2026-09-28", 20))
    assert marks == {day(d): BUILD for d in span("2026-10-01", 3)}


def test_a_rebuild_covers_a_gate_check() -> None:
    assert (
        merge_needs(GATE, BUILD) == BUILD and merge_needs(GATE, None) == GATE and merge_needs(BUILD) == BUILD
    )


def test_pending_days_with_a_snapshot_are_built_and_the_others_wait() -> None:
    staged = usage("2026-10-01", "2026-10-02", "2026-10-03")
    pending = {day("2026-10-01"): BUILD, day("2026-10-02"): BUILD, day("2026-10-03"): BUILD}
    plan = plan_transform(pending, staged, [day("2026-10-02")], 7)
    assert plan.waiting == [day("2026-10-01")]
    assert plan.to_build == [day("2026-10-02"), day("2026-10-03")]
    assert set(plan.gates) == set(plan.to_build)


def test_a_day_without_usage_is_skipped() -> None:
    plan = plan_transform({day("2026-10-05"): BUILD}, usage("2026-10-01"), [day("2026-10-01")], 7)
    assert plan.skipped == [day("2026-10-05")] and plan.to_build == []


def test_the_gate_blocks_a_day_and_force_lets_it_through() -> None:
    staged = usage("2026-10-01", staged=0)
    blocked = plan_transform({day("2026-10-01"): BUILD}, staged, [day("2026-10-01")], 7)
    assert blocked.blocked == [day("2026-10-01")] and blocked.to_build == []
    assert "zero usage records" in blocked.gates[day("2026-10-01")].errors[0]
    staged["2026-10-01"]["force"] = True
    forced = plan_transform({day("2026-10-01"): BUILD}, staged, [day("2026-10-01")], 7)
    assert forced.to_build == [day("2026-10-01")] and forced.gates[day("2026-10-01")].overridden


def test_a_gate_check_of_a_built_day_leaves_its_rows_standing() -> None:
    staged = usage(*span("2026-10-01", 8))
    plan = plan_transform(
        {day("2026-10-08"): GATE}, staged, [day("2026-10-01")], 7, built=[day("2026-10-08")]
    )
    assert plan.standing == [day("2026-10-08")] and plan.to_build == []
    assert day("2026-10-08") in plan.gates


def test_a_gate_check_of_a_day_not_built_yet_builds_it() -> None:
    staged = usage(*span("2026-10-01", 8))
    plan = plan_transform({day("2026-10-08"): GATE}, staged, [day("2026-10-01")], 7, built=[])
    assert plan.to_build == [day("2026-10-08")]


def test_a_gate_check_can_block_a_built_day() -> None:
    staged = usage(*span("2026-10-01", 7), staged=1000)
    staged["2026-10-08"] = {"staged": 100, "quarantined": 0}  # down 90% against the days before
    plan = plan_transform(
        {day("2026-10-08"): GATE}, staged, [day("2026-10-01")], 7, built=[day("2026-10-08")]
    )
    assert plan.blocked == [day("2026-10-08")] and plan.standing == []


def test_days_under_other_rules_are_rebuilt_with_the_pending_ones() -> None:
    staged = usage("2026-10-01", "2026-10-02")
    plan = plan_transform(
        {day("2026-10-02"): GATE},
        staged,
        [day("2026-10-01")],
        7,
        stale=[day("2026-10-01")],
        built=[day("2026-10-01"), day("2026-10-02")],
    )
    assert plan.to_build == [day("2026-10-01")] and plan.standing == [day("2026-10-02")]
    assert plan.rules_only == {day("2026-10-01")}


def test_a_round_plans_at_most_its_limit_and_defers_the_rest_in_date_order() -> None:
    days = span("2026-10-01", 10)
    plan = plan_transform({day(d): BUILD for d in days}, usage(*days), [day("2026-10-01")], 9, limit=4)
    assert plan.to_build == [day(d) for d in days[:4]]
    assert plan.deferred == [day(d) for d in days[4:]]


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
    assert TransformRequest.from_json({"kind": "pending", "date": "2026-10-01"}).kind == "pending"
