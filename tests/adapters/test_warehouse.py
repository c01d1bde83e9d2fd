"""Behavioural SQL suite for the Warehouse port: DuckDB always, Azure SQL when
MSSQL_TEST_CONNECTION_STRING is set (an ODBC connection string to a scratch database)."""

from __future__ import annotations

import os
from collections.abc import Iterator
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import pytest

from shared.adapters.warehouse_sql import SCHEMA_VERSIONS
from shared.ports import BuildParams, Lineage, Warehouse
from tests.support import MSSQL, empty_mssql_tables, require_mssql

D1 = date(2026, 10, 1)
PARAMS = BuildParams(
    "run-1", churn_min_rolling_users=10, churn_max_contact_age_days=30, crm_max_snapshot_age_days=7
)
NOW = datetime(2026, 10, 20, 12, 0, tzinfo=UTC)


@pytest.fixture(
    params=[
        "duckdb",
        pytest.param(
            "mssql",
            marks=pytest.mark.skipif(
                not MSSQL and os.environ.get("MSSQL_REQUIRED") != "true",
                reason="MSSQL_TEST_CONNECTION_STRING not set",
            ),
        ),
    ]
)
def warehouse(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Warehouse]:
    if request.param == "mssql":
        require_mssql()
    if request.param == "duckdb":
        from shared.adapters.warehouse_duckdb import DuckDbWarehouse

        store = DuckDbWarehouse(tmp_path / "w.duckdb")
    else:
        import pyodbc

        from shared.adapters.warehouse_mssql import MssqlWarehouse

        # The schema was applied by an administrator (the sqlserver CI job runs init-db as sa);
        # MSSQL is the app's own login, which may read and write rows only.
        store = MssqlWarehouse(lambda: pyodbc.connect(MSSQL, autocommit=False))
        empty_mssql_tables()
    store.check_schema()  # what the first SQL work does: DuckDB makes its new file's schema
    yield store
    store.close()  # type: ignore[attr-defined]


def lineage(run: str = "run-1") -> Lineage:
    return Lineage(run, "source.json", NOW)


def stage_usage(
    w: Warehouse,
    day: date,
    rows: list[tuple[str, int, int]],
    version: str = "v1",
    checksum: str | None = None,
) -> str:
    return w.replace_usage_day(
        day, rows, lineage(), checksum=checksum or repr(rows), quarantined=0, version=version
    )


def stage_crm(
    w: Warehouse, day: date, rows: list[tuple], version: str = "v1", checksum: str | None = None
) -> str:
    return w.replace_crm_snapshot(day, rows, lineage(), checksum=checksum or repr(rows), version=version)


def table(w: Warehouse) -> dict[tuple[str, date], dict]:
    return {(r["company_id"], r["activity_date"]): r for r in w.fetch_rows("company_daily_activity")}


def company(cid: str, name: str = "Acme", contact: datetime | None = datetime(2026, 9, 25, 18, 0)) -> tuple:
    return (cid, name, "DE", "saas", contact)


def test_staging_is_replaced_repeated_or_stale(warehouse: Warehouse) -> None:
    assert stage_usage(warehouse, D1, [("a", 1, 2)], version="v2") == "staged"
    assert stage_usage(warehouse, D1, [("a", 1, 2)], version="v2") == "unchanged"
    assert stage_usage(warehouse, D1, [("a", 9, 9)], version="v1") == "stale"
    assert stage_usage(warehouse, D1, [("a", 5, 6), ("b", 1, 1)], version="v3") == "staged"
    assert stage_crm(warehouse, D1, [company("a")], version="v2") == "staged"
    assert stage_crm(warehouse, D1, [company("a")], version="v2") == "unchanged"
    assert stage_crm(warehouse, D1, [company("z")], version="v1") == "stale"


