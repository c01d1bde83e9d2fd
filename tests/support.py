"""What tests share that is not a fixture: the repository's paths, the golden case, one API key
and day, record makers, and readers for what a run leaves behind. Import from here; the
fixtures are in tests/conftest.py, which pytest loads on its own.

The golden case lives in the repository (`tests/data/golden/`, a verbatim copy of the
project's upstream golden world); every test reaches it through `GOLDEN` (the `golden`
fixture is the same object), never by a path of its own.
"""

from __future__ import annotations

import json
import os
import sqlite3
import threading
import time
from collections.abc import Callable
from contextlib import closing
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

import duckdb
import pytest

from shared.adapters.bus_in_process import InProcessBus
from shared.domain import names
from shared.local.simulator import UsageApiSimulator
from shared.ports import Services

REPO = Path(__file__).resolve().parents[1]
# Where the upstream contract and golden case sit in a developer's workspace (spec/contract.md,
# golden/), if anywhere: the copies in docs/ and tests/data/ are compared with them when present.
# A user's clone has none and needs none.
UPSTREAM = Path(os.environ.get("COMPANY_ACTIVITY_UPSTREAM") or REPO.parent / "shared")
# One key for every test: distinctive, so a leak into any message or file is easy to spot.
API_KEY = "sk-test-7f3a9c1d5e"
# The day the fetch and client tests ask for.
DAY = date(2026, 11, 20)
ISO = DAY.isoformat()


@dataclass(frozen=True)
class GoldenCase:
    """Ten days of API answers, eight CRM drops, and the analytics table they must give."""

    root: Path

    @property
    def expected_csv(self) -> Path:
        return self.root / "expected_company_daily_activity.csv"

    def records(self) -> dict[str, list[dict[str, Any]]]:
        """What the API returns, by ISO date."""
        if not self.expected_csv.is_file():
            pytest.fail(f"golden case not found at {self.root}")
        return {
            p.stem.split("_", 1)[1]: json.loads(p.read_text())
            for p in sorted((self.root / "api").glob("*.json"))
        }

    def crm_files(self) -> list[Path]:
        return sorted((self.root / "crm").glob("*.csv"))


GOLDEN = GoldenCase(REPO / "tests" / "data" / "golden")


def make_records(n: int, day: str = ISO) -> list[dict[str, Any]]:
    """`n` valid usage records for `day`, company ids c-0001.."""
    return [
        {"company_id": f"c-{i:04d}", "date": day, "active_users": i % 13, "events": i * 7}
        for i in range(1, n + 1)
    ]


# --- what a run leaves behind -------------------------------------------------------------


def child_environment(data_dir: Path, api: UsageApiSimulator) -> dict[str, str]:
    """The environment of a `python -m shared.cli` (or driver) process a test starts: LOCAL_DATA_DIR
    `data_dir`, against the `api` simulator, fast backoff."""
    return {
        **os.environ,
        "PYTHONPATH": str(REPO),
        "LOCAL_DATA_DIR": str(data_dir),
        "USAGE_API_BASE_URL": api.base_url,
        "USAGE_API_KEY": API_KEY,
        "USAGE_API_PAGE_SIZE": "10",
        "USAGE_API_TIMEOUT_S": "20",
        "USAGE_API_BACKOFF_BASE_S": "0.01",
    }


def ledger_rows(data_dir: Path, sql: str) -> list[tuple[Any, ...]]:
    """The rows of `sql` on the local ledger of `data_dir`, opened read-only: read beside a
    process writing it (WAL readers may). sqlite3.OperationalError when it cannot be read."""
    with closing(
        sqlite3.connect(f"{(data_dir / 'ledger.sqlite3').as_uri()}?mode=ro", uri=True, timeout=5)
    ) as con:
        return con.execute(sql).fetchall()


def one_error_line(err: str) -> str:
    """A command's stderr that is one line and no traceback, that line (or the test fails)."""
    assert "Traceback" not in err
    lines = [line for line in err.splitlines() if line.strip()]
    assert len(lines) == 1, err
    return lines[0]


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


