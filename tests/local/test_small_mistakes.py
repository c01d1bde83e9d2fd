"""Issue 21, item 7: a full disk, a name used both ways, two rebuilds in one second."""

from __future__ import annotations

import sqlite3
from collections.abc import Callable
from datetime import date
from pathlib import Path
from typing import Any

import duckdb
import pytest

from shared.adapters.ledger_sqlite import SqliteLedger
from shared.adapters.warehouse_sql import SqlWarehouse
from shared.domain import names
from shared.local.pipeline import LocalPipeline
from shared.ports import BuildParams, BuildResult
from tests.support import GOLDEN, one_error_line

DAYS = sorted(GOLDEN.records())
SNAPSHOT = GOLDEN.root / "crm" / "companies_2026-10-01.csv"


def _one_line(err: str) -> str:
    assert "Logging error" not in err, err
    return one_error_line(err)


def test_a_full_disk_while_staging_is_one_line(
    cli: Callable[..., tuple[int, str, str]], monkeypatch: pytest.MonkeyPatch
) -> None:
    real = SqliteLedger.put

    def full(self: SqliteLedger, partition: str, key: str, data: Any, **kw: Any) -> Any:
        if partition == names.CRM:
            raise sqlite3.OperationalError("database or disk is full")
        return real(self, partition, key, data, **kw)

    monkeypatch.setattr(SqliteLedger, "put", full)
    code, out, err = cli("crm-drop", str(SNAPSHOT))
    line = _one_line(err)
    assert code == 1 and line.startswith("error: the disk holding") and "details in" not in line, (out, err)


def test_a_full_disk_while_building_is_one_line(
    cli: Callable[..., tuple[int, str, str]], monkeypatch: pytest.MonkeyPatch
) -> None:
    for path in GOLDEN.crm_files():
        assert cli("crm-drop", str(path))[0] == 0

    real = SqlWarehouse.build_days

    def full(self: SqlWarehouse, days: list[date], params: BuildParams) -> BuildResult:
        raise duckdb.IOException(
            'IO Error: Could not write file "warehouse.duckdb.wal": No space left on device'
        )

    monkeypatch.setattr(SqlWarehouse, "build_days", full)
    code, out, err = cli("run", "--date", DAYS[0])
    line = _one_line(err)
    assert code == 1 and line.startswith("error: the disk holding") and "No space left" in line, (out, err)
    monkeypatch.setattr(SqlWarehouse, "build_days", real)
    code, out, err = cli("run", "--date", DAYS[0])  # room again: the kept message builds the day
    assert code == 0 and "built" in out, (out, err)


def test_a_name_used_as_a_file_and_as_a_folder_is_one_line(
    cli: Callable[..., tuple[int, str, str]], tmp_path: Path
) -> None:
    first = tmp_path / "x.csv"
    first.write_bytes(SNAPSHOT.read_bytes())
    assert cli("crm-drop", str(first))[0] == 0
    code, out, err = cli("crm-drop", str(SNAPSHOT), "--name", "x.csv/y_2026-10-01.csv")
    line = _one_line(err)
    assert code == 1 and "give --name another name" in line, (out, err)


def test_two_rebuilds_in_one_second_are_both_delivered(pipeline: LocalPipeline) -> None:
    for path in GOLDEN.crm_files():
        pipeline.drop_crm(path.read_bytes(), path.name)
    pipeline.replay({"date": DAYS[0]})
    first = pipeline.rebuild("rebuild-20261207T101010")
    second = pipeline.rebuild("rebuild-20261207T101010")
    assert first.handled.get(names.TRANSFORM_QUEUE) == second.handled.get(names.TRANSFORM_QUEUE) == 1
