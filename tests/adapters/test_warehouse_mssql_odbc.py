"""The Azure SQL adapter's pyodbc calls through a real ODBC driver manager and driver.

SQL Server and Microsoft's driver cannot run here, but unixODBC and Debian's SQLite ODBC
driver can, and what broke every load on Azure SQL happened before any T-SQL ran: how pyodbc
bound each parameter. So the adapter runs here exactly as on Azure (its connection, cursors,
input sizes, bulk load and batches), with each T-SQL batch swapped for a SQLite statement
that takes the same parameters in the same order; unixODBC's trace records every
SQLBindParameter call, and each parameter's SQL type must match the value it carries.

The same run checks that the app never sends DDL (contract section 8: its database user may
read and write rows only): each swapped batch carries a comment naming its T-SQL file, so the
trace says which batches the stage, build, read and probe paths sent, and none of them, nor any
statement the adapter writes itself, may create, alter or drop anything but a #temp table.

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

from shared.adapters.sql_files import SQL_ROOT
from shared.adapters.warehouse_sql import SCHEMA_VERSIONS
from tests.support import REPO

SCHEMA_VERSION = SCHEMA_VERSIONS["mssql"]  # the Azure SQL schema's

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
    import re
    import sys
    from datetime import UTC, date, datetime

    import pyodbc

    from shared.adapters import warehouse_mssql
    from shared.ports import BuildParams, Lineage, SchemaVersionMismatch

    tsql_batch = warehouse_mssql.sql_file
    db, recorded = sys.argv[1], int(sys.argv[2])

    def sqlite_batch(name):
        # The same parameters, in the same order, as sql/mssql/<name>.sql declares them; no rows.
        # The comment names the T-SQL file the statement stands for (the trace shows it).
        text, names = tsql_batch(name)
        if name == "schema_version":  # what the database recorded: argv[2]
            return f"/* sql/mssql/{name}.sql */ SELECT {recorded} AS version", names
        if name == "probe_tables":  # one column per table, as the T-SQL's
            columns = ", ".join(f"0 AS {c}" for c in re.findall(r"END AS (\\w+)", text))
            return f"/* sql/mssql/{name}.sql */ SELECT {columns}", names
        markers = ", ".join("?" for _ in names) or "1"
        return f"/* sql/mssql/{name}.sql */ SELECT {markers} WHERE 1 = 0", names

    class OnSqlite(warehouse_mssql.MssqlWarehouse):
        temp_prefix = "temp_"  # SQLite has no #temp tables

    warehouse_mssql.sql_file = sqlite_batch
    w = OnSqlite(lambda: pyodbc.connect(f"Driver={{SQLite3}};Database={db}", autocommit=False),
                 fast_executemany=False, attempts=1)  # the SQLite driver crashes on parameter arrays
    lineage = Lineage("run-1", "usage/2026-10-01/run-1/manifest.json", datetime(2026, 10, 2, tzinfo=UTC))
    rows = [("c-0001", 3, 40), ("c-0002", 0, 0)]
    try:
        assert w.replace_usage_day(date(2026, 10, 1), rows, lineage, checksum="abc", quarantined=1, version="v1") == "staged"
    except SchemaVersionMismatch as exc:
        print(f"refused: {exc}")
        sys.exit(3)
    crm = [("c-0001", "Acme", "DE", "saas", datetime(2026, 9, 30, 12, 0)), ("c-0002", None, None, None, None)]
    assert w.replace_crm_snapshot(date(2026, 10, 1), crm, lineage, checksum="def", version="v1") == "staged"
    params = BuildParams("run-1", churn_min_rolling_users=10, churn_max_contact_age_days=30, crm_max_snapshot_age_days=7)
    assert w.build_days([date(2026, 10, 1), date(2026, 10, 2)], params).days == []
    list(w.fetch_rows("summary_days"))
    print(f"probe: {w.probe()}")
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


def run_adapter(
    odbc_trace: tuple[dict[str, str], Path], tmp_path: Path, recorded: int = SCHEMA_VERSION
) -> tuple[subprocess.CompletedProcess[str], str]:
    """The adapter's stage, build, read and probe paths on SQLite through pyodbc, with the
    database answering `recorded` as its schema version; the run and the ODBC trace."""
    env, trace = odbc_trace
    result = subprocess.run(
        [sys.executable, "-c", SCRIPT, str(tmp_path / "w.sqlite3"), str(recorded)],
        env=env,
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=120,
    )
    return result, trace.read_text(errors="replace") if trace.exists() else ""


def test_every_parameter_is_bound_as_the_sql_type_of_its_value(
    odbc_trace: tuple[dict[str, str], Path], tmp_path: Path
) -> None:
    result, trace = run_adapter(odbc_trace, tmp_path)
    assert result.returncode == 0 and result.stdout.strip().endswith("ok"), result.stderr[-2000:]
    bound = bound_parameters(trace)
    assert len(bound) > 20, "the trace recorded no parameter bindings"
    wrong = [(n, c, s) for n, c, s in bound if s not in COMPATIBLE.get(c, {s})]
    assert not wrong, f"{len(wrong)} of {len(bound)} parameters bound as another SQL type, e.g. {wrong[:4]}"


# --- the app never sends DDL -----------------------------------------------------------------

SENT = re.compile(
    r"SQL(?:ExecDirect|Prepare)W?\.c\]\[\d+\]\s+Entry:\s+Statement = \S+\s+SQL = \[(.*?)\]\[length = \d+\]",
    re.S,
)
BATCH = re.compile(r"^/\* sql/mssql/(\w+)\.sql \*/")
OBJECT = r"(\[?[#@\w]+\]?(?:\.\[?\w+\]?)*)"
DDL = re.compile(
    r"\b(CREATE|ALTER|DROP)\s+(?:OR\s+ALTER\s+)?(?:UNIQUE\s+)?(?:(?:NON)?CLUSTERED\s+)?(?:COLUMNSTORE\s+)?"
    r"(TABLE|VIEW|INDEX|SCHEMA|PROC|PROCEDURE|FUNCTION|TRIGGER|TYPE|SEQUENCE|SYNONYM|STATISTICS"
    r"|USER|ROLE|LOGIN|DATABASE)\s+(?:IF\s+(?:NOT\s+)?EXISTS\s+)?" + OBJECT + r"(?:\s+ON\s+" + OBJECT + r")?",
    re.IGNORECASE,
)
OTHER_DDL = re.compile(r"\b(?:TRUNCATE\s+TABLE|SELECT\b[^;]*?\bINTO)\s+" + OBJECT, re.IGNORECASE | re.S)
RIG_TEMP_PREFIX = "temp_"  # the rig's stand-in for '#' (SQLite has no #temp tables)


def sent_batches(trace: str) -> list[tuple[str, str]]:
    """(what it was, its T-SQL) for every statement pyodbc sent: a swapped batch stands for
    its file in sql/mssql/, any other statement (the adapter's bulk-load DDL and inserts) is
    itself, with the rig's temp prefix read as the '#' it stands for."""
    sent = []
    for statement in SENT.findall(trace):
        batch = BATCH.match(statement)
        if batch:
            sent.append((f"sql/mssql/{batch[1]}.sql", (SQL_ROOT / "mssql" / f"{batch[1]}.sql").read_text()))
        else:
            sent.append((statement[:60], re.sub(rf"\b{RIG_TEMP_PREFIX}(?=\w)", "#", statement)))
    return sent


def ddl_on_real_objects(sql: str) -> list[str]:
    """CREATE / ALTER / DROP (and TRUNCATE, SELECT ... INTO) of anything but a #temp table, in
    the text as sent: the inside of an sp_executesql string counts too."""
    code = re.sub(r"--[^\n]*", "", sql)
    found = []
    for match in DDL.finditer(code):
        verb, kind, name, on = match.groups()
        target = on if kind.upper() == "INDEX" and on else name
        if not target.strip("[").startswith("#"):
            found.append(f"{verb} {kind} {target}".upper())
    for match in OTHER_DDL.finditer(code):
        if not match[1].strip("[").startswith(("#", "@")):
            found.append(" ".join([*match[0].split()[:1], match[1]]).upper())
    return found


def test_the_ddl_check_sees_the_schema_and_lets_temp_tables_through() -> None:
    """The check itself: it finds every kind of DDL schema.sql holds, and none in the batches
    that only use #temp tables."""
    schema = ddl_on_real_objects((SQL_ROOT / "mssql" / "schema.sql").read_text())
    assert "CREATE TABLE STG.PRODUCT_USAGE_DAILY" in schema
    assert "CREATE VIEW ANALYTICS.COMPANY_WEEKLY_ACTIVITY" in schema  # inside sp_executesql
    assert "CREATE INDEX ANALYTICS.COMPANY_DAILY_ACTIVITY" in schema
    assert "CREATE SCHEMA STG" in schema
    upgrade = "IF COL_LENGTH(N'stg.x', N'y') IS NULL ALTER TABLE stg.x ADD y INT NULL;"
    assert ddl_on_real_objects(upgrade) == ["ALTER TABLE STG.X"]
    assert ddl_on_real_objects("TRUNCATE TABLE stg.x; SELECT a INTO dbo.copy FROM stg.x;") == [
        "TRUNCATE STG.X",
        "SELECT DBO.COPY",
    ]
    for name in ("build_days", "stage_usage_day", "stage_crm_snapshot"):
        assert ddl_on_real_objects((SQL_ROOT / "mssql" / f"{name}.sql").read_text()) == [], name
    assert (
        ddl_on_real_objects("DROP TABLE IF EXISTS #incoming_usage; CREATE TABLE #incoming_usage (a INT)")
        == []
    )


def test_the_app_sends_no_ddl_on_a_real_object(
    odbc_trace: tuple[dict[str, str], Path], tmp_path: Path
) -> None:
    """Stage (usage and CRM), build, read and probe through real pyodbc: every batch the app
    sends may only read and write rows, its own #temp tables aside. The schema is applied by
    init-db and the post-provision hook with an administrator's rights, never by the app."""
    result, trace = run_adapter(odbc_trace, tmp_path)
    sent = sent_batches(trace)
    ddl = {what: found for what, sql in sent if (found := ddl_on_real_objects(sql))}
    assert not ddl, f"the app sent DDL, which its database user may not run: {ddl}"
    assert result.returncode == 0 and result.stdout.strip().endswith("ok"), result.stderr[-2000:]
    files = {what for what, _ in sent}
    paths = {
        "stage_usage_day",
        "stage_crm_snapshot",
        "build_days",
        "summary_days",
        "schema_version",
        "probe_tables",
    }
    assert {f"sql/mssql/{name}.sql" for name in paths} <= files, files
    assert sum(what == "sql/mssql/schema_version.sql" for what, _ in sent) == 2  # first work, probe
    assert f"probe: schema {SCHEMA_VERSION}, 7 tables read (0 hold rows)" in result.stdout


def test_another_schema_version_fails_the_first_sql_work_in_one_line(
    odbc_trace: tuple[dict[str, str], Path], tmp_path: Path
) -> None:
    result, trace = run_adapter(odbc_trace, tmp_path, recorded=SCHEMA_VERSION - 1)
    assert result.returncode == 3, result.stderr[-2000:]
    line = result.stdout.strip()
    assert line == (
        f"refused: the Azure SQL database has schema version {SCHEMA_VERSION - 1}, this app needs schema"
        f" version {SCHEMA_VERSION}: apply the schema with `azd provision` (or `python -m shared.cli"
        " init-db` as the database's administrator)"
    )
    assert [what for what, _ in sent_batches(trace)] == ["sql/mssql/schema_version.sql"]  # nothing else
