"""The local views, pinned byte for byte on representative cases: `status`'s day lines and
table, `reconcile`'s text and the demo's summary read today as golden/views.txt says. A
refactor of a view must leave this file unchanged."""

from __future__ import annotations

import difflib
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

from shared.domain.rules import Rules
from shared.local.demo import _summary
from shared.local.reconcile_view import reconcile_text
from shared.local.status_view import day_line, status_table

GOLDEN_VIEWS = Path(__file__).parent / "golden" / "views.txt"
IN_FORCE, OTHER = Rules(10, 30, 7), Rules(20, 30, 7)
BUILT_AT = "2026-10-08T06:00:00+00:00"
SINCE = "2026-10-08T07:00:00+00:00"  # a command that began after the days were built

# One view per way a day can read: every state, a pending rebuild or gate check, unknown usage,
# warnings (one with a control character), an API re-check, rules in force or not.
DAY_VIEWS: list[dict[str, Any]] = [
    {
        "date": "2026-10-01",
        "days": {
            "status": "built",
            "rows": 46,
            "snapshot_date": "2026-09-30",
            "built_at": BUILT_AT,
            "inserted": 3,
            "updated": 2,
            "deleted": 1,
            "run_id": "r-1",
            "rules": IN_FORCE.encode(),
        },
        "usage": {"staged": 40, "quarantined": 2, "unknown": 2, "unknown_companies": ["H-001"]},
        "fetch": {
            "status": "succeeded",
            "last_check": "unchanged",
            "last_checked_at": "2026-10-09T05:01:02+00:00",
            "run_id": "f-1",
            "finished_at": "2026-10-08T05:00:00+00:00",
        },
    },
    {
        "date": "2026-10-02",
        "days": {
            "status": "built",
            "rows": 44,
            "snapshot_date": "2026-09-30",
            "built_at": BUILT_AT,
            "pending": "build",
            "warnings": ["2 of 38 quarantined", "late\x1b[31m"],
            "rules": OTHER.encode(),
        },
        "usage": {"staged": 38, "quarantined": 2},
    },
    {
        "date": "2026-10-03",
        "days": {"status": "built", "rows": 1, "built_at": BUILT_AT, "pending": "gate"},
        "usage": {"staged": 1, "unknown": 1, "unknown_companies": ["H-007"]},
    },
    {
        "date": "2026-10-04",
        "days": {
            "status": "waiting",
            "reason": "no CRM snapshot on or before 2026-10-04",
            "rules": IN_FORCE.encode(),
        },
        "usage": {"staged": 29, "quarantined": 1, "unknown": 3, "unknown_companies": ["H-1", "H-2"]},
    },
    {
        "date": "2026-10-05",
        "days": {"status": "waiting", "reason": "no CRM snapshot"},
        "usage": {"staged": 29},
    },
    {"date": "2026-10-06", "days": {"status": "gate_failed", "errors": ["zero usage records", "too few"]}},
    {
        "date": "2026-10-07",
        "days": {"status": "failed", "reason": "out of memory"},
        "fetch": {"status": "succeeded"},
    },
    {"date": "2026-10-09", "usage": {"staged": 12, "loaded_at": "2026-10-10T01:02:03"}},
    {"date": "2026-10-10", "fetch": {"status": "running", "last_error": "HTTP 503", "run_id": "f-9"}},
    {"date": "2026-10-11", "fetch": {"status": "waiting", "waiting_for": "the API asked to wait 86400 s"}},
    {"date": "2026-10-12", "fetch": {"status": "running", "started_at": "2026-10-12T01:02:03+00:00"}},
    {"date": "2026-10-13", "fetch": {"status": "running", "lease_until": "2999-01-01T00:00:00+00:00"}},
    {"date": "2026-10-14", "fetch": {"status": "failed", "error": "HTTP 401"}},
    {"date": "2026-10-15", "fetch": {"status": "failed"}},
    {"date": "2026-10-16"},
    {"date": "2026-10-17", "days": {"status": "built", "rows": 2, "built_at": "2026-10-17T06:00:00+00:00"}},
]


def _summary_of(day: str, verdict: str, **fields: Any) -> dict[str, Any]:
    summary = {
        "companies_differing": 0,
        "companies_compared": 0,
        "api_records": None,
        "api_error": None,
        "landed_by": None,
        "fetched_at": None,
        "landed_records": None,
        "staged_rows": 0,
        "quarantined": 0,
        "analytics_rows": 0,
        "day_state": "built",
    }
    return {"date": day, "verdict": verdict, "summary": summary | fields, "differences": [], "notes": []}


