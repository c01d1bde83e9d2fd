"""What an operator uses: the status table, backfill progress, and `serve` over real HTTP."""

from __future__ import annotations

import time
from pathlib import Path

import requests

from shared.config import Settings
from shared.local.host import DrainReport
from shared.local.pipeline import LocalPipeline, _progress_line
from shared.local.server import LocalServer
from shared.local.status_view import status_table
from tests.support import GOLDEN


def test_status_shows_a_table_per_day(cli, api_records) -> None:
    for path in GOLDEN.crm_files()[:2]:
        cli("crm-drop", str(path))
    api_records["2026-10-03"] = []
    cli("backfill", "--from", "2026-10-01", "--to", "2026-10-03")
    code, out, _err = cli("status")
    assert code == 0
    header, first, second, third, *notes = out.splitlines()
    assert header.split()[:4] == ["DATE", "USAGE", "SNAPSHOT", "STATE"]
    assert first.split()[:6] == ["2026-10-01", "39", "(+0", "q)", "2026-10-01", "built"]
    assert second.split()[4:6] == ["2026-10-02", "built"]
    assert third.split()[0] == "2026-10-03" and " blocked " in third
    assert any("zero usage records" in note for note in notes)


def test_backfill_progress_only_on_a_terminal(cli) -> None:
    code, _out, err = cli("backfill", "--from", "2026-10-01", "--to", "2026-10-02")
    assert code == 0 and "days fetched" not in err  # not a terminal here: quiet


def test_progress_line_counts_days_loads_and_builds(capsys) -> None:
    report = DrainReport(handled={"fetch-requests": 2, "ingest-events": 1, "transform": 1})
    _progress_line(5)(report)
    assert capsys.readouterr().err == "\r2/5 days fetched, 1 loads, 1 builds"


def test_status_table_lists_warnings_and_errors_under_the_table() -> None:
    views = [
        {"date": "2026-10-08", "days": {"status": "built", "rows": 46, "warnings": ["2 of 38 quarantined"]}}
    ]
    text = status_table(views)
    assert "2026-10-08: 2 of 38 quarantined" in text and " built " in text


def test_serve_answers_curl_like_requests_through_the_real_handlers(local_env: Path) -> None:
    pipeline = LocalPipeline(Settings.from_env())
    server = LocalServer(pipeline, port=0).start()
    try:
        crm = GOLDEN.crm_files()[0]
        pipeline.services.blobs.put("crm-drop", crm.name, crm.read_bytes())
        accepted = requests.post(
            f"{server.base_url}/api/replay?code=anything", json={"date": "2026-10-01"}, timeout=10
        )
        assert accepted.status_code == 202 and accepted.json()["dates"] == ["2026-10-01"]
        refused = requests.post(f"{server.base_url}/api/replay", data=b"{oops", timeout=10)
        assert refused.status_code == 400 and "not valid JSON" in refused.json()["error"]
        deadline = time.monotonic() + 30
        while True:  # the background host delivers what the request queued
            view = requests.get(
                f"{server.base_url}/api/status", params={"date": "2026-10-01"}, timeout=10
            ).json()
            if (view.get("days") or {}).get("status") == "built" or time.monotonic() > deadline:
                break
            time.sleep(0.05)
        assert view["days"]["status"] == "built" and view["days"]["rows"] == 43
        assert requests.get(f"{server.base_url}/nope", timeout=10).status_code == 404
    finally:
        server.stop()
        pipeline.close()


def test_report_command_writes_the_html_file(cli, local_env: Path) -> None:
    cli("crm-drop", str(GOLDEN.crm_files()[0]))
    cli("run", "--date", "2026-10-01")
    code, out, _err = cli("report")
    assert code == 0 and "report.html" in out
    html = (local_env / "report.html").read_text()
    assert "Company Activity" in html and "2026-10-01" in html


def test_a_waiting_day_names_its_unknown_companies_too() -> None:
    from shared.local.status_view import day_line

    view = {
        "date": "2026-11-20",
        "days": {"status": "waiting", "reason": "no CRM snapshot on or before 2026-11-20"},
        "usage": {"staged": 29, "quarantined": 1, "unknown": 1, "unknown_companies": ["H-007"]},
    }
    assert day_line(view).startswith(
        "2026-11-20  waiting    usage staged (29 records, 1 quarantined; usage unknown: 1 company (H-007));"
    )
