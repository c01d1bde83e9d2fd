"""The golden world through the Azure SQL adapter against a real SQL Server.

This machine cannot run SQL Server; the `sqlserver` job of .github/workflows/ci.yml can (the
official container and Microsoft's ODBC driver). It sets MSSQL_TEST_CONNECTION_STRING to a
scratch database and MSSQL_REQUIRED=true, so there these tests run or fail, never skip. The
same checks as on DuckDB: the golden table exactly, unchanged rows untouched by a re-run,
convergence under forced replays, and concurrent builds under the application lock.

As on Azure, the job applies the schema as an administrator (`init-db` as sa) and runs these
as a login that may only read and write rows (db_datareader, db_datawriter): the first test
checks that it is so. MSSQL_ADMIN_CONNECTION_STRING (sa, to master) lets the upgrade test make
a database of its own.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from shared.config import Settings
from tests.reference import diff_tables, load_expected_csv
from tests.support import (
    GOLDEN,
    MSSQL,
    MSSQL_ADMIN,
    REPO,
    build_concurrently,
    empty_mssql_tables,
    require_mssql,
)


@pytest.fixture
def sql_server(
    local_env: Path, monkeypatch: pytest.MonkeyPatch
) -> Iterator[Callable[[], list[dict[str, Any]]]]:
    """The local pipeline with Azure SQL as its warehouse, emptied first; yields a table reader."""
    require_mssql()
    from shared.bootstrap import make_warehouse

    monkeypatch.setenv("SQL_CONNECTION_STRING", MSSQL)
    warehouse = make_warehouse(Settings.from_env())
    warehouse.check_schema()  # applied by init-db as an administrator: the app's login may not
    empty_mssql_tables()

    def table() -> list[dict[str, Any]]:
        return list(warehouse.fetch_rows("company_daily_activity"))

    yield table
    warehouse.close()


def load_golden(cli: Callable[..., tuple[int, str, str]]) -> None:
    for path in GOLDEN.crm_files():
        code, _out, err = cli("crm-drop", str(path))
        assert code == 0, err
    code, out, err = cli("backfill", "--from", "2026-10-01", "--to", "2026-10-10")
    assert code == 0, err
    assert out.count(" built ") == 10, out


def test_the_golden_world_on_sql_server_is_the_golden_table_exactly(cli, sql_server) -> None:
    load_golden(cli)
    differences = diff_tables(sql_server(), load_expected_csv(GOLDEN.expected_csv))
    assert differences == [], "\n".join(differences[:20])


def test_a_rerun_and_a_forced_replay_leave_unchanged_rows_untouched(cli, sql_server) -> None:
    load_golden(cli)
    before = sql_server()
    assert cli("run", "--date", "2026-10-04")[0] == 0
    assert cli("run", "--date", "2026-10-04", "--force")[0] == 0
    assert cli("backfill", "--from", "2026-10-01", "--to", "2026-10-10", "--force")[0] == 0
    assert sql_server() == before  # the same values, loaded_at and run ids included


def test_the_crm_drops_in_reverse_order_converge(cli, sql_server) -> None:
    assert cli("backfill", "--from", "2026-10-01", "--to", "2026-10-10")[0] == 0  # every day waits
    for path in reversed(GOLDEN.crm_files()):
        assert cli("crm-drop", str(path))[0] == 0
    differences = diff_tables(sql_server(), load_expected_csv(GOLDEN.expected_csv))
    assert differences == [], "\n".join(differences[:20])


def test_concurrent_builds_serialize_under_the_application_lock(cli, sql_server) -> None:
    from shared.local.pipeline import LocalPipeline

    load_golden(cli)
    pipeline = LocalPipeline(Settings.from_env())
    try:
        errors = build_concurrently(pipeline.services)
    finally:
        pipeline.close()
    assert not errors, errors
    differences = diff_tables(sql_server(), load_expected_csv(GOLDEN.expected_csv))
    assert differences == [], "\n".join(differences[:20])


@pytest.mark.parametrize(
    ("view", "key_columns"),
    [
        ("company_weekly_activity", ("iso_year", "iso_week", "week_start", "week_end")),
        ("company_monthly_activity", ("year", "month", "month_start", "month_end")),
    ],
)
def test_the_rollup_views_on_sql_server_add_up_the_golden_days(
    cli, sql_server, view: str, key_columns: tuple[str, ...]
) -> None:
    """The same independent computation as tests/integration/test_rollups.py, on T-SQL's views."""
    import pyodbc

    from tests.integration.test_rollups import assert_rollup, expected_rollup, iso_week, month

    load_golden(cli)
    expected = expected_rollup(load_expected_csv(GOLDEN.expected_csv), iso_week if "week" in view else month)
    with pyodbc.connect(MSSQL, autocommit=True) as connection:
        cursor = connection.execute(f"SELECT * FROM analytics.{view}")  # noqa: S608 - fixed names
        columns = [d[0] for d in cursor.description]
        actual = [dict(zip(columns, row, strict=True)) for row in cursor.fetchall()]
    assert_rollup(view, actual, expected, key_columns)


