"""Coalesced builds: however many inputs change while a transform waits, each day is built once,
a gate-only day is re-checked and not rebuilt, and nothing marked is ever left behind (the build
lease, rounds, a transform that runs out of time)."""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator
from datetime import date, timedelta
from typing import Any

import pytest

from shared.domain import names
from shared.domain.transform_plan import TransformRequest
from shared.local.pipeline import LocalPipeline
from shared.ports import BuildParams, BuildResult, Services
from shared.services import build_lease, transform
from shared.services.pending import mark_days, pending_days, settle_day
from shared.services.transform import run_transform
from tests.reference import diff_tables, load_expected_csv
from tests.support import GOLDEN

GOLDEN_DAYS = [f"2026-10-{n:02d}" for n in range(1, 11)]


@pytest.fixture
def builds(pipeline: LocalPipeline, monkeypatch: pytest.MonkeyPatch) -> Iterator[list[list[str]]]:
    """Every build_days call of the pipeline's warehouse: the days it was asked to build."""
    calls: list[list[str]] = []
    real = pipeline.services.warehouse.build_days

    def counting(days: list[date], params: BuildParams) -> BuildResult:
        calls.append(sorted(d.isoformat() for d in days))
        return real(days, params)

    monkeypatch.setattr(pipeline.services.warehouse, "build_days", counting)
    yield calls


def table(pipe: LocalPipeline) -> list[dict[str, Any]]:
    return list(pipe.services.warehouse.fetch_rows("company_daily_activity"))


def drop_golden_snapshots(pipe: LocalPipeline) -> None:
    for path in GOLDEN.crm_files():
        pipe.drop_crm(path.read_bytes(), path.name)


def pending(services: Services) -> dict[str, str]:
    return {d.isoformat(): p.need for d, p in pending_days(services.ledger.query(names.DAYS)).items()}


def test_a_backfill_builds_each_day_once(pipeline: LocalPipeline, builds: list[list[str]]) -> None:
    drop_golden_snapshots(pipeline)
    report = pipeline.replay({"from": GOLDEN_DAYS[0], "to": GOLDEN_DAYS[-1]})

    per_day = Counter(d for call in builds for d in call)
    assert per_day == Counter(GOLDEN_DAYS)  # ten transform messages, ten day-builds
    assert report.handled[names.TRANSFORM_QUEUE] >= len(GOLDEN_DAYS)
    assert diff_tables(table(pipeline), load_expected_csv(GOLDEN.expected_csv)) == []
    assert pending(pipeline.services) == {}


def test_a_usage_change_rebuilds_its_window_and_only_rechecks_the_day_after(
    pipeline: LocalPipeline, builds: list[list[str]], api_records: dict[str, list[dict[str, Any]]]
) -> None:
    drop_golden_snapshots(pipeline)
    pipeline.replay({"from": GOLDEN_DAYS[0], "to": GOLDEN_DAYS[-1]})
    builds.clear()
    api_records["2026-10-01"] = [dict(r, events=r["events"] + 1) for r in api_records["2026-10-01"]]

    pipeline.replay({"date": "2026-10-01", "force": True})

    assert builds == [GOLDEN_DAYS[:7]]  # D..D+6; D+7 (2026-10-08) re-checked, not rebuilt
    day8 = pipeline.services.ledger.get(names.DAYS, "2026-10-08")
    assert day8 is not None and day8.data["status"] == "built" and not day8.data["pending"]


def test_a_rerun_without_force_marks_nothing_and_builds_nothing(
    pipeline: LocalPipeline, builds: list[list[str]]
) -> None:
    drop_golden_snapshots(pipeline)
    pipeline.replay({"from": GOLDEN_DAYS[0], "to": GOLDEN_DAYS[2]})
    builds.clear()
    pipeline.replay({"from": GOLDEN_DAYS[0], "to": GOLDEN_DAYS[2]})
    assert builds == [] and pending(pipeline.services) == {}


def test_a_transform_with_nothing_pending_is_a_no_op(
    pipeline: LocalPipeline, builds: list[list[str]]
) -> None:
    outcome = run_transform(
        pipeline.services, TransformRequest.from_json({"kind": "usage", "date": "2026-10-01"})
    )
    assert builds == [] and outcome.built == [] and outcome.rows_changed == 0


