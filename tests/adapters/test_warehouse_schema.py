"""The local warehouse's schema and its version (contract section 8).

The app keeps the DuckDB file it made itself at the current schema, and records the version
there as on Azure SQL; a file it did not make, or one opened read-only, is never changed, and a
version other than the app's fails the first SQL work with one line. Upgrades keep every row.
"""

from __future__ import annotations

import subprocess
import sys
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, date, datetime
from pathlib import Path

import duckdb
import pytest

from shared.adapters.warehouse_duckdb import DuckDbWarehouse
from shared.adapters.warehouse_sql import SCHEMA_VERSIONS
from shared.ports import Lineage, SchemaVersionMismatch
from tests.support import REPO

SCHEMA_VERSION = SCHEMA_VERSIONS["duckdb"]  # the DuckDB schema's

V0 = (REPO / "tests" / "data" / "schema_v0" / "duckdb.sql").read_text(encoding="utf-8")
V1 = (REPO / "tests" / "data" / "schema_v1" / "duckdb.sql").read_text(encoding="utf-8")
LINEAGE = Lineage("run-1", "source.json", datetime(2026, 10, 2, tzinfo=UTC))
OLD_APP_COMMENT = "Company Activity schema 0123456789abcdef"  # what an app before versions wrote
ROW = (
    "INSERT INTO analytics.company_daily_activity (company_id, activity_date, crm_snapshot_date,"
    " active_users, events, rolling_7d_active_users, rolling_7d_events, usage_days_observed_7d,"
    " is_churn_risk, pipeline_run_id, loaded_at)"
    " VALUES ('c-1', DATE '2026-10-01', DATE '2026-10-01', 3, 40, 3, 40, 1, false, 'r', TIMESTAMP '2026-10-02')"
)


def version_zero_file(path: Path, *, made_by_the_app: bool) -> None:
    """A warehouse as schema version 0 left it, one row in it; with the fingerprint comment
    every earlier version of the app wrote, or without (someone else's file)."""
    with duckdb.connect(str(path)) as con:
        con.execute(V0)
        con.execute(ROW)
        if made_by_the_app:
            con.execute(f"COMMENT ON TABLE analytics.company_daily_activity IS '{OLD_APP_COMMENT}'")


def tables(path: Path) -> set[str]:
    with duckdb.connect(str(path), read_only=True) as con:
        return {
            f"{s}.{t}"
            for s, t in con.execute("SELECT schema_name, table_name FROM duckdb_tables()").fetchall()
        }


def recorded(path: Path) -> list[tuple[int]]:
    with duckdb.connect(str(path), read_only=True) as con:
        return con.execute("SELECT version FROM analytics.schema_version").fetchall()


def test_a_new_file_gets_the_schema_and_its_version(tmp_path: Path) -> None:
    warehouse = DuckDbWarehouse(tmp_path / "w.duckdb")
    assert list(warehouse.fetch_rows("company_daily_activity")) == []  # the first SQL work
    warehouse.close()
    assert recorded(tmp_path / "w.duckdb") == [(SCHEMA_VERSION,)]


def test_a_file_an_earlier_app_made_is_upgraded_without_losing_rows(tmp_path: Path) -> None:
    path = tmp_path / "w.duckdb"
    version_zero_file(path, made_by_the_app=True)
    warehouse = DuckDbWarehouse(path)
    assert [r["company_id"] for r in warehouse.fetch_rows("company_daily_activity")] == ["c-1"]
    warehouse.close()
    assert recorded(path) == [(SCHEMA_VERSION,)]
    again = DuckDbWarehouse(path)  # applying it again changes nothing
    again.apply_schema()
    assert [r["company_id"] for r in again.fetch_rows("company_daily_activity")] == ["c-1"]
    again.close()
    assert recorded(path) == [(SCHEMA_VERSION,)]


USAGE = "stg.product_usage_daily"
V1_ROWS = (
    "INSERT INTO analytics.company_daily_activity VALUES"
    " ('c-2', DATE '2026-10-02', 'Beta', 'FR', 'saas', TIMESTAMP '2026-09-30 18:00', DATE '2026-10-01',"
    "  NULL, NULL, NULL, 4, 41, 2, 1, 2, NULL, 'r2', TIMESTAMP '2026-10-03'),"
    " ('c-1', DATE '2026-10-02', NULL, NULL, NULL, NULL, DATE '2026-10-01',"
    "  5, 60, 12.0, 5, 60, 2, 0, NULL, true, 'r2', TIMESTAMP '2026-10-03'),"
    " ('c-1', DATE '2026-10-01', 'Acme', 'DE', NULL, TIMESTAMP '2026-09-01', DATE '2026-10-01',"
    "  3, 40, 13.3333, 3, 40, 1, 0, 30, false, 'r1', TIMESTAMP '2026-10-02')"
)


