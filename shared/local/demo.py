"""`python -m shared.cli demo`: the whole pipeline on a built-in API simulator, day by day."""

from __future__ import annotations

import dataclasses
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

from shared.config import Settings
from shared.domain.wording import counted
from shared.local.demo_world import DemoWorld
from shared.local.host import DrainReport
from shared.local.pipeline import CliError, LocalPipeline
from shared.local.simulator import UsageApiSimulator
from shared.local.status_view import day_line

DEMO_DAYS = 21
DEMO_KEY = "demo-key"


def run_demo(settings: Settings, *, days: int = DEMO_DAYS, out: object = None) -> int:
    today = datetime.now(UTC).date()
    world = DemoWorld(first_day=today - timedelta(days=days), days=days)
    started = datetime.now(UTC).replace(tzinfo=None)  # the warehouse holds UTC without a zone
    print(
        f"Company Activity demo: {world.companies} companies, {days} days "
        f"({world.first_day} to {world.last_day}), data in {settings.local_data_dir}/"
    )
    with UsageApiSimulator(world.usage_records, api_key=DEMO_KEY) as api:
        print(f"Product Usage API simulator at {api.base_url} (25 records a page)\n")
        demo_settings = dataclasses.replace(
            settings,
            usage_api_base_url=api.base_url,
            usage_api_key=DEMO_KEY,
            usage_api_page_size=25,
        )
        pipeline = LocalPipeline(demo_settings)
        reports: list[DrainReport] = []
        try:
            drops = set(world.snapshot_days())
            for offset in range(days):
                day = world.first_day + timedelta(days=offset)
                if day in drops:
                    reports.append(pipeline.drop_crm(world.crm_snapshot_csv(day), world.crm_file_name(day)))
                reports.append(pipeline.replay({"date": day.isoformat()}))
                print(day_line(pipeline.status(day.isoformat()), started.isoformat()))
            _summary(pipeline, world, api.count(), reports, started)
        finally:
            pipeline.close()
    problems = [p for report in reports for p in report.error_alerts() + report.dead_lettered]
    if problems:
        raise CliError(problems[0])
    return 0


def _summary(
    pipeline: LocalPipeline,
    world: DemoWorld,
    api_requests: int,
    reports: list[DrainReport],
    started: datetime,
) -> None:
    warehouse = pipeline.services.warehouse
    days = list(warehouse.fetch_rows("summary_days"))
    latest = days[-1] if days else None
    on_latest = {"activity_date": latest["activity_date"]} if latest else {}
    at_risk = list(warehouse.fetch_rows("churn_risk_on_day", on_latest)) if latest else []
    unknown = list(warehouse.fetch_rows("summary_not_in_crm", on_latest)) if latest else []
    [written] = warehouse.fetch_rows("summary_rows_since", {"since": started})
    data_dir = pipeline.settings.local_data_dir
    # This run's alerts: the ones its own commands raised, not whatever alerts.jsonl held before.
    alerts = [a for report in reports for a in report.alerts]
    print("\nSummary")
    print(_days_built(days, world.days, written["rows_written"], api_requests))
    if latest:
        print(_latest_day(latest, len(at_risk)))
    for line in _at_risk_lines(at_risk):
        print(line)
    if unknown:
        print(_not_in_crm(unknown))
    print(_alerts(alerts, data_dir / "alerts.jsonl"))
    quarantine = [p for p in (data_dir / "blobs" / "quarantine").rglob("*") if p.is_file()]
    print(f"  quarantine        {_count(len(quarantine), 'file')} under {data_dir / 'blobs' / 'quarantine'}")
    print(f"  warehouse         {data_dir / 'warehouse.duckdb'}")
    # A company worth a look: the first at risk, else the first the CRM does not know.
    example = next((row["company_id"] for row in [*at_risk, *unknown]), None)
    _try_next(data_dir, latest["activity_date"] if latest else None, example)


def _days_built(days: list[dict[str, Any]], of: int, changed: int, api_requests: int) -> str:
    rows = sum(d["row_count"] for d in days)
    written = (
        f" {changed} written by this run (new or changed)"
        if changed
        else " this run changed none (it was all built already)"
    )
    return (
        f"  days built        {len(days)} of {of}, {counted(rows, 'row')};{written};"
        f" {counted(api_requests, 'API request')}"
    )


def _latest_day(day: dict[str, Any], at_risk: int) -> str:
    cannot_tell = (
        f", {day['churn_cannot_tell']} cannot tell (usage refused)" if day.get("churn_cannot_tell") else ""
    )
    return (
        f"  latest day        {day['activity_date']}: {counted(day['row_count'], 'company', 'companies')},"
        f" {day['active_users'] or 0} active users, {at_risk} at churn risk{cannot_tell}"
    )


def _at_risk_lines(at_risk: list[dict[str, Any]], shown: int = 8) -> list[str]:
    lines = [_at_risk_line(row) for row in at_risk[:shown]]
    return lines + ([f"    ... and {len(at_risk) - shown} more"] if len(at_risk) > shown else [])


def _at_risk_line(row: dict[str, Any]) -> str:
    contact = (
        "never contacted"
        if row["days_since_last_contact"] is None
        else f"last contact {counted(row['days_since_last_contact'], 'day')} ago"
    )
    return (
        f"    {row['company_id']:<8} {str(row['company_name'] or '(not in CRM)')[:28]:<28}"
        f" {row['rolling_7d_active_users']:>4} user-days in 7 days, {contact}"
    )


def _not_in_crm(unknown: list[dict[str, Any]]) -> str:
    ids = ", ".join(r["company_id"] for r in unknown[:5]) + (" ..." if len(unknown) > 5 else "")
    return (
        f"  not in the CRM    {_count(len(unknown), 'company', 'companies')} with usage the CRM snapshot does not"
        f" know ({ids}): their rows have no name, country or industry tag. The API reports them; the CRM"
        " export does not (yet) list them."
    )


def _alerts(alerts: list[dict[str, Any]], alerts_path: Path) -> str:
    by_severity = {s: sum(1 for a in alerts if a.get("severity", "error") == s) for s in ("error", "warning")}
    where = f" -> {alerts_path}" if alerts and alerts_path.exists() else ""
    return (
        f"  alerts            {_count(by_severity['error'], 'error')}, {_count(by_severity['warning'], 'warning')}"
        f" raised by this run{where}"
    )


def _try_next(data_dir: Path, latest: date | None, example: str | None) -> None:
    print("\nTry next:")
    print(
        "  .venv/bin/python -m shared.cli status       # every day, every CRM snapshot, what each was built from"
    )
    print(f"  .venv/bin/python -m shared.cli report       # then open {data_dir / 'report.html'}")
    if latest:
        company = f" --company {example}" if example else ""
        print(
            f"  .venv/bin/python -m shared.cli reconcile --date {latest}{company} --skip-api"
            "   # every number of a row explained"
        )
    print("More in README.md: the simulator to run and backfill against, serve, queries on the warehouse.")


def _count(n: int, noun: str, plural: str | None = None) -> str:
    return f"{n} {noun if n == 1 else (plural or noun + 's')}"
