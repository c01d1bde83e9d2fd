"""`make demo` as a new user meets it: it builds every day, and what its summary says to try works."""

from __future__ import annotations

from pathlib import Path

import duckdb


def test_the_demo_builds_every_day_and_each_suggested_command_works(cli, local_env: Path) -> None:
    code, out, err = cli("demo")
    assert code == 0, err
    assert "days built        21 of 21" in out
    alerts = next(line for line in out.splitlines() if line.strip().startswith("alerts"))
    # Before: the summary pointed at alerts.jsonl, which a run without alerts never writes.
    assert ("alerts.jsonl" in alerts) == (local_env / "alerts.jsonl").exists(), alerts
    assert "raised by this run" in alerts
    assert "1302 written by this run (new or changed)" in out
    unknown = next(line for line in out.splitlines() if line.strip().startswith("not in the CRM"))
    assert "2 companies with usage the CRM snapshot does not know (c-0061, c-0062)" in unknown
    # It ends with the three commands to try next; the third is a reconcile of a company at risk.
    tried = [
        line.split("#")[0].split()
        for line in out.splitlines()
        if line.startswith("  .venv/bin/python -m shared.cli")
    ]
    assert [command[3] for command in tried] == ["status", "report", "reconcile"]
    code, explained, err = cli(*tried[2][3:])
    assert code == 0 and "every number of the row:" in explained, err

    code, out, err = cli("status")
    assert code == 0 and out.count("  built  ") == 21, err
    code, again, err = cli("demo")  # a second run changes nothing, and says so
    assert (
        code == 0 and "this run changed none" in again and "0 errors, 0 warnings raised by this run" in again
    )
    code, out, err = cli("report")
    assert code == 0 and (local_env / "report.html").is_file(), err
    # README's read-only query: nothing holds the warehouse once a command has finished.
    with duckdb.connect(str(local_env / "warehouse.duckdb"), read_only=True) as con:
        assert con.execute("SELECT COUNT(*) FROM analytics.company_daily_activity").fetchone()[0] > 0
