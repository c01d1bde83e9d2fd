"""The warehouse seam: which SQL files may be run by name.

`QueryName` (shared/ports.py) lists what callers may read with `fetch_rows`, `StatementName`
(shared/adapters/warehouse_sql.py) the adapters' own files; together they are sql/<dialect>/.
"""

from __future__ import annotations

from typing import get_args

import pytest

from shared.adapters.sql_files import SQL_ROOT
from shared.adapters.warehouse_sql import StatementName
from shared.ports import QueryName


@pytest.mark.parametrize("dialect", ["duckdb", "mssql"])
def test_the_names_are_every_sql_file_of_the_dialect(dialect: str) -> None:
    files = {path.stem for path in (SQL_ROOT / dialect).glob("*.sql")}
    queries, own = set(get_args(QueryName)), set(get_args(StatementName))
    assert not queries & own, "a file is both a query and the adapters' own"
    assert queries | own == files, (
        f"sql/{dialect}/ and the names differ: files not named {sorted(files - queries - own)},"
        f" names without a file {sorted((queries | own) - files)}"
    )
