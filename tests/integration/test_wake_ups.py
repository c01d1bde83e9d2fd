"""Wake-ups that cannot be swallowed (issue 21, items 1-3): the work owed is the ledger's pending
marks, and every message announcing it is new to duplicate detection, which keeps ids for a day
(P1D, as the Bicep gives the Service Bus queues). Through the real handlers and the in-process bus.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from datetime import date
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

from shared.adapters.warehouse_duckdb import WarehouseOutOfMemory
from shared.adapters.warehouse_sql import SqlWarehouse
from shared.domain import names
from shared.local.pipeline import LocalPipeline
from shared.ports import BuildParams, BuildResult
from shared.services import build_lease, transform
from shared.services.pending import pending_days
from tests.reference import diff_tables, load_expected_csv
from tests.support import GOLDEN, read_table

DAYS = sorted(GOLDEN.records())
DAY_LONG = 86_400.0
SNAPSHOT = GOLDEN.root / "crm" / "companies_2026-10-01.csv"


def table(pipe: LocalPipeline) -> list[dict[str, Any]]:
    return list(pipe.services.warehouse.fetch_rows("company_daily_activity"))


def golden_built(pipe: LocalPipeline) -> None:
    pipe.host.bus.duplicate_window_s = DAY_LONG
    for path in GOLDEN.crm_files():
        pipe.drop_crm(path.read_bytes(), path.name)
    pipe.replay({"from": DAYS[0], "to": DAYS[-1]})
    assert diff_tables(table(pipe), load_expected_csv(GOLDEN.expected_csv)) == []


def renamed(data: bytes) -> bytes:
    """Snapshot B: A with one company renamed (2026-10-01's rows show the name)."""
    assert b"Initech 6" in data
    return data.replace(b"Initech 6", b"Renamed Six")


def names_on(pipe: LocalPipeline, day: str) -> set[str]:
    return {str(r["company_name"]) for r in table(pipe) if str(r["activity_date"]) == day}


def pending(pipe: LocalPipeline) -> list[date]:
    return sorted(pending_days(pipe.services.ledger.query(names.DAYS)))


def test_a_snapshot_reverted_to_an_earlier_file_is_built_again(pipeline: LocalPipeline) -> None:
    golden_built(pipeline)
    a = SNAPSHOT.read_bytes()

    pipeline.drop_crm(renamed(a), SNAPSHOT.name)  # B
    assert "Renamed Six" in names_on(pipeline, "2026-10-01")
    pipeline.drop_crm(a, SNAPSHOT.name)  # A again, within the duplicate window

    assert pending(pipeline) == []
    assert "Renamed Six" not in names_on(pipeline, "2026-10-01")
    assert diff_tables(table(pipeline), load_expected_csv(GOLDEN.expected_csv)) == []


def test_a_build_that_ran_out_of_memory_stays_owed_and_is_built_once_the_cap_is_raised(
    pipeline: LocalPipeline, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Issue 21 case 2 with issue 24's rule: a day that did not fit settles once, stays pending
    (never dropped), is not tried again under the same cap (it would fail the same way), and the
    next command after the cap is raised builds it."""
    golden_built(pipeline)
    warehouse = pipeline.services.warehouse
    real = warehouse.build_days
    monkeypatch.setattr(warehouse, "memory_mb", 64)

    def out_of_memory_under_64(days: list[date], params: BuildParams) -> BuildResult:
        if days and warehouse.memory_mb == 64:  # type: ignore[attr-defined]
            raise WarehouseOutOfMemory("needed more memory than LOCAL_WAREHOUSE_MEMORY_MB=64 lets it have")
        return real(days, params)

    monkeypatch.setattr(warehouse, "build_days", out_of_memory_under_64)
    b = renamed(SNAPSHOT.read_bytes())
    pipeline.drop_crm(b, SNAPSHOT.name)
    assert pending(pipeline) == [date(2026, 10, 1)]  # settled without building: still owed
    assert "Renamed Six" not in names_on(pipeline, "2026-10-01")

    pipeline.drop_crm(b, SNAPSHOT.name)  # the same cap: still owed, not tried in vain
    assert pending(pipeline) == [date(2026, 10, 1)]

    monkeypatch.setattr(warehouse, "memory_mb", 1024)  # LOCAL_WAREHOUSE_MEMORY_MB raised
    pipeline.drop_crm(b, SNAPSHOT.name)  # "unchanged", but the day it owes is built now

    assert pending(pipeline) == []
    assert "Renamed Six" in names_on(pipeline, "2026-10-01")


def test_a_lease_left_by_a_dead_command_does_not_block_the_next_one(pipeline: LocalPipeline) -> None:
    golden_built(pipeline)
    # A command killed while it built: its lease and its pending marks stay; its message is gone
    # (dead-lettered after five deliveries).
    assert build_lease.acquire(pipeline.services, "transform-crm-dead-holder")
    pipeline.services.ledger.put(
        names.DAYS,
        "2026-10-01",
        {
            **pipeline.services.ledger.get(names.DAYS, "2026-10-01").data,  # type: ignore[union-attr]
            "pending": "build",
            "pending_token": "dead/1",
            "pending_run_id": "dead",
        },
    )
    pipeline.drop_crm(renamed(SNAPSHOT.read_bytes()), SNAPSHOT.name)

    assert pending(pipeline) == []
    assert build_lease.holder_of(pipeline.services) == ""
    assert "Renamed Six" in names_on(pipeline, "2026-10-01")


def _out_of_memory_under_64_mb(monkeypatch: pytest.MonkeyPatch) -> None:
    """Builds do not fit while LOCAL_WAREHOUSE_MEMORY_MB is 64, as a day too large for it would
    not; they fit once the setting is raised."""
    monkeypatch.setenv("LOCAL_WAREHOUSE_MEMORY_MB", "64")
    real = SqlWarehouse.build_days

    def out_of_memory_under_64(self: SqlWarehouse, days: list[date], params: BuildParams) -> BuildResult:
        if days and getattr(self, "memory_mb", None) == 64:
            raise WarehouseOutOfMemory("needed more memory than LOCAL_WAREHOUSE_MEMORY_MB=64 lets it have")
        return real(self, days, params)

    monkeypatch.setattr(SqlWarehouse, "build_days", out_of_memory_under_64)


def test_crm_drop_never_exits_0_with_a_day_still_pending(
    cli: Callable[..., tuple[int, str, str]],
    local_env: Path,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    for path in GOLDEN.crm_files():
        assert cli("crm-drop", str(path))[0] == 0
    assert cli("backfill", "--from", DAYS[0], "--to", DAYS[-1])[0] == 0
    b = tmp_path / SNAPSHOT.name
    b.write_bytes(renamed(SNAPSHOT.read_bytes()))
    _out_of_memory_under_64_mb(monkeypatch)

    code, out, err = cli("crm-drop", str(b))
    assert code == 1, (out, err)
    assert "1 day still has a build pending (2026-10-01)" in err and "memory" in err
    code, out, err = cli("crm-drop", str(b))  # the same cap: still owed, and said, non-zero
    assert code == 1 and "build pending (2026-10-01)" in err, (out, err)
    assert "raise LOCAL_WAREHOUSE_MEMORY_MB, then: python -m shared.cli rebuild" in err

    monkeypatch.setenv("LOCAL_WAREHOUSE_MEMORY_MB", "1024")
    code, out, err = cli("crm-drop", str(b))  # the same file again: unchanged, and built now
    assert code == 0, (out, err)
    rows = read_table(local_env)
    assert "Renamed Six" in {r["company_name"] for r in rows if str(r["activity_date"]) == "2026-10-01"}


def test_rebuild_says_what_it_built_and_fails_when_nothing_was(
    cli: Callable[..., tuple[int, str, str]], monkeypatch: pytest.MonkeyPatch
) -> None:
    for path in GOLDEN.crm_files():
        assert cli("crm-drop", str(path))[0] == 0
    assert cli("run", "--date", DAYS[0])[0] == 0
    monkeypatch.setenv("CHURN_MIN_ROLLING_USERS", "4")  # the built day is now under other rules
    _out_of_memory_under_64_mb(monkeypatch)

    code, out, err = cli("rebuild")
    assert code == 1 and "rebuilt 0 days" in out, (out, err)
    monkeypatch.setenv("LOCAL_WAREHOUSE_MEMORY_MB", "1024")
    code, out, err = cli("rebuild")
    assert code == 0 and "rebuilt 1 day (asked" in out, (out, err)


def test_a_dead_lettered_transform_lets_go_of_its_lease(
    pipeline: LocalPipeline, monkeypatch: pytest.MonkeyPatch
) -> None:
    golden_built(pipeline)

    def killed(days: list[date], params: BuildParams) -> BuildResult:
        raise RuntimeError("killed mid-build")

    # Killed, the transform never gets to let go of the lease itself.
    dying = SimpleNamespace(
        acquire=build_lease.acquire, holder_of=build_lease.holder_of, release=lambda *_: None
    )
    monkeypatch.setattr(transform, "build_lease", dying)
    monkeypatch.setattr(pipeline.services.warehouse, "build_days", killed)
    report = pipeline.drop_crm(renamed(SNAPSHOT.read_bytes()), SNAPSHOT.name)

    assert any(d.startswith(f"{names.TRANSFORM_QUEUE}:") for d in report.dead_lettered)
    assert build_lease.holder_of(pipeline.services) == ""  # not for 11 minutes
    assert pending(pipeline) == [date(2026, 10, 1)]


def test_a_rebuild_for_new_rules_that_ran_out_of_memory_stays_owed_until_it_fits(
    cli: Callable[..., tuple[int, str, str]], local_env: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Found by the fresh-clone review: a day rebuilt for a change of rules had no mark, so when
    it did not fit it was left 'failed' with its old rules and nothing owed it a build."""
    for path in GOLDEN.crm_files():
        assert cli("crm-drop", str(path))[0] == 0
    assert cli("run", "--date", DAYS[0])[0] == 0
    monkeypatch.setenv("CHURN_MIN_ROLLING_USERS", "4")
    _out_of_memory_under_64_mb(monkeypatch)
    code, out, err = cli("rebuild")
    assert code == 1 and f"build pending ({DAYS[0]})" in err, (out, err)
    code, out, err = cli("run", "--date", DAYS[0])  # the same cap: said again, non-zero
    assert code == 1 and "LOCAL_WAREHOUSE_MEMORY_MB=64" in err, (out, err)

    monkeypatch.setenv("LOCAL_WAREHOUSE_MEMORY_MB", "1024")
    code, out, err = cli("rebuild")
    assert code == 0 and "rebuilt 1 day (asked" in out, (out, err)
    code, out, err = cli("status", "--json")
    (day,) = [d for d in json.loads(out)["days"] if d["date"] == DAYS[0]]
    assert day["days"]["status"] == "built" and day["days"]["rules"]["churn_min_rolling_users"] == 4
