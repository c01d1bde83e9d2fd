"""The Azure SQL adapter's pyodbc calls through a real ODBC driver manager and driver.

SQL Server and Microsoft's driver cannot run here, but unixODBC and Debian's SQLite ODBC
driver can, and what broke every load on Azure SQL happened before any T-SQL ran: how pyodbc
bound each parameter. So the adapter runs here exactly as on Azure (its connection, cursors,
input sizes, bulk load and batches), with each T-SQL batch swapped for a SQLite statement
that takes the same parameters in the same order; unixODBC's trace records every
SQLBindParameter call, and each parameter's SQL type must match the value it carries.

`make test` installs unixodbc and libsqliteodbc (as root); without them this skips, except
under CI=true, where it fails.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import tempfile
import textwrap
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conftest import REPO

DRIVER_SO = "libsqlite3odbc.so"

# SQL type families that a C type may be bound as (ODBC codes as unixODBC's trace prints them).
COMPATIBLE = {
    "SQL_C_WCHAR": {"SQL_WVARCHAR", "SQL_WLONGVARCHAR", "SQL_WCHAR", "SQL_VARCHAR", "SQL_CHAR"},
    "SQL_C_CHAR": {"SQL_WVARCHAR", "SQL_WLONGVARCHAR", "SQL_WCHAR", "SQL_VARCHAR", "SQL_CHAR"},
    "SQL_C_LONG": {"SQL_INTEGER"},
    "SQL_C_SBIGINT": {"SQL_BIGINT", "SQL_INTEGER"},
    "SQL_C_BIT": {"SQL_BIT"},
    "SQL_C_TYPE_DATE": {"SQL_TYPE_DATE"},
    "SQL_C_TYPE_TIMESTAMP": {"SQL_TYPE_TIMESTAMP"},
}

SCRIPT = textwrap.dedent(
    """
    import sys
    from datetime import UTC, date, datetime

    import pyodbc

    from shared.adapters import warehouse_mssql
    from shared.ports import BuildParams, Lineage

    tsql_batch = warehouse_mssql.sql_file

    def sqlite_batch(name):
        # The same parameters, in the same order, as sql/mssql/<name>.sql declares them; no rows.
        _, names = tsql_batch(name)
        markers = ", ".join("?" for _ in names) or "1"
        return f"SELECT {markers} WHERE 1 = 0", names

    class OnSqlite(warehouse_mssql.MssqlWarehouse):
        temp_prefix = "temp_"  # SQLite has no #temp tables

    warehouse_mssql.sql_file = sqlite_batch
    db = sys.argv[1]
    w = OnSqlite(lambda: pyodbc.connect(f"Driver={{SQLite3}};Database={db}", autocommit=False),
                 fast_executemany=False)  # the SQLite driver crashes on parameter arrays
    lineage = Lineage("run-1", "usage/2026-10-01/run-1/manifest.json", datetime(2026, 10, 2, tzinfo=UTC))
    rows = [("c-0001", 3, 40), ("c-0002", 0, 0)]
    assert w.replace_usage_day(date(2026, 10, 1), rows, lineage, checksum="abc", quarantined=1, version="v1") == "staged"
    crm = [("c-0001", "Acme", "DE", "saas", datetime(2026, 9, 30, 12, 0)), ("c-0002", None, None, None, None)]
    assert w.replace_crm_snapshot(date(2026, 10, 1), crm, lineage, checksum="def", version="v1") == "staged"
    params = BuildParams("run-1", churn_min_rolling_users=10, churn_max_contact_age_days=30, crm_max_snapshot_age_days=7)
    assert w.build_days([date(2026, 10, 1), date(2026, 10, 2)], params).days == []
    list(w.fetch_rows("summary_days"))
    w.close()
    print("ok")
    """
)


def driver_installed() -> bool:
    try:
        listing = subprocess.run(["odbcinst", "-q", "-d"], capture_output=True, text=True, timeout=10).stdout
    except (FileNotFoundError, subprocess.TimeoutExpired):
        return False
    return "SQLite3" in listing


@pytest.fixture
def odbc_trace(tmp_path: Path) -> Iterator[tuple[dict[str, str], Path]]:
    if not driver_installed():
        if os.environ.get("CI") == "true":
            pytest.fail(
                "CI=true: unixODBC and the SQLite ODBC driver must be installed (make test does it as root)"
            )
        pytest.skip(
            "unixODBC and the SQLite ODBC driver are not installed (apt-get install unixodbc libsqliteodbc)"
        )
    # unixODBC cuts TraceFile paths at about 60 characters: keep it short, outside tmp_path.
    short = Path(tempfile.mkdtemp(prefix="odbc-", dir="/tmp" if Path("/tmp").is_dir() else None))
    trace = short / "trace.log"
    (tmp_path / "odbcinst.ini").write_text(
        f"[ODBC]\nTrace=Yes\nTraceFile={trace}\n\n[SQLite3]\nDescription=SQLite3\nDriver={DRIVER_SO}\n"
    )
    (tmp_path / "odbc.ini").write_text("")
    yield {**os.environ, "ODBCSYSINI": str(tmp_path), "PYTHONPATH": str(REPO)}, trace
    shutil.rmtree(short, ignore_errors=True)


def bound_parameters(trace: str) -> list[tuple[str, str, str]]:
    """(parameter number, C type, SQL type) of every SQLBindParameter call, in order."""
    entries = re.findall(
        r"SQLBindParameter\.c\]\[\d+\]\s+Entry:.*?Param Number = (\d+).*?C Type = -?\d+ (\w+)\s+"
        r"SQL Type = -?\d+ (\w+)",
        trace,
        flags=re.S,
    )
    return [(n, c, s) for n, c, s in entries]


def test_every_parameter_is_bound_as_the_sql_type_of_its_value(
    odbc_trace: tuple[dict[str, str], Path], tmp_path: Path
) -> None:
    env, trace = odbc_trace
    result = subprocess.run(
        [sys.executable, "-c", SCRIPT, str(tmp_path / "w.sqlite3")],
        env=env,
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0 and result.stdout.strip().endswith("ok"), result.stderr[-2000:]
    bound = bound_parameters(trace.read_text(errors="replace"))
    assert len(bound) > 20, "the trace recorded no parameter bindings"
    wrong = [(n, c, s) for n, c, s in bound if s not in COMPATIBLE.get(c, {s})]
    assert not wrong, f"{len(wrong)} of {len(bound)} parameters bound as another SQL type, e.g. {wrong[:4]}"
