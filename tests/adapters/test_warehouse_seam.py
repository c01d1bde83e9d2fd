"""The warehouse seam: which SQL files may be run by name, and with which parameters.

`QueryName` (shared/ports.py) lists what callers may read with `fetch_rows`, `StatementName`
(shared/adapters/warehouse_sql.py) the adapters' own files; together they are sql/<dialect>/.
Each file runs with exactly the parameters it takes, or fails before anything is sent, naming
the parameter.
"""

from __future__ import annotations

from datetime import date
from pathlib import Path
from typing import get_args

import pytest

from shared.adapters.sql_files import SQL_ROOT
from shared.adapters.warehouse_duckdb import DuckDbWarehouse
from shared.adapters.warehouse_sql import SqlParameterMismatch, StatementName
from shared.ports import QueryName
from tests.adapters.test_azure_offline import FakeConnection, warehouse

DAY = date(2026, 10, 1)
MISSING = "missing parameter snapshot_date (it takes: activity_date, snapshot_date)"
UNEXPECTED = "unexpected parameter since (it takes: none)"


@pytest.mark.parametrize("dialect", ["duckdb", "mssql"])
def test_the_names_are_every_sql_file_of_the_dialect(dialect: str) -> None:
    files = {path.stem for path in (SQL_ROOT / dialect).glob("*.sql")}
    queries, own = set(get_args(QueryName)), set(get_args(StatementName))
    assert not queries & own, "a file is both a query and the adapters' own"
    assert queries | own == files, (
        f"sql/{dialect}/ and the names differ: files not named {sorted(files - queries - own)},"
        f" names without a file {sorted((queries | own) - files)}"
    )


def test_duckdb_names_the_parameter_a_query_was_not_given(tmp_path: Path) -> None:
    store = DuckDbWarehouse(tmp_path / "w.duckdb")
    try:
        with pytest.raises(SqlParameterMismatch) as raised:
            list(store.fetch_rows("coverage_day", {"activity_date": DAY}))
        assert str(raised.value) == f"sql/duckdb/coverage_day.sql: {MISSING}"
        with pytest.raises(SqlParameterMismatch) as raised:
            list(store.fetch_rows("summary_days", {"since": DAY}))
        assert str(raised.value) == f"sql/duckdb/summary_days.sql: {UNEXPECTED}"
    finally:
        store.close()


def test_azure_sql_names_the_parameter_and_sends_nothing() -> None:
    connection = FakeConnection()
    store, _ = warehouse(connection)
    store._schema_ready = True
    with pytest.raises(SqlParameterMismatch) as raised:
        list(store.fetch_rows("coverage_day", {"activity_date": DAY}))
    assert str(raised.value) == f"sql/mssql/coverage_day.sql: {MISSING}"
    with pytest.raises(SqlParameterMismatch) as raised:
        list(store.fetch_rows("summary_days", {"since": DAY}))
    assert str(raised.value) == f"sql/mssql/summary_days.sql: {UNEXPECTED}"
    assert [entry for entry in connection.log if entry[0] == "execute"] == []
