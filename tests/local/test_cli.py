"""The CLI's promises (contract section 6): exit status, one-line reasons, waiting is not failure."""

from __future__ import annotations

import json
import os
from datetime import date, timedelta
from pathlib import Path

from tests.support import GOLDEN, REPO, read_alerts, read_table


def test_run_without_api_url_fails_with_one_line(cli, monkeypatch) -> None:
    monkeypatch.delenv("USAGE_API_BASE_URL")
    code, _out, err = cli("run", "--date", "2026-10-01")
    assert code != 0
    assert err.strip().count("\n") == 0
    assert "USAGE_API_BASE_URL" in err


def test_waiting_day_is_not_a_failure(cli) -> None:
    code, out, err = cli("run", "--date", "2026-10-02")
    assert code == 0, err
    assert "waiting" in out and "CRM snapshot" in out


def test_future_date_is_refused_by_the_replay_endpoint(cli) -> None:
    code, _out, err = cli("run", "--date", "2999-01-01")
    assert code != 0
    assert "future" in err


def test_quality_gate_error_fails_the_run_and_force_overrides_it(cli, local_env: Path, api_records) -> None:
    cli("crm-drop", str(GOLDEN.crm_files()[0]))
    api_records["2026-10-01"] = []  # the API answers an empty day
    code, out, err = cli("run", "--date", "2026-10-01")
    assert code == 1
    assert "zero usage records" in err and err.count("\n") == 1
    assert "blocked" in out
    assert read_table(local_env) == []
    alerts = [a for a in read_alerts(local_env) if a["kind"] == "quality_error"]
    assert alerts and alerts[0]["activity_date"] == "2026-10-01" and alerts[0]["run_id"]
    assert set(alerts[0]) >= {"severity", "stage", "activity_date", "run_id", "message", "detail"}

    code, _out, err = cli("run", "--date", "2026-10-01")  # again: the alert is not repeated, the failure is
    assert code == 1 and "zero usage records" in err
    assert len([a for a in read_alerts(local_env) if a["kind"] == "quality_error"]) == 1

    code, out, err = cli("run", "--date", "2026-10-01", "--force")
    assert code == 0, err
    assert "built" in out and "overridden" in out
    rows = read_table(local_env)
    assert rows and all(r["active_users"] == 0 and r["is_churn_risk"] for r in rows)


def test_rejected_crm_file_is_quarantined_alerted_and_leaves_the_snapshot(
    cli, local_env: Path, tmp_path: Path
) -> None:
    good = GOLDEN.crm_files()[0]
    assert cli("crm-drop", str(good))[0] == 0
    bad = tmp_path / "companies_2026-10-01.csv"
    bad.write_bytes(b"company_id,name,country\nc-1,Acme,DE\n")  # missing required columns
    code, out, err = cli("crm-drop", str(bad), "--name", "late/companies_2026-10-01.csv")
    assert code == 1
    assert "missing required column" in err and err.count("\n") == 1
    assert "rejected" in out
    quarantine = local_env / "blobs" / "quarantine" / "crm-drop" / "late" / "companies_2026-10-01.csv"
    reason = json.loads(next(quarantine.rglob("reason.json")).read_text())
    assert "missing required column" in reason["reason"]
    assert next(quarantine.rglob("companies_2026-10-01.csv")).read_bytes() == bad.read_bytes()
    staged = read_table(
        local_env, "SELECT source_blob, COUNT(*) AS n FROM stg.crm_company_snapshot GROUP BY 1"
    )
    assert staged == [{"source_blob": good.name, "n": 41}]
    assert any(a["kind"] == "crm_file_rejected" for a in read_alerts(local_env))


def test_status_json_reports_each_day(cli) -> None:
    for path in GOLDEN.crm_files()[:2]:
        cli("crm-drop", str(path))
    assert cli("run", "--date", "2026-10-02")[0] == 0
    code, out, _err = cli("status", "--json")
    assert code == 0
    days = {d["date"]: d for d in json.loads(out)["days"]}
    assert days["2026-10-02"]["days"]["status"] == "built"
    assert days["2026-10-02"]["usage"]["staged"] == 37
    assert days["2026-10-02"]["usage"]["quarantined"] == 1
    code, out, _err = cli("status", "--date", "2026-10-02")
    assert out.splitlines()[1].split()[:6] == ["2026-10-02", "37", "(+1", "q)", "2026-10-02", "built"]


def test_a_refused_key_fails_once_clearly_and_is_never_printed(
    cli, local_env: Path, api, monkeypatch, caplog
) -> None:
    secret = "wrong-secret-9f8e7d6c"
    monkeypatch.setenv("USAGE_API_KEY", secret)
    cli("crm-drop", str(GOLDEN.crm_files()[0]))
    caplog.set_level("DEBUG")
    code, out, err = cli("-v", "run", "--date", "2026-10-01")
    assert code == 1
    assert "HTTP 401" in err and err.count("\n") == 1
    assert api.count(status=401) == 1  # permanent: not retried
    assert secret not in out + err + caplog.text + json.dumps(read_alerts(local_env))