def test_a_long_backfill_is_built_in_rounds_each_day_once(
    pipeline: LocalPipeline, builds: list[list[str]], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(transform, "MAX_DAYS_PER_BUILD", 3)
    drop_golden_snapshots(pipeline)
    pipeline.replay({"from": GOLDEN_DAYS[0], "to": GOLDEN_DAYS[-1]})
    assert [len(call) for call in builds] == [3, 3, 3, 1]
    assert sorted(d for call in builds for d in call) == GOLDEN_DAYS
    assert diff_tables(table(pipeline), load_expected_csv(GOLDEN.expected_csv)) == []


def test_a_transform_out_of_time_hands_the_rest_to_a_new_message(
    pipeline: LocalPipeline, builds: list[list[str]], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(transform, "MAX_DAYS_PER_BUILD", 4)
    monkeypatch.setattr(transform, "WORK_BUDGET_S", -1.0)  # every round is over budget
    drop_golden_snapshots(pipeline)
    sent: list[dict[str, Any]] = []
    real_send = pipeline.services.bus.send

    def spy(queue: str, messages: Any) -> None:
        messages = list(messages)
        sent.extend(m.body for m in messages if queue == names.TRANSFORM_QUEUE)
        real_send(queue, messages)

    monkeypatch.setattr(pipeline.services.bus, "send", spy)
    pipeline.replay({"from": GOLDEN_DAYS[0], "to": GOLDEN_DAYS[-1]})

    assert any(body["kind"] == "pending" for body in sent)
    assert sorted(d for call in builds for d in call) == GOLDEN_DAYS
    assert pending(pipeline.services) == {}
    assert diff_tables(table(pipeline), load_expected_csv(GOLDEN.expected_csv)) == []


def test_a_transform_finding_the_lease_taken_leaves_the_work_to_the_holder(pipeline: LocalPipeline) -> None:
    drop_golden_snapshots(pipeline)
    pipeline.replay({"date": "2026-10-01"})
    services = pipeline.services
    assert build_lease.acquire(services, "someone-else")
    mark_days(services, {date(2026, 10, 1): "build"}, "manual")

    outcome = run_transform(services, TransformRequest.from_json({"kind": "day", "date": "2026-10-02"}))
    assert outcome.deferred and outcome.built == []
    assert pending(services) == {"2026-10-01": "build"}

    # The holder's redelivery (the same holder id) takes its own lease over and builds it all.
    again = run_transform(
        services, TransformRequest.from_json({"kind": "usage", "date": "2026-10-01"}), "someone-else"
    )
    assert again.built == ["2026-10-01"] and pending(services) == {}
    assert build_lease.holder_of(services) == ""


def test_an_expired_lease_is_taken_over(pipeline: LocalPipeline) -> None:
    drop_golden_snapshots(pipeline)
    pipeline.replay({"date": "2026-10-01"})
    services = pipeline.services
    assert build_lease.acquire(services, "dead")
    mark_days(services, {date(2026, 10, 1): "build"}, "manual")
    real_clock = services.clock
    services.clock = lambda: real_clock() + timedelta(seconds=build_lease.LEASE_S + 1)
    try:
        assert run_transform(
            services, TransformRequest.from_json({"kind": "usage", "date": "2026-10-01"})
        ).built
    finally:
        services.clock = real_clock


def test_a_transform_that_lost_the_lease_mid_build_builds_no_further_day(
    pipeline: LocalPipeline, builds: list[list[str]], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(transform, "MAX_DAYS_PER_BUILD", 1)
    drop_golden_snapshots(pipeline)
    pipeline.replay({"from": "2026-10-01", "to": "2026-10-02"})
    builds.clear()
    services = pipeline.services
    counting = services.warehouse.build_days
    real_clock = services.clock

    def lease_taken_over_meanwhile(days: list[date], params: BuildParams) -> BuildResult:
        if len(builds) == 0:  # the round outlasts the lease: another instance takes it over
            services.clock = lambda: real_clock() + timedelta(seconds=build_lease.LEASE_S + 1)
            assert build_lease.acquire(services, "next-holder")
            services.clock = real_clock
        return counting(days, params)

    monkeypatch.setattr(services.warehouse, "build_days", lease_taken_over_meanwhile)
    mark_days(services, {date(2026, 10, 1): "build", date(2026, 10, 2): "build"}, "manual")
    outcome = run_transform(services, TransformRequest.from_json({"kind": "usage", "date": "2026-10-01"}))

    assert builds == [["2026-10-01"]] and outcome.built == ["2026-10-01"] and outcome.deferred
    assert pending(services) == {"2026-10-02": "build"}  # the next holder's to build
    assert build_lease.holder_of(services) == "next-holder"


def test_a_day_marked_while_the_holder_builds_is_built_before_it_lets_go(
    pipeline: LocalPipeline, builds: list[list[str]], monkeypatch: pytest.MonkeyPatch
) -> None:
    drop_golden_snapshots(pipeline)
    pipeline.replay({"from": "2026-10-01", "to": "2026-10-02"})
    builds.clear()
    services = pipeline.services
    counting = services.warehouse.build_days

    def marking_meanwhile(days: list[date], params: BuildParams) -> BuildResult:
        if len(builds) == 0:  # a loader marks 2026-10-02 while the first build runs
            mark_days(services, {date(2026, 10, 2): "build"}, "late-run")
        return counting(days, params)

    monkeypatch.setattr(services.warehouse, "build_days", marking_meanwhile)
    mark_days(services, {date(2026, 10, 1): "build"}, "first-run")
    outcome = run_transform(services, TransformRequest.from_json({"kind": "usage", "date": "2026-10-01"}))

    assert builds == [["2026-10-01"], ["2026-10-02"]]
    assert outcome.built == ["2026-10-01", "2026-10-02"] and pending(services) == {}


def test_a_mark_made_after_the_transform_read_it_is_not_cleared(pipeline: LocalPipeline) -> None:
    services = pipeline.services
    mark_days(services, {date(2026, 10, 1): "gate"}, "run-a")
    [seen] = pending_days(services.ledger.query(names.DAYS)).values()
    mark_days(services, {date(2026, 10, 1): "build"}, "run-b")  # meanwhile
    settle_day(services, date(2026, 10, 1), seen, {"status": "built"})
    entry = services.ledger.get(names.DAYS, "2026-10-01")
    assert entry is not None and (entry.data["pending"], entry.data["pending_run_id"]) == ("build", "run-b")
    assert entry.data["status"] == "built"


def test_the_rows_carry_the_run_of_the_input_that_changed_them(pipeline: LocalPipeline) -> None:
    drop_golden_snapshots(pipeline)
    pipeline.replay({"from": GOLDEN_DAYS[0], "to": GOLDEN_DAYS[1]})
    fetches = {d: pipeline.services.ledger.get(names.FETCH, d) for d in GOLDEN_DAYS[:2]}
    runs = {row["activity_date"].isoformat(): row["pipeline_run_id"] for row in table(pipeline)}
    assert runs == {d: fetches[d].data["run_id"] for d in GOLDEN_DAYS[:2]}  # type: ignore[union-attr]


def test_a_loader_that_died_before_marking_marks_on_redelivery(
    pipeline: LocalPipeline, builds: list[list[str]], monkeypatch: pytest.MonkeyPatch
) -> None:
    from shared.services import staging

    drop_golden_snapshots(pipeline)
    real_mark = staging.mark_days
    calls = {"n": 0}

    def dies_once(*args: Any, **kwargs: Any) -> None:
        calls["n"] += 1
        if calls["n"] == 1:
            raise OSError("killed between the ledger record and the marks")
        real_mark(*args, **kwargs)

    monkeypatch.setattr(staging, "mark_days", dies_once)
    report = pipeline.replay({"date": "2026-10-01"})
    assert report.failures and "killed" in report.failures[0]  # redelivered, then marked
    assert [call for call in builds if "2026-10-01" in call]
    day1 = pipeline.services.ledger.get(names.DAYS, "2026-10-01")
    assert day1 is not None and day1.data["status"] == "built"
