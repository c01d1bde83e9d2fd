"""`python -m shared.cli demo`: the whole pipeline on a built-in API simulator, day by day."""

from __future__ import annotations

import dataclasses
import json
from datetime import UTC, datetime, timedelta

from shared.config import Settings
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
        problems: list[str] = []
        try:
            drops = set(world.snapshot_days())
            for offset in range(days):
                day = world.first_day + timedelta(days=offset)
                if day in drops:
                    report = pipeline.drop_crm(world.crm_snapshot_csv(day), world.crm_file_name(day))
                    problems += _problems(report)
                problems += _problems(pipeline.replay({"date": day.isoformat()}))
                print(day_line(pipeline.status(day.isoformat())))
            _summary(pipeline, world, api.count())
        finally:
            pipeline.close()
    if problems:
        raise CliError(problems[0])
    return 0


def _problems(report: DrainReport) -> list[str]:
    return report.error_alerts() + report.dead_lettered


def _summary(pipeline: LocalPipeline, world: DemoWorld, api_requests: int) -> None:
    warehouse = pipeline.services.warehouse
    days = list(warehouse.fetch_rows("summary_days"))
    latest = days[-1]["activity_date"] if days else None
    at_risk = list(warehouse.fetch_rows("churn_risk_on_day", {"activity_date": latest})) if latest else []
    data_dir = pipeline.settings.local_data_dir
    alerts_path = data_dir / "alerts.jsonl"
    alerts = (
        [json.loads(line) for line in alerts_path.read_text().splitlines()] if alerts_path.exists() else []
    )
    quarantine = [p for p in (data_dir / "blobs" / "quarantine").rglob("*") if p.is_file()]

    print("\nSummary")
    print(
        f"  days built        {len(days)} of {world.days}, {sum(d['row_count'] for d in days)} rows,"
        f" {api_requests} API requests"
    )
    if latest:
        print(
            f"  latest day        {latest}: {days[-1]['row_count']} companies,"
            f" {days[-1]['active_users']} active users, {len(at_risk)} at churn risk"
        )
    for row in at_risk[:8]:
        contact = (
            "never contacted"
            if row["days_since_last_contact"] is None
            else (f"last contact {row['days_since_last_contact']} days ago")
        )
        print(
            f"    {row['company_id']:<8} {str(row['company_name'] or '(not in CRM)')[:28]:<28}"
            f" {row['rolling_7d_active_users']:>4} users in 7 days, {contact}"
        )
    if len(at_risk) > 8:
        print(f"    ... and {len(at_risk) - 8} more")
    by_severity = {s: sum(1 for a in alerts if a.get("severity") == s) for s in ("error", "warning")}
    where = f" -> {alerts_path}" if alerts_path.exists() else ""  # the file appears with the first alert
    print(f"  alerts            {by_severity['error']} errors, {by_severity['warning']} warnings{where}")
    print(f"  quarantine        {_count(len(quarantine), 'file')} under {data_dir / 'blobs' / 'quarantine'}")
    print(f"  warehouse         {data_dir / 'warehouse.duckdb'}")
    print("\nLook around:")
    print("  .venv/bin/python -m shared.cli status")
    print(f"  .venv/bin/python -m shared.cli report      # then open {data_dir / 'report.html'}")
    print("  .venv/bin/python -m shared.cli serve       # curl localhost:7071/api/status")
    print("  .venv/bin/python -m shared.cli simulator   # an API to try run and backfill against")
    print(
        f"  .venv/bin/python -c \"import duckdb; duckdb.connect('{data_dir / 'warehouse.duckdb'}', read_only=True)"  # noqa: S608 - a hint printed, not a query run
        ".sql('SELECT * FROM analytics.company_daily_activity ORDER BY activity_date DESC LIMIT 10').show()\""
    )


def _count(n: int, noun: str) -> str:
    return f"{n} {noun}{'' if n == 1 else 's'}"