# A test that names today and runs code reading the clock itself must not straddle midnight UTC:
# the two would name different days. A test takes seconds; this leaves minutes.
MIDNIGHT_MARGIN = timedelta(minutes=2)


def utc_day_that_lasts(
    now: Callable[[], datetime] = lambda: datetime.now(UTC),
    sleep: Callable[[float], None] = time.sleep,
) -> date:
    """Today's UTC date, if it lasts MIDNIGHT_MARGIN more; else tomorrow's, once midnight passed."""
    while (left := _to_midnight(now())) < MIDNIGHT_MARGIN:
        sleep(left.total_seconds() + 0.01)  # until the day turns, not a guess at it
    return now().date()


def _to_midnight(moment: datetime) -> timedelta:
    return datetime.combine(moment.date() + timedelta(days=1), datetime.min.time(), UTC) - moment


def day(text: str) -> date:
    return date.fromisoformat(text)


def page_bytes(api: UsageApiSimulator, page: int, page_size: int) -> bytes:
    """The exact bytes the API sends for a page of DAY (the simulator is deterministic)."""
    import requests

    response = requests.get(
        f"{api.base_url}/v2/usage",
        params={"date": ISO, "page": page, "page_size": page_size},
        headers={"Authorization": f"Bearer {API_KEY}"},
        timeout=5,
    )
    assert response.status_code == 200
    return response.content


def fetch_state(services: Services, iso: str = ISO) -> dict[str, Any]:
    """The ledger's fetch entry of a day."""
    entry = services.ledger.get("fetch", iso)
    assert entry is not None
    return dict(entry.data)


def in_process_bus(services: Services) -> InProcessBus:
    """The services' bus as the in-process bus it is locally, to look into its queues."""
    bus = services.bus
    assert isinstance(bus, InProcessBus), f"not the in-process bus: {type(bus).__name__}"
    return bus


def queued_alerts(services: Services) -> list[dict[str, Any]]:
    """Alert bodies waiting on the in-process bus's `alerts` queue."""
    return [e.json() for e in in_process_bus(services).waiting(names.ALERTS_QUEUE)]


# --- the warehouse on SQL Server (only where MSSQL_TEST_CONNECTION_STRING is set) ---------

MSSQL = os.environ.get("MSSQL_TEST_CONNECTION_STRING", "")
# An administrator (sa) without a database: for the tests that make their own (schema upgrades).
MSSQL_ADMIN = os.environ.get("MSSQL_ADMIN_CONNECTION_STRING", "")
WAREHOUSE_TABLES = (
    "analytics.company_daily_activity",
    "stg.product_usage_daily",
    "stg.usage_dataset",
    "stg.usage_unknown",
    "stg.crm_company_snapshot",
    "stg.crm_snapshot",
)


def require_mssql() -> None:
    """Skip without a SQL Server, except where MSSQL_REQUIRED=true (the sqlserver CI job)."""
    if not MSSQL:
        if os.environ.get("MSSQL_REQUIRED") == "true":
            pytest.fail("MSSQL_REQUIRED=true but MSSQL_TEST_CONNECTION_STRING is not set")
        pytest.skip("MSSQL_TEST_CONNECTION_STRING not set (the sqlserver CI job sets it)")


def empty_mssql_tables() -> None:
    import pyodbc

    with pyodbc.connect(MSSQL, autocommit=True) as connection:
        for table in WAREHOUSE_TABLES:
            connection.execute(f"DELETE FROM {table}")  # noqa: S608 - fixed names


def build_concurrently(services: Services) -> list[BaseException]:
    """Transforms of every golden day at once, two per day on eight threads (each marks its day,
    one of them holds the build lease at a time); the errors they raised."""
    from shared.domain.transform_plan import TransformRequest
    from shared.services.transform import run_transform

    errors: list[BaseException] = []
    days = [f"2026-10-{n:02d}" for n in range(1, 11)] * 2
    lock = threading.Lock()

    def build() -> None:
        while True:
            with lock:
                if not days:
                    return
                on = days.pop()
            try:
                run_transform(
                    services, TransformRequest.from_json({"kind": "day", "date": on, "run_id": "t"})
                )
            except BaseException as exc:
                errors.append(exc)

    threads = [threading.Thread(target=build) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return errors