def test_the_timer_asks_for_yesterday_and_the_lookback(local_env: Path, utc_today: date) -> None:
    from shared.config import Settings
    from shared.local.pipeline import LocalPipeline

    pipeline = LocalPipeline(Settings.from_env())
    try:
        pipeline.host.fire_timers(past_due=True)
        report = pipeline.host.drain()
        yesterday = (utc_today - timedelta(days=1)).isoformat()
        fetch = pipeline.services.ledger.get("fetch", yesterday)
        assert fetch is not None and fetch.data["status"] == "complete"
        # Yesterday, and a request for each of the USAGE_API_LOOKBACK_DAYS (3) days before it;
        # those were never fetched, so they are fetched (a fetched day would be re-checked).
        assert report.handled["fetch-requests"] == 4
        before = (utc_today - timedelta(days=2)).isoformat()
        entry = pipeline.services.ledger.get("fetch", before)
        assert entry is not None and entry.data["status"] == "complete"
        assert entry.data["lookback_fetch"] == "never fetched before: fetched by the lookback"
    finally:
        pipeline.close()


def test_the_log_is_json_lines_that_follow_a_day_through_every_function(cli, local_env: Path) -> None:
    cli("crm-drop", str(GOLDEN.crm_files()[0]))
    assert cli("run", "--date", "2026-10-01")[0] == 0
    lines = [json.loads(line) for line in (local_env / "pipeline.log").read_text().splitlines()]
    assert lines and all(
        {"time", "level", "logger", "message", "stage", "date", "run_id"} <= set(e) for e in lines
    )
    day = [e for e in lines if e["date"] == "2026-10-01"]
    assert {"fetch", "ingest", "transform"} <= {e["stage"] for e in day}
    fetch_runs = {e["run_id"] for e in day if e["stage"] == "fetch"}
    assert len(fetch_runs) == 1 and next(iter(fetch_runs)).startswith("fetch-")
    # The same run id follows the day into staging and the build.
    assert fetch_runs <= {e["run_id"] for e in day if e["stage"] in ("ingest", "transform")}


def test_status_loads_neither_the_function_host_nor_the_warehouse(tmp_path: Path) -> None:
    """`status` reads the ledger only: azure.functions and DuckDB are what made it slow to start
    (benchmarks/bench_startup.py measures the time)."""
    import subprocess
    import sys

    probe = (
        "import sys\n"
        "from shared.local.cli import main\n"
        "code = main(['status', '--json'])\n"
        "loaded = sorted(m for m in ('duckdb', 'azure.functions', 'function_app', 'requests') if m in sys.modules)\n"
        "print('LOADED', loaded, code, file=sys.stderr)\n"
    )
    env = {**os.environ, "LOCAL_DATA_DIR": str(tmp_path / "local"), "PYTHONPATH": str(REPO)}
    done = subprocess.run(
        [sys.executable, "-c", probe], env=env, cwd=REPO, capture_output=True, text=True, timeout=60
    )
    assert "LOADED [] 0" in done.stderr, done.stderr


def test_status_of_a_folder_with_nothing_yet_says_what_to_run_and_creates_nothing(
    cli, local_env: Path, monkeypatch
) -> None:
    missing = local_env.parent / "typo"
    monkeypatch.setenv("LOCAL_DATA_DIR", str(missing))
    code, out, err = cli("status")
    assert code == 0 and not err
    assert out.startswith(f"nothing here yet: {missing} holds no pipeline data. Start with `make demo`")
    assert not missing.exists()  # a mistyped folder is said, not made
    code, out, _ = cli("status", "--json")
    assert code == 0 and json.loads(out)["days"] == []


def test_a_read_only_ledger_is_read_and_never_written(tmp_path: Path) -> None:
    import sqlite3

    import pytest

    from shared.adapters.ledger_sqlite import SqliteLedger

    SqliteLedger(tmp_path / "ledger.sqlite3").put("days", "2026-10-01", {"status": "built"})
    reader = SqliteLedger(tmp_path / "ledger.sqlite3", read_only=True)
    assert reader.get("days", "2026-10-01").data == {"status": "built"}  # type: ignore[union-attr]
    with pytest.raises(sqlite3.OperationalError, match="readonly"):
        reader.put("days", "2026-10-02", {"status": "built"})


def test_output_to_a_full_disk_is_one_line(local_env: Path, cli) -> None:
    import subprocess
    import sys

    cli("crm-drop", str(GOLDEN.crm_files()[0]))
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    with open("/dev/full", "w") as full:
        done = subprocess.run(
            [sys.executable, "-m", "shared.cli", "status"],
            env=env,
            cwd=REPO,
            stdout=full,
            stderr=subprocess.PIPE,
            text=True,
            timeout=60,
        )
    assert done.returncode == 1 and done.stderr.strip().splitlines() == [
        "error: cannot write: No space left on device"
    ]