def version_one_file(path: Path) -> None:
    """A warehouse as schema version 1 left it (its schema.sql, kept in tests/data/schema_v1/),
    with rows: its analytics table has a primary key."""
    with duckdb.connect(str(path)) as con:
        con.execute(V1)
        con.execute(V1_ROWS)
        con.execute(
            "INSERT INTO stg.usage_dataset VALUES (DATE '2026-10-01', 1, 0, 'c', 'v', 'r', 'b', now())"
        )
        con.execute(
            "INSERT INTO stg.product_usage_daily VALUES ('c-1', DATE '2026-10-01', 3, 40, 'r1', 'b', now()),"
            " ('c-1', DATE '2026-10-02', 5, 60, 'r2', 'b', now())"
        )
        con.execute(f"COMMENT ON TABLE analytics.company_daily_activity IS '{OLD_APP_COMMENT}'")


def table_state(path: Path, name: str = "analytics.company_daily_activity") -> tuple[list, list, list]:
    """A table's columns (name, type, NOT NULL), its rows in key order, its constraints' kinds."""
    schema, table = name.split(".")
    with duckdb.connect(str(path), read_only=True) as con:
        where = f"schema_name = '{schema}' AND table_name = '{table}'"
        columns = con.execute(
            f"SELECT column_name, data_type, is_nullable FROM duckdb_columns() WHERE {where} ORDER BY column_index"  # noqa: S608
        ).fetchall()
        rows = con.execute(f"SELECT * FROM {name} ORDER BY activity_date, company_id").fetchall()  # noqa: S608
        constraints = f"SELECT constraint_type FROM duckdb_constraints() WHERE {where}"  # noqa: S608
        kinds = [k for (k,) in con.execute(constraints).fetchall()]
        return columns, rows, kinds


def test_a_version_one_file_loses_two_keys_and_keeps_every_row(tmp_path: Path) -> None:
    """Version 2 (DuckDB only): the analytics table and the staged usage without their primary
    keys. A file the app made at version 1 is upgraded on its next use, in one transaction: the
    same columns, types and NOT NULLs as a new file's, every row as it was, the views reading
    it; the other tables keep their keys."""
    path, fresh = tmp_path / "w.duckdb", tmp_path / "new.duckdb"
    version_one_file(path)
    _columns, rows, kinds = table_state(path)
    _columns, staged, staged_kinds = table_state(path, USAGE)
    assert "PRIMARY KEY" in kinds and "PRIMARY KEY" in staged_kinds and recorded(path) == [(1,)]
    new = DuckDbWarehouse(fresh)
    new.apply_schema()
    new.close()
    warehouse = DuckDbWarehouse(path)
    assert len(list(warehouse.fetch_rows("company_daily_activity"))) == 3  # the first SQL work
    assert [r["days_built"] for r in warehouse.fetch_rows("report_weekly_trend")] != []
    warehouse.close()
    assert recorded(path) == [(SCHEMA_VERSION,)] == [(2,)]
    upgraded, upgraded_usage = table_state(path), table_state(path, USAGE)
    assert upgraded == (table_state(fresh)[0], rows, upgraded[2])
    assert "PRIMARY KEY" not in upgraded[2] and upgraded[2].count("NOT NULL") == 9
    assert upgraded_usage == (table_state(fresh, USAGE)[0], staged, ["NOT NULL"] * 7)
    assert tables(path) == tables(fresh)  # the keyed copy is gone
    with duckdb.connect(str(path), read_only=True) as con:
        assert con.execute("SELECT count(*) FROM stg.usage_dataset").fetchall() == [(1,)]
        keyed = con.execute("SELECT count(*) FROM duckdb_constraints() WHERE constraint_type = 'PRIMARY KEY'")
        assert keyed.fetchall() == [(4,)]  # the other staging tables'
    again = DuckDbWarehouse(path)  # applying it again changes nothing
    again.apply_schema()
    again.close()
    assert (table_state(path), table_state(path, USAGE)) == (upgraded, upgraded_usage)


def test_an_index_a_user_made_on_a_version_one_table_survives_the_upgrade(tmp_path: Path) -> None:
    """DuckDB refuses to rename a table an index depends on: a dashboard's index on either table
    made every command fail with `DependencyException` (whole-change review). It is made again."""
    path = tmp_path / "w.duckdb"
    version_one_file(path)
    with duckdb.connect(str(path)) as con:
        con.execute("CREATE INDEX by_company ON analytics.company_daily_activity (company_id)")
        con.execute("CREATE INDEX by_day ON stg.product_usage_daily (activity_date)")
    _columns, rows, _kinds = table_state(path)
    warehouse = DuckDbWarehouse(path)
    assert len(list(warehouse.fetch_rows("company_daily_activity"))) == 3
    warehouse.close()
    assert recorded(path) == [(2,)] and table_state(path)[1] == rows
    with duckdb.connect(str(path), read_only=True) as con:
        found = con.execute("SELECT index_name, table_name FROM duckdb_indexes() ORDER BY 1").fetchall()
    assert found == [("by_company", "company_daily_activity"), ("by_day", "product_usage_daily")]


