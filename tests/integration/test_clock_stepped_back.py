"""Versions that do not depend on the wall clock (issue 21, item 5): a forced re-fetch of a day
replaces what it re-fetches even when the clock was stepped back between the two fetches."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from shared.domain import names
from shared.local.pipeline import LocalPipeline
from tests.support import GOLDEN

DAY = "2026-10-01"


def events_on(pipe: LocalPipeline, day: str) -> int:
    rows = pipe.services.warehouse.fetch_rows("company_daily_activity")
    return sum(int(r["events"] or 0) for r in rows if str(r["activity_date"]) == day)


def test_a_forced_refetch_wins_with_the_clock_an_hour_behind(
    pipeline: LocalPipeline, api_records: dict[str, list[dict[str, Any]]]
) -> None:
    for path in GOLDEN.crm_files():
        pipeline.drop_crm(path.read_bytes(), path.name)
    pipeline.replay({"date": DAY})
    before = events_on(pipeline, DAY)
    assert before > 0

    api_records[DAY] = [dict(r, events=r["events"] + 1) for r in api_records[DAY]]
    behind = datetime.now(UTC) - timedelta(hours=1)
    pipeline.services.clock = lambda: behind  # faketime -1h
    pipeline.replay({"date": DAY, "force": True})

    assert events_on(pipeline, DAY) == before + len(api_records[DAY])
    usage = pipeline.services.ledger.get(names.USAGE, DAY)
    assert usage is not None and str(usage.data["version"]).startswith("g")


def test_each_new_fetch_run_of_a_day_is_one_generation_later(pipeline: LocalPipeline) -> None:
    pipeline.replay({"date": DAY})
    first = pipeline.services.ledger.get(names.FETCH, DAY)
    pipeline.replay({"date": DAY, "force": True})
    second = pipeline.services.ledger.get(names.FETCH, DAY)
    assert first is not None and second is not None
    assert (first.data["generation"], second.data["generation"]) == (1, 2)