def test_reconcile_reads_sql_server_and_changes_nothing(cli, sql_server) -> None:
    load_golden(cli)
    before = sql_server()
    code, out, _err = cli("reconcile", "--date", "2026-10-03", "--skip-api")
    assert code == 1 and "record quarantined (page 1, record 5): active_users is negative: -4" in out
    code, out, _err = cli("reconcile", "--date", "2026-10-03", "--company", "c-010001", "--skip-api")
    assert code == 0 and "rolling_7d_active_users 249 (user-days): 0 + 0 + 0 + 0 + 76 + 87 + 86" in out
    assert sql_server() == before


def test_the_suite_runs_as_a_login_that_may_only_read_and_write_rows() -> None:
    """What the post-provision hook grants the app on Azure: a schema change would fail here."""
    require_mssql()
    import pyodbc

    with pyodbc.connect(MSSQL, autocommit=True) as connection:
        rights = connection.execute(
            "SELECT IS_ROLEMEMBER('db_datareader'), IS_ROLEMEMBER('db_datawriter'),"
            " IS_ROLEMEMBER('db_owner'), IS_ROLEMEMBER('db_ddladmin'), IS_SRVROLEMEMBER('sysadmin'),"
            " HAS_PERMS_BY_NAME(DB_NAME(), 'DATABASE', 'CREATE TABLE'),"
            " HAS_PERMS_BY_NAME(DB_NAME(), 'DATABASE', 'CREATE VIEW'),"
            " HAS_PERMS_BY_NAME('analytics', 'SCHEMA', 'ALTER')"
        ).fetchone()
    assert tuple(rights) == (1, 1, 0, 0, 0, 0, 0, 0), (
        "MSSQL_TEST_CONNECTION_STRING must be a login with db_datareader and db_datawriter only"
        f" (as the app's on Azure), not an administrator: {tuple(rights)}"
    )


def test_the_schema_upgrades_an_earlier_version_without_losing_rows() -> None:
    """init-db over a database made by schema version 0 (tests/data/schema_v0/), twice: every
    row stays, the version is recorded, and the app's check passes."""
    require_mssql()
    if not MSSQL_ADMIN:
        pytest.skip("MSSQL_ADMIN_CONNECTION_STRING not set (the sqlserver CI job sets it)")
    import pyodbc

    from shared.adapters.warehouse_mssql import MssqlWarehouse
    from shared.adapters.warehouse_sql import SCHEMA_VERSIONS

    mssql_version = SCHEMA_VERSIONS["mssql"]

    database = "companyactivity_upgrade"
    with pyodbc.connect(MSSQL_ADMIN, autocommit=True) as admin:
        admin.execute(f"IF DB_ID('{database}') IS NOT NULL DROP DATABASE {database}")
        admin.execute(f"CREATE DATABASE {database}")
    connection_string = f"{MSSQL_ADMIN};Database={database}"
    try:
        with pyodbc.connect(connection_string, autocommit=True) as old:
            old.execute((REPO / "tests" / "data" / "schema_v0" / "mssql.sql").read_text(encoding="utf-8"))
            old.execute(
                "INSERT INTO stg.product_usage_daily VALUES ('c-1', '2026-10-01', 3, 40, 'r', 'b', SYSUTCDATETIME());"
                "INSERT INTO analytics.company_daily_activity (company_id, activity_date, crm_snapshot_date,"
                " active_users, events, rolling_7d_active_users, rolling_7d_events, usage_days_observed_7d,"
                " is_churn_risk, pipeline_run_id, loaded_at)"
                " VALUES ('c-1', '2026-10-01', '2026-10-01', 3, 40, 3, 40, 1, 0, 'r', SYSUTCDATETIME());"
            )
        app = MssqlWarehouse(lambda: pyodbc.connect(connection_string, autocommit=False))
        with pytest.raises(Exception, match="has no schema version, this app needs schema version"):
            app.check_schema()
        for _ in range(2):
            MssqlWarehouse(lambda: pyodbc.connect(connection_string, autocommit=False)).apply_schema()
        app.check_schema()
        assert [r["company_id"] for r in app.fetch_rows("company_daily_activity")] == ["c-1"]
        assert app.probe().startswith(f"schema {mssql_version}, 6 tables read (3 hold rows)")
        app.close()
        with pyodbc.connect(connection_string, autocommit=True) as check:
            assert check.execute("SELECT COUNT(*) FROM stg.product_usage_daily").fetchone()[0] == 1
            assert check.execute("SELECT version FROM analytics.schema_version").fetchall() == [
                (mssql_version,)
            ]
    finally:
        with pyodbc.connect(MSSQL_ADMIN, autocommit=True) as admin:
            admin.execute(f"ALTER DATABASE {database} SET SINGLE_USER WITH ROLLBACK IMMEDIATE")
            admin.execute(f"DROP DATABASE {database}")
