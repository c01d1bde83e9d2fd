"""Reconcile a day (or one company on it) across the API, the landed pages, staging and the table.

It gathers the four sources through the ports and lets `shared.domain.reconcile` compare them.
Read-only by design: the API is asked with a client of its own (no page is landed, no ledger
entry written, no unreachable verdict recorded), and the blobs, the ledger and the warehouse
are only read. `python -m shared.cli reconcile` and `GET /api/reconcile` both call it.
"""

from __future__ import annotations

import dataclasses
import json
import logging
from datetime import UTC, date, datetime, timedelta
from typing import Any

from shared.domain import names
from shared.domain.days import ROLLING_DAYS
from shared.domain.errors import PermanentError
from shared.domain.reconcile import (
    DaySources,
    Fetch,
    LandedRecord,
    Quarantined,
    Reconciliation,
    explain_row,
    reconcile_day,
)
from shared.domain.rules import Rules
from shared.domain.usage_page import parse_page
from shared.domain.wording import counted
from shared.observability.context import bind
from shared.ports import ApiAsksToWait, BlobNotFound, Services, TransientApiError, UsageApiError
from shared.services.status import day_status

log = logging.getLogger(__name__)

# Asking the API is part of an interactive question: a dead or silent API is said in about ten
# seconds, not a minute.
ASK_ATTEMPTS = 2
ASK_UNREACHABLE_S = 10.0


def reconcile(
    services: Services, day: date, company: str | None = None, *, ask_api: bool = True
) -> Reconciliation:
    """Compare `day` (or `company` on it) across the four sources and explain every difference."""
    view = day_status(services, day)
    fetch_entry, usage_entry, day_state = view.get("fetch") or {}, view.get("usage") or {}, view.get("days")
    bind(date=day.isoformat(), run_id=str(fetch_entry.get("run_id") or "reconcile"))
    api, api_error = _ask_api(services, day) if ask_api else (None, None)
    fetch, landed, quarantine = _landed(services, fetch_entry)
    if fetch is not None:
        fetch = dataclasses.replace(fetch, retry_at=_scheduled_for(services, fetch_entry))
    staged = {
        r["company_id"]: (int(r["active_users"]), int(r["events"]))
        for r in services.warehouse.fetch_rows("reconcile_staged_usage", {"activity_date": day})
    }
    analytics = {
        r["company_id"]: r
        for r in services.warehouse.fetch_rows("reconcile_daily_rows", {"activity_date": day})
    }
    snapshot = _snapshot_of(analytics, day_state)
    snapshot_companies = (
        frozenset(
            r["company_id"]
            for r in services.warehouse.fetch_rows(
                "reconcile_snapshot_companies", {"snapshot_date": snapshot}
            )
        )
        if snapshot
        else frozenset()
    )
    first = day - timedelta(days=ROLLING_DAYS - 1)
    unknown: dict[str, list[tuple[date, str]]] = {}
    for r in services.warehouse.fetch_rows(
        "reconcile_unknown_days",
        {"company_id": company.strip() if company else None, "first_day": first, "activity_date": day},
    ):
        unknown.setdefault(r["company_id"], []).append((_day(r["activity_date"]), str(r["reason"])))
    sources = DaySources(
        day=day,
        api=api,
        api_error=api_error,
        fetch=fetch,
        landed=landed,
        quarantine=quarantine,
        staged=staged,
        staged_run=str(usage_entry["run_id"]) if usage_entry.get("run_id") else None,
        analytics=analytics,
        day_state=day_state,
        snapshot_companies=snapshot_companies,
        unknown=unknown,
    )
    result = reconcile_day(sources, company)
    if company is not None and company in analytics:
        window = [
            (_day(r["activity_date"]), int(r["active_users"]), int(r["events"]))
            for r in services.warehouse.fetch_rows(
                "reconcile_company_window", {"company_id": company, "first_day": first, "activity_date": day}
            )
        ]
        observed = [
            _day(r["activity_date"])
            for r in services.warehouse.fetch_rows(
                "reconcile_observed_days", {"first_day": first, "activity_date": day}
            )
        ]
        rules = (
            Rules(**day_state["rules"]) if day_state and isinstance(day_state.get("rules"), dict) else None
        )
        result.explanation = explain_row(
            analytics[company], window, observed, rules, unknown.get(company, ())
        )
    return result