def test_an_index_on_a_column_the_upgrade_retypes_is_named_and_nothing_changes(tmp_path: Path) -> None:
    """DuckDB keeps a column's type change blocked by an index dropped in the same transaction
    (final review: every write failed with a CatalogException, and init-db too). One line names
    the index; the file stays at version 1 with its rows and the index. A quoted name works."""
    path = tmp_path / "w.duckdb"
    version_one_file(path)
    with duckdb.connect(str(path)) as con:
        con.execute('CREATE INDEX "dash""idx" ON analytics.company_daily_activity (rolling_7d_active_users)')
    _columns, rows, _kinds = table_state(path)
    warehouse = DuckDbWarehouse(path)
    with pytest.raises(
        SchemaVersionMismatch, match=r'the index analytics\.dash"idx blocks the upgrade'
    ) as said:
        warehouse.apply_schema()
    warehouse.close()
    assert "drop it, run `python -m shared.cli init-db`, then make it again" in str(said.value)
    assert "\n" not in str(said.value)
    assert recorded(path) == [(1,)] and table_state(path)[1] == rows
    with duckdb.connect(str(path), read_only=True) as con:
        assert con.execute("SELECT index_name FROM duckdb_indexes()").fetchall() == [('dash"idx',)]


def test_a_version_one_file_opened_read_only_is_refused_and_kept(tmp_path: Path) -> None:
    path = tmp_path / "w.duckdb"
    version_one_file(path)
    reader = DuckDbWarehouse(path, read_only=True)
    with pytest.raises(SchemaVersionMismatch) as refused:
        list(reader.fetch_rows("company_daily_activity"))
    reader.close()
    assert str(refused.value) == (  # the app's own older file: what upgrades it, not a refusal
        f"the warehouse {path} has schema version 1, this app needs schema version 2:"
        " `python -m shared.cli init-db` (or the next `run` or `rebuild`) upgrades it in place, keeping every row"
    )
    assert "PRIMARY KEY" in table_state(path)[2] and recorded(path) == [(1,)]


def test_the_health_probe_of_a_version_one_file_changes_nothing(tmp_path: Path) -> None:
    path = tmp_path / "w.duckdb"
    version_one_file(path)
    before = table_state(path), table_state(path, USAGE), tables(path)
    warehouse = DuckDbWarehouse(path)
    assert warehouse.probe() == "schema 1; the next command that writes upgrades it to schema 2"
    warehouse.close()
    assert (table_state(path), table_state(path, USAGE), tables(path)) == before
    assert recorded(path) == [(1,)]


def big_version_one_file(path: Path, rows: int = 400_000) -> None:
    """A version-1 file whose upgrade copies enough rows to be interrupted mid-way."""
    version_one_file(path)
    with duckdb.connect(str(path)) as con:
        con.execute(
            "INSERT INTO stg.product_usage_daily SELECT 'big-' || i, DATE '2026-01-01', 1, 2, 'r', 'b', now()"
            " FROM range(?) t(i)",
            [rows],
        )