def test_a_day_needs_usage_and_an_effective_snapshot(warehouse: Warehouse) -> None:
    stage_usage(warehouse, D1, [("a", 3, 30)])
    assert warehouse.build_days([D1], PARAMS).days == []  # no snapshot yet
    stage_crm(warehouse, D1 - timedelta(days=8), [company("a")])
    assert warehouse.build_days([D1], PARAMS).days == []  # too old to be effective
    stage_crm(warehouse, D1 - timedelta(days=7), [company("a"), company("b", "Beta", None)])
    result = warehouse.build_days([D1, D1 + timedelta(days=1)], PARAMS)  # the second day has no usage
    assert [(d.activity_date, d.snapshot_date, d.rows, d.inserted) for d in result.days] == [
        (D1, D1 - timedelta(days=7), 2, 2)
    ]


def test_the_rules_of_one_row(warehouse: Warehouse) -> None:
    for offset, users in enumerate([4, 0, 3]):
        stage_usage(warehouse, D1 + timedelta(days=offset), [("a", users, users * 10 + 1)])
    stage_crm(warehouse, D1, [company("a"), company("b", "Beta", None)])
    warehouse.build_days([D1, D1 + timedelta(days=1), D1 + timedelta(days=2)], PARAMS)
    rows = table(warehouse)
    a1, a2, a3 = (rows[("a", D1 + timedelta(days=n))] for n in range(3))
    assert (a1["active_users"], a1["events"], float(a1["events_per_user"])) == (4, 41, 10.25)
    assert a2["events_per_user"] is None and a2["events"] == 1
    assert (a3["rolling_7d_active_users"], a3["rolling_7d_events"], a3["usage_days_observed_7d"]) == (
        7,
        73,
        3,
    )
    assert a3["days_since_last_contact"] == 8 and a3["crm_snapshot_date"] == D1
    assert bool(a3["is_churn_risk"]) is False  # 7 < 10 users, but contacted 8 days ago
    b3 = rows[("b", D1 + timedelta(days=2))]
    assert (b3["active_users"], b3["rolling_7d_active_users"], b3["days_since_last_contact"]) == (0, 0, None)
    assert bool(b3["is_churn_risk"]) is True


def test_unchanged_rows_are_left_alone_and_removed_companies_go(warehouse: Warehouse) -> None:
    stage_usage(warehouse, D1, [("a", 12, 20)])
    stage_crm(warehouse, D1, [company("a"), company("b")], version="v1")
    warehouse.build_days([D1], PARAMS)
    first = table(warehouse)
    again = warehouse.build_days([D1], BuildParams("run-2", 10, 30, 7))
    assert (again.days[0].inserted, again.days[0].updated, again.days[0].deleted) == (0, 0, 0)
    assert table(warehouse) == first  # same loaded_at, same pipeline_run_id

    stage_crm(warehouse, D1, [company("a", "Acme Renamed")], version="v2")
    changed = warehouse.build_days([D1], BuildParams("run-3", 10, 30, 7)).days[0]
    assert (changed.rows, changed.inserted, changed.updated, changed.deleted) == (1, 0, 1, 1)
    now = table(warehouse)
    assert list(now) == [("a", D1)]
    assert now[("a", D1)]["company_name"] == "Acme Renamed" and now[("a", D1)]["pipeline_run_id"] == "run-3"


def test_names_with_commas_quotes_newlines_and_nulls_survive_the_bulk_load(warehouse: Warehouse) -> None:
    odd = 'Stark\nIndustries, "The" Best'
    stage_usage(warehouse, D1, [("a,1", 1, 1), ('b"2', 2, 2)])
    stage_crm(warehouse, D1, [("a,1", odd, None, None, None), ('b"2', None, "", "x", None)])
    warehouse.build_days([D1], PARAMS)
    rows = table(warehouse)
    assert rows[("a,1", D1)]["company_name"] == odd and rows[("a,1", D1)]["country"] is None
    assert rows[('b"2', D1)]["company_name"] is None