def _ask_api(services: Services, day: date) -> tuple[list[Any] | None, str | None]:
    """Every record the API answers for the day now: nothing is landed, nothing recorded."""
    settings = services.settings
    if not settings.usage_api_base_url:
        return None, "USAGE_API_BASE_URL is not set"
    asking = dataclasses.replace(
        settings,
        usage_api_max_attempts=min(settings.usage_api_max_attempts, ASK_ATTEMPTS),
        usage_api_unreachable_s=min(settings.usage_api_unreachable_s, ASK_UNREACHABLE_S),
        # One request cannot be cut short: an API that connects and never answers is given up
        # on when its answer is this late, not after USAGE_API_TIMEOUT_S (up to 600 s).
        usage_api_timeout_s=min(settings.usage_api_timeout_s, ASK_UNREACHABLE_S),
        # Nor is a long Retry-After waited for: the answer says the API asked to wait.
        usage_api_max_wait_s=min(settings.usage_api_max_wait_s, ASK_UNREACHABLE_S),
    )
    client = services.usage_api(asking)
    records: list[Any] = []
    number = 0
    try:
        while True:
            number += 1
            if number > settings.usage_api_max_pages:
                return None, f"has_next_page still true after {counted(settings.usage_api_max_pages, 'page')}"
            page = client.fetch_page(day, number)
            records += page.records
            if not page.has_next_page:
                return records, None
    except ApiAsksToWait as exc:  # said in reconcile's terms: the setting did not bound this wait
        return None, (
            f"the API asks to wait {exc.wait_s:.0f} s (Retry-After) before it answers page {exc.page};"
            " reconcile does not wait: ask again after that, or add --skip-api"
        )
    except (UsageApiError, TransientApiError, PermanentError) as exc:
        return None, str(exc)


def _scheduled_for(services: Services, fetch_entry: dict[str, Any]) -> str | None:
    """When the day's scheduled fetch (or re-check) runs, if the API asked to wait and that time
    has not come: "2026-12-08 04:20 UTC"."""
    try:
        when = datetime.fromisoformat(str(fetch_entry.get("retry_at")))
    except ValueError:
        return None
    return f"{when:%Y-%m-%d %H:%M} UTC" if when > services.clock() else None


def _landed(
    services: Services, fetch_entry: dict[str, Any]
) -> tuple[Fetch | None, list[LandedRecord], dict[tuple[int, int], Quarantined]]:
    """The pages of the day's last complete fetch, record by record, and what staging quarantined."""
    if not fetch_entry:
        return None, [], {}
    status = str(fetch_entry.get("status"))
    manifest_name = fetch_entry.get("manifest")
    if status != "complete" or not manifest_name:
        return Fetch(str(fetch_entry.get("run_id")), "?", "", status), [], {}
    try:
        manifest = json.loads(services.blobs.get(names.RAW_CONTAINER, str(manifest_name)))
    except (BlobNotFound, ValueError):
        return Fetch(str(fetch_entry.get("run_id")), "?", str(manifest_name), "manifest missing"), [], {}
    run_id = str(manifest.get("run_id"))
    checked = fetch_entry.get("last_checked_at")
    fetch = Fetch(
        run_id,
        _when(manifest.get("fetched_at")),
        str(manifest_name),
        status,
        f"{_when(checked)} ({fetch_entry.get('last_check')})" if checked else None,
    )
    landed: list[LandedRecord] = []
    quarantine: dict[tuple[int, int], Quarantined] = {}
    for entry in manifest.get("pages", []):
        number, blob = int(entry["page"]), str(entry["blob"])
        try:
            page = parse_page(number, services.blobs.get(names.RAW_CONTAINER, blob))
        except (BlobNotFound, ValueError):
            continue  # staging refused this manifest; the ledger and the day's state say so
        landed += [LandedRecord(number, index, record) for index, record in enumerate(page.records)]
        leaf = f"{names.RAW_CONTAINER}/{blob}/{run_id}/rejected-records.jsonl"
        try:
            lines = services.blobs.get(names.QUARANTINE_CONTAINER, leaf).decode("utf-8").splitlines()
        except BlobNotFound:
            continue
        for line in lines:
            item = json.loads(line)
            quarantine[(number, int(item["index"]))] = Quarantined(
                str(item["reason"]), f"{names.QUARANTINE_CONTAINER}/{leaf}"
            )
    return fetch, landed, quarantine


def _when(value: Any) -> str:
    """An ISO time as a person reads it: 2026-12-04 17:31:24 UTC."""
    try:
        return datetime.fromisoformat(str(value)).astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S UTC")
    except ValueError:
        return str(value)


def _snapshot_of(analytics: dict[str, Any], day_state: dict[str, Any] | None) -> date | None:
    for row in analytics.values():
        return _day(row["crm_snapshot_date"])
    text = (day_state or {}).get("snapshot_date")
    return date.fromisoformat(text) if text else None


def _day(value: Any) -> date:
    return value if isinstance(value, date) and not hasattr(value, "hour") else value.date()


def as_json(result: Reconciliation) -> dict[str, Any]:
    """The reconciliation for scripts and GET /api/reconcile."""
    return {
        "date": result.day.isoformat(),
        "company_id": result.company,
        "verdict": result.verdict,
        "summary": result.summary,
        "differences": [dataclasses.asdict(f) for f in result.findings if f.difference],
        "notes": [dataclasses.asdict(f) for f in result.findings if not f.difference],
        "companies": [dataclasses.asdict(c) for c in result.companies] if result.company else None,
        "explanation": result.explanation or None,
    }
