"""The golden world through the Azure SQL adapter against a real SQL Server.

This machine cannot run SQL Server; the `sqlserver` job of .github/workflows/ci.yml can (the
official container and Microsoft's ODBC driver). It sets MSSQL_TEST_CONNECTION_STRING to a
scratch database and MSSQL_REQUIRED=true, so there these tests run or fail, never skip. The
same checks as on DuckDB: the golden table exactly, unchanged rows untouched by a re-run,
convergence under forced replays, and concurrent builds under the application lock.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from shared.config import Settings
from tests.conftest import GOLDEN
from tests.reference import diff_tables, load_expected_csv

MSSQL = os.environ.get("MSSQL_TEST_CONNECTION_STRING", "")
TABLES = (
    "analytics.company_daily_activity",
    "stg.product_usage_daily",
    "stg.usage_dataset",
    "stg.crm_company_snapshot",
    "stg.crm_snapshot",
)


@pytest.fixture
def sql_server(
    local_env: Path, monkeypatch: pytest.MonkeyPatch
) -> Iterator[Callable[[], list[dict[str, Any]]]]:
    """The local pipeline with Azure SQL as its warehouse, emptied first; yields a table reader."""
    if not MSSQL:
        if os.environ.get("MSSQL_REQUIRED") == "true":
            pytest.fail("MSSQL_REQUIRED=true but MSSQL_TEST_CONNECTION_STRING is not set")
        pytest.skip("MSSQL_TEST_CONNECTION_STRING not set (the sqlserver CI job sets it)")
    import pyodbc

    from shared.bootstrap import make_warehouse

    monkeypatch.setenv("SQL_CONNECTION_STRING", MSSQL)
    warehouse = make_warehouse(Settings.from_env())
    warehouse.apply_schema()
    with pyodbc.connect(MSSQL, autocommit=True) as connection:
        for table in TABLES:
            connection.execute(f"DELETE FROM {table}")  # noqa: S608 - fixed names

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
    from shared.domain.transform_plan import TransformRequest
    from shared.local.pipeline import LocalPipeline
    from shared.services.transform import run_transform

    load_golden(cli)
    pipeline = LocalPipeline(Settings.from_env())
    try:
        errors: list[BaseException] = []

        def build(kind: str, day: str) -> None:
            try:
                run_transform(
                    pipeline.services, TransformRequest.from_json({"kind": kind, "date": day, "run_id": "t"})
                )
            except BaseException as exc:
                errors.append(exc)

        requests = [
            ("usage", "2026-10-01"),
            ("usage", "2026-10-04"),
            ("crm", "2026-10-01"),
            ("usage", "2026-10-02"),
        ]
        threads = [threading.Thread(target=build, args=request) for request in requests * 2]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
    finally:
        pipeline.close()
    assert not errors, errors
    differences = diff_tables(sql_server(), load_expected_csv(GOLDEN.expected_csv))
    assert differences == [], "\n".join(differences[:20])