def test_events_per_user_rounds_half_away_from_zero_exactly(warehouse: Warehouse) -> None:
    """Contract section 3: events / active_users to 4 places, halves away from zero, as
    DECIMAL(18,4) does in T-SQL (6.03125 -> 6.0313), whatever the engine computes in between."""
    import random
    from decimal import ROUND_HALF_UP, Decimal

    pairs = [
        (events, users) for users in (1, 3, 7, 16, 32, 64, 80, 160, 625, 2**20) for events in range(0, 200)
    ]
    pairs += [(2**31 - 1, 1), (2**31 - 1, 2**31 - 1), (2**31 - 2, 3), (1, 2**31 - 1)]
    # Exact halves at the fifth place with large counts: where a division in DOUBLE goes wrong.
    rng, divisors = random.Random(1), [2**a * 5**b for a in range(8) for b in range(8)]
    while len(pairs) < 2004 + 3600:
        users, events = rng.choice(divisors), rng.randrange(0, 2**31)
        if (events * 20000) % users == 0 and (events * 20000 // users) % 2 == 1:
            pairs.append((events, users))
    rows = [(f"c{i:05d}", users, events) for i, (events, users) in enumerate(pairs)]
    stage_crm(warehouse, D1, [company("c00000")])
    stage_usage(warehouse, D1, rows)
    warehouse.build_days([D1], PARAMS)
    got = {cid: r["events_per_user"] for (cid, _), r in table(warehouse).items()}
    expected = {
        cid: (Decimal(events) / Decimal(users)).quantize(Decimal("0.0001"), rounding=ROUND_HALF_UP)
        for cid, users, events in rows
    }
    wrong = {cid: (got[cid], expected[cid]) for cid in expected if Decimal(got[cid]) != expected[cid]}
    assert not wrong, f"{len(wrong)} of {len(rows)} rounded differently, e.g. {list(wrong.items())[:3]}"


def test_a_current_duckdb_file_is_not_rewritten_by_readers(tmp_path: Path) -> None:
    """Only reading (a new process's schema check, a query) leaves the file's bytes as they were;
    a file whose schema is not the current one is brought up to date; a read-only warehouse
    reads a file as it is and cannot write it."""
    import hashlib

    import duckdb

    from shared.adapters.warehouse_duckdb import DuckDbWarehouse

    path = tmp_path / "w.duckdb"
    writer = DuckDbWarehouse(path)
    stage_crm(writer, D1, [company("c1")])
    stage_usage(writer, D1, [("c1", 3, 9)])
    writer.build_days([D1], PARAMS)
    writer.close()

    def digest() -> str:
        return hashlib.sha256(path.read_bytes()).hexdigest()

    before = digest()
    for read_only in (False, True):
        reader = DuckDbWarehouse(path, read_only=read_only)
        assert [r["events"] for r in reader.fetch_rows("company_daily_activity")] == [9]
        reader.close()
        assert digest() == before, f"read_only={read_only} rewrote the file"

    with duckdb.connect(str(path)) as con:  # a file made by an earlier version: no views, no mark
        con.execute("DROP VIEW analytics.company_weekly_activity")
        con.execute("COMMENT ON TABLE analytics.company_daily_activity IS NULL")
    behind = DuckDbWarehouse(path)
    assert [r["active_user_days"] for r in behind.fetch_rows("report_weekly_trend")] == [3]
    behind.close()

    reader = DuckDbWarehouse(path, read_only=True)
    with pytest.raises(duckdb.Error, match="read-only"):
        stage_usage(reader, D1, [("c1", 4, 9)], version="v2")
    reader.close()


def test_a_duckdb_build_that_would_leave_two_rows_for_a_company_and_day_fails(tmp_path: Path) -> None:
    """DuckDB's analytics table has no primary key (schema version 2): the build checks one row
    per company and day over the days it wrote, in its transaction. A second row for a company
    and day (written by anything but the build) fails the build with one line, as a permanent
    error, and the build's writes are rolled back."""
    import duckdb

    from shared.adapters.warehouse_duckdb import DuckDbWarehouse, DuplicateRows
    from shared.domain.errors import PermanentError

    path = tmp_path / "w.duckdb"
    store = DuckDbWarehouse(path)
    stage_crm(store, D1, [company("a"), company("b")])
    stage_usage(store, D1, [("a", 12, 20), ("b", 1, 1)])
    store.build_days([D1], PARAMS)
    store.close()
    with duckdb.connect(str(path)) as con:  # a copy of a's row, as another program might write it
        con.execute(
            "INSERT INTO analytics.company_daily_activity SELECT * FROM analytics.company_daily_activity"
            " WHERE company_id = 'a'"
        )
    before = sorted(map(repr, store.fetch_rows("company_daily_activity")))
    stage_usage(store, D1, [("a", 12, 20), ("b", 5, 5)], version="v2")  # b's row will change
    with pytest.raises(DuplicateRows) as refused:
        store.build_days([D1], BuildParams("run-2", 10, 30, 7))
    assert str(refused.value) == (
        "duplicate rows: analytics.company_daily_activity would hold 2 rows for company a on"
        " 2026-10-01 (one row per company and day); nothing was written"
    )
    assert isinstance(refused.value, PermanentError)
    assert sorted(map(repr, store.fetch_rows("company_daily_activity"))) == before  # b not updated
    store.close()


def test_duckdb_staging_that_would_leave_two_rows_for_a_company_and_day_fails(tmp_path: Path) -> None:
    """The staged usage has no primary key in DuckDB either (schema version 2): the staging
    transaction checks the day it wrote. The loader de-duplicates first, so only rows written
    by something else can trip it: one line, a permanent error, nothing staged."""
    import duckdb

    from shared.adapters.warehouse_duckdb import DuckDbWarehouse, DuplicateRows

    path = tmp_path / "w.duckdb"
    store = DuckDbWarehouse(path)
    stage_usage(store, D1, [("a", 1, 1)])
    with pytest.raises(DuplicateRows) as refused:
        stage_usage(store, D1, [("a", 2, 2), ("b", 3, 3), ("a", 4, 4)], version="v2")
    assert str(refused.value) == (
        "duplicate rows: stg.product_usage_daily would hold 3 rows for 2 companies on 2026-10-01"
        " (one row per company and day); nothing was written"
    )
    store.close()
    with duckdb.connect(str(path), read_only=True) as con:
        assert con.execute("SELECT company_id, events FROM stg.product_usage_daily").fetchall() == [("a", 1)]


def test_duckdb_out_of_its_memory_cap_says_which_setting_and_recovers(tmp_path: Path) -> None:
    """A COMMIT that runs out of memory invalidates DuckDB's database and its ROLLBACK fails
    too: the error names LOCAL_WAREHOUSE_MEMORY_MB, settles at once (retrying with the same cap
    cannot help), and the same warehouse opens the file again for the next, smaller load."""
    from shared.adapters.warehouse_duckdb import DuckDbWarehouse, WarehouseOutOfMemory
    from shared.domain.errors import PermanentError

    small = DuckDbWarehouse(tmp_path / "w.duckdb", memory_mb=16)
    many = [company(f"c-{i:07d}", f"Company {i}") for i in range(200_000)]
    with pytest.raises(WarehouseOutOfMemory, match="LOCAL_WAREHOUSE_MEMORY_MB=16 allows") as caught:
        stage_crm(small, D1, many)
    assert isinstance(caught.value, PermanentError) and "\n" not in str(caught.value)
    assert stage_crm(small, D1, [company("c1")]) == "staged"
    assert [
        r["company_id"] for r in small.fetch_rows("reconcile_snapshot_companies", {"snapshot_date": D1})
    ] == ["c1"]
    small.close()


def test_probe_reads_the_table(warehouse: Warehouse) -> None:
    """GET /api/health's warehouse check (issue 20): the schema version and a read of each table."""
    assert warehouse.probe().endswith("(1 hold rows)")  # the schema version only
    stage_usage(warehouse, D1, [("c-1", 5, 50)])
    stage_crm(warehouse, D1, [company("c-1")])
    warehouse.build_days([D1], PARAMS)
    version = SCHEMA_VERSIONS[warehouse.dialect]
    assert warehouse.probe() == f"schema {version}, 7 tables read (6 hold rows)"


def test_the_duckdb_probe_makes_no_file(tmp_path: Path) -> None:
    """A health check changes nothing another command would see: no warehouse file yet is fine."""
    from shared.adapters.warehouse_duckdb import DuckDbWarehouse

    store = DuckDbWarehouse(tmp_path / "w.duckdb")
    assert "no warehouse yet: the first run creates" in store.probe()
    assert not (tmp_path / "w.duckdb").exists()
    (tmp_path / "w.duckdb").write_bytes(b"not a database" * 100)
    with pytest.raises(Exception, match="not a valid DuckDB database"):
        store.probe()
    store.close()
