"""Shared fixtures: the golden world, an API simulator, and a local pipeline in a temp folder."""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Iterator
from datetime import date
from pathlib import Path
from typing import Any

import duckdb
import pytest

from shared.simulator import UsageApiSimulator

REPO = Path(__file__).resolve().parents[1]
GOLDEN = Path(os.environ.get("GOLDEN_DIR", REPO.parent / "shared" / "golden"))
API_KEY = "test-key-5f0c2a"


def golden_records() -> dict[str, list[dict[str, Any]]]:
    if not GOLDEN.is_dir():
        pytest.fail(f"golden case not found at {GOLDEN} (set GOLDEN_DIR)")
    return {
        p.stem.split("_", 1)[1]: json.loads(p.read_text()) for p in sorted((GOLDEN / "api").glob("*.json"))
    }


def golden_crm_files() -> list[Path]:
    return sorted((GOLDEN / "crm").glob("*.csv"))


@pytest.fixture
def api_records() -> dict[str, list[dict[str, Any]]]:
    """What the simulator serves, by ISO date; tests may change it between runs."""
    return golden_records()


@pytest.fixture
def api(api_records: dict[str, list[dict[str, Any]]]) -> Iterator[UsageApiSimulator]:
    with UsageApiSimulator(lambda d: list(api_records.get(d.isoformat(), [])), api_key=API_KEY) as simulator:
        yield simulator


@pytest.fixture
def local_env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, api: UsageApiSimulator) -> Path:
    """Settings for a local run against the simulator; returns LOCAL_DATA_DIR."""
    data_dir = tmp_path / "local"
    for name, value in {
        "USAGE_API_BASE_URL": api.base_url,
        "USAGE_API_KEY": API_KEY,
        "USAGE_API_PAGE_SIZE": "10",
        "USAGE_API_BACKOFF_BASE_S": "0.01",
        "USAGE_API_BACKOFF_MAX_S": "0.05",
        "USAGE_API_TIMEOUT_S": "5",
        "LOCAL_DATA_DIR": str(data_dir),
    }.items():
        monkeypatch.setenv(name, value)
    monkeypatch.delenv("ALERT_WEBHOOK_URL", raising=False)
    return data_dir


def read_table(
    data_dir: Path,
    sql: str = "SELECT * FROM analytics.company_daily_activity ORDER BY activity_date, company_id",
) -> list[dict[str, Any]]:
    with duckdb.connect(str(data_dir / "warehouse.duckdb"), read_only=True) as con:
        result = con.execute(sql)
        columns = [d[0] for d in result.description]
        return [dict(zip(columns, row, strict=True)) for row in result.fetchall()]


def read_alerts(data_dir: Path) -> list[dict[str, Any]]:
    path = data_dir / "alerts.jsonl"
    return [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []


@pytest.fixture
def cli(local_env: Path, capsys: pytest.CaptureFixture[str]) -> Callable[..., tuple[int, str, str]]:
    """Run `python -m shared.cli ...` in-process; returns (exit status, stdout, stderr)."""
    from shared.cli import main

    def run(*args: str) -> tuple[int, str, str]:
        code = main(list(args))
        out, err = capsys.readouterr()
        return code, out, err

    return run


def day(text: str) -> date:
    return date.fromisoformat(text)