@contextmanager
def interrupted_upgrade(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """Ctrl-C while the upgrade copies the rows, without timing: DuckDB's interrupt() is
    called on the upgrade's session again and again until its copy step ends (an interrupt
    before a statement starts is forgotten by it, one while it runs stops it)."""
    copy_step = DuckDbWarehouse._run_upgrade

    def interrupting(self: DuckDbWarehouse, con: duckdb.DuckDBPyConnection, step: str) -> None:
        if step != "2_copy_keyed_rows":
            return copy_step(self, con, step)
        done = threading.Event()

        def interrupt() -> None:
            while not done.is_set():
                con.interrupt()

        thread = threading.Thread(target=interrupt, daemon=True)
        thread.start()
        try:
            return copy_step(self, con, step)
        finally:
            done.set()
            thread.join()

    monkeypatch.setattr(DuckDbWarehouse, "_run_upgrade", interrupting)
    yield


def test_an_upgrade_interrupted_is_ctrl_c_and_leaves_version_one(tmp_path: Path, monkeypatch) -> None:
    path = tmp_path / "w.duckdb"
    big_version_one_file(path)
    before = table_state(path)
    warehouse = DuckDbWarehouse(path)
    with interrupted_upgrade(monkeypatch), pytest.raises(KeyboardInterrupt):
        warehouse.apply_schema()
    warehouse.close()
    assert table_state(path) == before and recorded(path) == [(1,)]
    with duckdb.connect(str(path), read_only=True) as con:
        assert con.execute("SELECT count(*) FROM stg.product_usage_daily").fetchall() == [(400_002,)]


def test_a_file_the_app_did_not_make_is_never_changed(tmp_path: Path) -> None:
    path = tmp_path / "w.duckdb"
    version_zero_file(path, made_by_the_app=False)
    before = tables(path)
    warehouse = DuckDbWarehouse(path)
    with pytest.raises(SchemaVersionMismatch) as refused:
        list(warehouse.fetch_rows("company_daily_activity"))
    assert str(refused.value) == (
        f"the warehouse {path} has no schema version, this app needs schema version {SCHEMA_VERSION}:"
        " apply the schema with `python -m shared.cli init-db`"
    )
    with pytest.raises(SchemaVersionMismatch):  # staging too, and nothing was written
        warehouse.replace_usage_day(date(2026, 10, 1), [], LINEAGE, checksum="c", quarantined=0, version="v")
    with pytest.raises(SchemaVersionMismatch):
        warehouse.probe()
    warehouse.close()
    assert tables(path) == before and "analytics.schema_version" not in before
    # init-db is a person's command: it applies the schema, keeping the rows.
    person = DuckDbWarehouse(path)
    person.apply_schema()
    person.close()
    assert recorded(path) == [(SCHEMA_VERSION,)]
    with duckdb.connect(str(path), read_only=True) as con:
        assert con.execute("SELECT company_id FROM analytics.company_daily_activity").fetchall() == [("c-1",)]


def test_a_file_opened_read_only_is_never_upgraded(tmp_path: Path) -> None:
    path = tmp_path / "w.duckdb"
    version_zero_file(path, made_by_the_app=True)
    reader = DuckDbWarehouse(path, read_only=True)
    with pytest.raises(SchemaVersionMismatch, match="has no schema version, this app needs"):
        list(reader.fetch_rows("company_daily_activity"))
    reader.close()
    assert "analytics.schema_version" not in tables(path)


def test_a_newer_schema_is_neither_used_nor_downgraded(tmp_path: Path) -> None:
    path = tmp_path / "w.duckdb"
    made = DuckDbWarehouse(path)
    made.apply_schema()
    made.close()
    with duckdb.connect(str(path)) as con:
        con.execute("UPDATE analytics.schema_version SET version = ?", [SCHEMA_VERSION + 1])
    for open_it in (lambda w: list(w.fetch_rows("company_daily_activity")), DuckDbWarehouse.apply_schema):
        warehouse = DuckDbWarehouse(path)
        with pytest.raises(SchemaVersionMismatch) as refused:
            open_it(warehouse)
        warehouse.close()
        assert (
            f"has schema version {SCHEMA_VERSION + 1}, this app needs schema version {SCHEMA_VERSION}"
            in str(refused.value)
        )
        assert "\n" not in str(refused.value)
    assert recorded(path) == [(SCHEMA_VERSION + 1,)]


def test_the_probe_reads_every_table_and_leaves_the_file_closed(tmp_path: Path) -> None:
    path = tmp_path / "w.duckdb"
    warehouse = DuckDbWarehouse(path)
    assert warehouse.probe() == f"no warehouse yet: the first run creates {path}"
    assert not path.exists()
    version_zero_file(path, made_by_the_app=True)  # the probe says it is older, and leaves it so
    assert (
        warehouse.probe()
        == f"no schema version yet; the next command that writes upgrades it to schema {SCHEMA_VERSION}"
    )
    assert warehouse._connection is None
    warehouse.apply_schema()
    warehouse.close()
    assert warehouse.probe() == f"schema {SCHEMA_VERSION}, 7 tables read (2 hold rows)"
    assert warehouse._connection is None  # closed again: another program may open it
    with duckdb.connect(str(path)) as con:  # and nothing holds it
        con.execute("SELECT 1")


def test_the_probe_says_in_one_line_that_another_program_holds_the_file(tmp_path: Path) -> None:
    path = tmp_path / "w.duckdb"
    made = DuckDbWarehouse(path)
    made.apply_schema()
    made.close()
    holder = subprocess.Popen(
        [
            sys.executable,
            "-c",
            f"import duckdb, sys; c = duckdb.connect({str(path)!r}); print('held', flush=True); sys.stdin.read()",
        ],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert holder.stdout is not None and holder.stdout.readline().strip() == "held"
        with pytest.raises(Exception, match="is open in another program") as held:
            DuckDbWarehouse(path).probe()
        assert "\n" not in str(held.value)
    finally:
        holder.communicate("", timeout=30)
