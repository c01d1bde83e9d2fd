"""Build rounds sized to the warehouse's memory (issue 24): a backfill of any length builds in
rounds its memory cap holds (rows, not only days), and a day that cannot fit fails once, with
one line naming LOCAL_WAREHOUSE_MEMORY_MB, never built again by a later wake-up under the same
cap."""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from shared.config import Settings
from shared.domain import names
from shared.local.pipeline import LocalPipeline
from shared.ports import BuildParams, BuildResult, Lineage, WarehouseOutOfMemory
from shared.services import transform
from shared.services.pending import pending_days
from shared.services.transform import MAX_DAYS_PER_BUILD, days_per_round
from tests.reference import diff_tables, load_expected_csv
from tests.support import GOLDEN

GOLDEN_DAYS = [f"2026-10-{n:02d}" for n in range(1, 11)]
CAP_MB = 64
OUT_OF_MEMORY = (
    f"the local warehouse needed more memory than LOCAL_WAREHOUSE_MEMORY_MB={CAP_MB} allows"
    " (Out of Memory Error: could not allocate block of size 256.0 KiB); set LOCAL_WAREHOUSE_MEMORY_MB higher"
)


@pytest.fixture
def small(local_env: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[LocalPipeline]:
    monkeypatch.setenv("LOCAL_WAREHOUSE_MEMORY_MB", str(CAP_MB))
    pipe = LocalPipeline(Settings.from_env())
    yield pipe
    pipe.close()


def counting(pipe: LocalPipeline, monkeypatch: pytest.MonkeyPatch, fail: Any = None) -> list[list[str]]:
    """Every build_days call: the days it was asked for. `fail(days)` true: it runs out of memory."""
    calls: list[list[str]] = []
    real = pipe.services.warehouse.build_days

    def build(days: list[date], params: BuildParams) -> BuildResult:
        calls.append(sorted(d.isoformat() for d in days))
        if fail is not None and fail(days):
            raise WarehouseOutOfMemory(OUT_OF_MEMORY)
        return real(days, params)

    monkeypatch.setattr(pipe.services.warehouse, "build_days", build)
    return calls


def drop_golden_snapshots(pipe: LocalPipeline) -> None:
    for path in GOLDEN.crm_files():
        pipe.drop_crm(path.read_bytes(), path.name)


def table(pipe: LocalPipeline) -> list[dict[str, Any]]:
    return list(pipe.services.warehouse.fetch_rows("company_daily_activity"))


def test_rounds_are_sized_to_rows_under_the_cap() -> None:
    assert days_per_round(1_000_000, 990_000, 256) == 1  # a million companies: one day a round
    assert 20 <= days_per_round(100_000, 99_000, 256) < MAX_DAYS_PER_BUILD
    assert days_per_round(20_000, 19_800, 256) == MAX_DAYS_PER_BUILD
    assert days_per_round(1_000_000, 990_000, 1024) > days_per_round(1_000_000, 990_000, 256)
    assert days_per_round(50_000_000, 0, 64) == 1  # never none
    assert days_per_round(1_000_000, 0, None) == MAX_DAYS_PER_BUILD  # Azure SQL: no cap of ours


def test_a_backfill_is_built_in_rounds_its_memory_holds(
    small: LocalPipeline, monkeypatch: pytest.MonkeyPatch
) -> None:
    """With rows per MB set so that the golden days fit two at a time, the backfill is built in
    rounds of at most two days, each day once, and the table is the golden one."""
    largest = max(len(GOLDEN.records().get(d, [])) for d in GOLDEN_DAYS)
    crm = max(sum(1 for _ in p.open()) for p in GOLDEN.crm_files())
    rows_two_days = 6 * largest + 2 * (largest + max(largest, crm))
    monkeypatch.setattr(transform, "BUILD_ROWS_PER_MB", -(-rows_two_days // CAP_MB))
    calls = counting(small, monkeypatch)
    drop_golden_snapshots(small)
    small.replay({"from": GOLDEN_DAYS[0], "to": GOLDEN_DAYS[-1]})

    assert calls and max(len(c) for c in calls) <= 2
    assert Counter(d for c in calls for d in c) == Counter(GOLDEN_DAYS)
    assert diff_tables(table(small), load_expected_csv(GOLDEN.expected_csv)) == []


def test_a_round_that_does_not_fit_is_built_one_day_a_round(
    small: LocalPipeline, monkeypatch: pytest.MonkeyPatch
) -> None:
    drop_golden_snapshots(small)
    calls = counting(small, monkeypatch, fail=lambda days: len(days) > 1)
    small.replay({"from": GOLDEN_DAYS[0], "to": GOLDEN_DAYS[-1]})

    assert diff_tables(table(small), load_expected_csv(GOLDEN.expected_csv)) == []
    assert all(len(c) == 1 for c in calls[calls.index(max(calls, key=len)) + 1 :])


def test_a_day_that_cannot_fit_fails_once_naming_the_setting(
    small: LocalPipeline, monkeypatch: pytest.MonkeyPatch, local_env: Path
) -> None:
    drop_golden_snapshots(small)
    calls = counting(small, monkeypatch, fail=lambda days: True)
    small.replay({"from": GOLDEN_DAYS[0], "to": GOLDEN_DAYS[-1]})

    # The first round did not fit, then its first day alone did not: that day failed once, and
    # no later transform message of the backfill built it, or a day about as large, again. A day
    # more than FIT_MARGIN smaller may fit: it is tried, once.
    singles = [c[0] for c in calls[1:]]
    assert len(calls[0]) > 1 and all(len(c) == 1 for c in calls[1:]), calls
    assert singles[0] == GOLDEN_DAYS[0] and len(set(singles)) == len(singles) < len(GOLDEN_DAYS)
    days = {e.key: e.data for e in small.services.ledger.query(names.DAYS)}
    failed = [d for d, s in days.items() if s.get("status") == "failed"]
    assert sorted(failed) == GOLDEN_DAYS  # every day, tried or held back, says why
    assert all("LOCAL_WAREHOUSE_MEMORY_MB=64" in days[d]["reason"] for d in failed)
    assert all("\n" not in days[d]["reason"] for d in failed)
    alerts = (local_env / "alerts.jsonl").read_text()
    assert alerts.count("warehouse_out_of_memory") == len(singles), alerts

    # The marks stand: with more memory, `rebuild` builds them.
    assert {d.isoformat() for d in pending_days(small.services.ledger.query(names.DAYS))} >= set(failed)
    monkeypatch.undo()
    small.services.warehouse.memory_mb = 1024  # type: ignore[attr-defined]
    small.rebuild("rebuild-more-memory")
    assert diff_tables(table(small), load_expected_csv(GOLDEN.expected_csv)) == []


def test_a_real_build_out_of_memory_names_the_setting_in_one_line(tmp_path: Path) -> None:
    """DuckDB itself: a build that passes its cap fails with WarehouseOutOfMemory, one line."""
    from shared.adapters.warehouse_duckdb import DuckDbWarehouse

    day0, n = date(2026, 10, 1), 20_000
    lineage = Lineage("r", "b", datetime(2026, 10, 5, tzinfo=UTC))
    warehouse = DuckDbWarehouse(tmp_path / "w.duckdb", memory_mb=256)
    companies = [(f"c-{i:06d}", f"Company {i}", "DE", "saas", datetime(2026, 9, 1)) for i in range(n)]
    warehouse.replace_crm_snapshot(day0, companies, lineage, checksum="crm", version="v")
    days = [day0 + timedelta(days=k) for k in range(3)]
    for k, day in enumerate(days):
        rows = [(f"c-{i:06d}", i % 40, i % 97) for i in range(n)]
        warehouse.replace_usage_day(day, rows, lineage, checksum=str(k), quarantined=0, version="v")
    warehouse.close()
    warehouse.memory_mb = 8
    params = BuildParams(
        "r", churn_min_rolling_users=10, churn_max_contact_age_days=30, crm_max_snapshot_age_days=7
    )
    with pytest.raises(WarehouseOutOfMemory, match="LOCAL_WAREHOUSE_MEMORY_MB=8 allows") as caught:
        warehouse.build_days(days, params)
    assert "\n" not in str(caught.value)
    warehouse.close()