def _reconcile_results() -> list[dict[str, Any]]:
    agree = _summary_of(
        "2026-10-01",
        "agree",
        companies_compared=5,
        api_records=5,
        landed_by="r-1",
        fetched_at="2026-10-02T06:00",
        landed_records=5,
        last_checked="2026-10-03T06:00",
        staged_rows=5,
        analytics_rows=5,
    )
    many = _summary_of(
        "2026-10-02",
        "differ",
        companies_differing=2,
        companies_compared=50,
        api_error="HTTP 503",
        landed_by="r-2",
        fetched_at="2026-10-03T06:00",
        landed_records=0,
        staged_rows=48,
        quarantined=2,
        analytics_rows=47,
        usage_unknown=1,
        churn_cannot_tell=1,
    )  # more differences and notes than are shown, one of the day, one with a control character
    many["differences"] = [{"company_id": f"C-{n}", "text": f"differs {n}"} for n in range(42)]
    many["differences"].append({"company_id": None, "text": "day\x1b[0m"})
    many["notes"] = [{"company_id": None, "text": f"note {n}"} for n in range(41)]
    one = _summary_of(
        "2026-10-03",
        "incomplete",
        companies_differing=1,
        companies_compared=1,
        staged_rows=1,
        analytics_rows=1,
        day_state="waiting",
        usage_unknown=2,
    )
    one["company_id"], one["notes"] = "C-7", [{"company_id": "C-7", "text": "agrees"}]
    one["companies"] = [
        {"company_id": "C-7", "api": None, "landed": [3, 9], "staged": [3, 9], "analytics": [3, 9]},
        {
            "company_id": "C-8",
            "api": [1, 2],
            "landed": None,
            "staged": None,
            "analytics": None,
            "unknown": True,
        },
    ]
    one["explanation"] = ["active_users 3: ...", "events 9: ..."]
    missing = _summary_of(
        "2026-10-04",
        "differ",
        companies_differing=1,
        companies_compared=1,
        api_records=0,
        landed_by="r-4",
        fetched_at="x",
        landed_records=3,
        day_state="-",
        churn_cannot_tell=2,
    )
    missing["company_id"], missing["differences"] = "C-9", [{"company_id": "C-9", "text": "missing"}]
    return [agree, many, one, missing]


class _Warehouse:
    def __init__(self, answers: dict[str, list[dict[str, Any]]]) -> None:
        self.answers = answers

    def fetch_rows(self, sql_name: str, params: Any = None) -> list[dict[str, Any]]:
        return self.answers.get(sql_name, [])


def _at_risk(n: int) -> dict[str, Any]:
    return {
        "company_id": f"c-{n:04d}",
        "company_name": None if n == 1 else f"Company number {n} with a long name",
        "rolling_7d_active_users": n,
        "days_since_last_contact": None if n == 2 else 40 + n,
    }


def _demo_summaries() -> list[tuple[str, dict[str, list[dict[str, Any]]], list[Any]]]:
    day = {"activity_date": "2026-10-21", "row_count": 62, "active_users": None, "churn_cannot_tell": 3}
    full = {
        "summary_days": [{"activity_date": "2026-10-20", "row_count": 60}, day],
        "churn_risk_on_day": [_at_risk(n) for n in range(9)],
        "summary_not_in_crm": [{"company_id": f"c-00{n}"} for n in range(6)],
        "summary_rows_since": [{"rows_written": 1302}],
    }
    alerts = [{"severity": "error"}, {}, {"severity": "warning"}]
    unknown_only = {
        "summary_days": [{"activity_date": "2026-10-21", "row_count": 1, "active_users": 4}],
        "summary_not_in_crm": [{"company_id": "c-0061"}],
        "summary_rows_since": [{"rows_written": 0}],
    }
    quiet = unknown_only | {"summary_not_in_crm": []}  # no company to suggest for reconcile
    nothing = {"summary_rows_since": [{"rows_written": 0}]}
    return [
        ("full", full, alerts),
        ("unknown only", unknown_only, []),
        ("quiet", quiet, []),
        ("nothing", nothing, []),
    ]


def _demo_text(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> str:
    folder = tmp_path / "data"
    (folder / "blobs" / "quarantine" / "raw").mkdir(parents=True)
    (folder / "blobs" / "quarantine" / "raw" / "rejected.jsonl").write_text("{}")
    (folder / "alerts.jsonl").write_text("{}")
    world = SimpleNamespace(days=21)
    texts = []
    for name, answers, alerts in _demo_summaries():
        services = SimpleNamespace(warehouse=_Warehouse(answers))
        pipeline = SimpleNamespace(services=services, settings=SimpleNamespace(local_data_dir=folder))
        reports = [SimpleNamespace(alerts=alerts)]
        _summary(pipeline, world, 1234, reports, None)  # type: ignore[arg-type]
        texts.append(f"-- demo summary: {name}\n{capsys.readouterr().out}")
    return "".join(texts).replace(str(folder), "DATA")


def _views_text(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> str:
    parts = ["-- day lines"]
    for view in DAY_VIEWS:
        parts += [day_line(view), day_line(view, SINCE)]
    parts += ["-- status table, rules in force", status_table(DAY_VIEWS, IN_FORCE)]
    parts += ["-- status table", status_table(DAY_VIEWS[:3])]
    for result in _reconcile_results():
        parts += [f"-- reconcile {result['date']}", reconcile_text(result)]
    text = "\n".join(parts) + "\n" + _demo_text(tmp_path, capsys)
    return text.replace("\x1b", "<ESC>")  # a day line leaves escaping to the CLI's output


def test_the_views_read_as_pinned(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    text = _views_text(tmp_path, capsys)
    expected = GOLDEN_VIEWS.read_text(encoding="utf-8")
    diff = "".join(difflib.unified_diff(expected.splitlines(True), text.splitlines(True), "golden", "now"))
    assert text == expected, diff
