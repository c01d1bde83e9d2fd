"""A count of one reads `1 page`, `1 row`, `1 company`: never `1 pages` (shared.domain.wording).
The many-case texts are pinned elsewhere (tests/local/golden/views.txt)."""

from __future__ import annotations

import signal
import subprocess
import sys
from collections.abc import Callable
from datetime import date
from pathlib import Path
from typing import Any

import pytest

from shared.domain.quality import Coverage, check_coverage, check_snapshot_size
from shared.local.host import DrainReport
from shared.local.pipeline import _progress_line
from shared.local.reconcile_view import reconcile_text
from shared.local.simulator import UsageApiSimulator
from shared.local.status_view import day_line, file_line
from shared.ports import Services
from shared.services.reconcile import _ask_api
from tests.support import make_records

DAY = date(2026, 11, 20)


def test_a_built_day_of_one_row() -> None:
    view = {"date": "2026-11-20", "days": {"status": "built", "rows": 1, "snapshot_date": "2026-11-20"}}
    assert "     1 row  snapshot" in day_line(view)


def test_a_waiting_and_a_staged_day_of_one_record() -> None:
    waiting = {
        "date": "2026-11-20",
        "days": {"status": "waiting", "reason": "no CRM"},
        "usage": {"staged": 1},
    }
    staged = {"date": "2026-11-20", "usage": {"staged": 1}}
    assert "usage staged (1 record)" in day_line(waiting)
    assert "staged     1 record, not built yet" in day_line(staged)


def test_a_snapshot_of_one_row() -> None:
    line = file_line({"status": "staged", "snapshot_date": "2026-11-20", "staged": 1})
    assert line.startswith("snapshot 2026-11-20 staged: 1 row, "), line


def test_a_reconcile_of_one_row_record_and_company() -> None:
    summary: dict[str, Any] = {
        "staged_rows": 1,
        "quarantined": 0,
        "analytics_rows": 1,
        "day_state": "built",
        "companies_differing": 1,
        "companies_compared": 1,
        "api_records": 1,
        "api_error": None,
        "landed_by": "fetch-1",
        "fetched_at": "2026-11-21T06:00:00",
        "landed_records": 1,
    }
    text = reconcile_text(
        {"date": "2026-11-20", "verdict": "differ", "summary": summary, "differences": [], "notes": []}
    )
    assert "(1 of 1 company)" in text
    assert "API now: 1 record;" in text and ": 1 record;" in text.split("landed by")[1]
    assert "staged 1 row (0 quarantined); table 1 row (day built)" in text


def test_a_snapshot_or_a_day_of_one_company() -> None:
    errors, _ = check_snapshot_size(1, 10, DAY)
    assert errors and errors[0].startswith("1 company, down 90%"), errors
    errors, warnings, _ = check_coverage(DAY, Coverage(DAY, companies=1, unmatched=1))
    assert "only 0 of 1 company with usage" in " ".join(errors + warnings)


def test_the_backfill_progress_of_one_day(capsys: pytest.CaptureFixture[str]) -> None:
    _progress_line(1)(DrainReport())
    assert "0/1 day fetched," in capsys.readouterr().err


def test_reconcile_asks_the_api_up_to_a_page_cap_of_one_page(
    start_api: Callable[..., UsageApiSimulator], make_services: Callable[..., Services]
) -> None:
    services = make_services(start_api({DAY.isoformat(): make_records(30)}), usage_api_max_pages=1)
    assert _ask_api(services, DAY) == (None, "has_next_page still true after 1 page")


def test_the_simulator_of_one_company() -> None:
    command = [
        sys.executable,
        "-m",
        "shared.cli",
        "simulator",
        "--companies",
        "1",
        "--days",
        "1",
        "--port",
        "0",
    ]
    child = subprocess.Popen(command, cwd=REPO, stdout=subprocess.PIPE, text=True)
    try:
        first = child.stdout.readline() if child.stdout else ""
    finally:
        child.send_signal(signal.SIGINT)
        child.communicate(timeout=60)
    assert ": 1 company, " in first, first


REPO = Path(__file__).resolve().parents[2]
