"""Unknown usage (contract section 3): a company whose record for a day was refused for its
counts has NULL usage that day, not 0; the days are counted in usage_unknown_7d; and the churn
flag is NULL (cannot tell) where the rule would flag it. Through the real CLI and handlers, and
against the independent oracle in tests/reference.py over worlds built from the golden case."""

from __future__ import annotations

import random
from collections.abc import Callable
from dataclasses import replace
from datetime import date
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from shared.config import Settings
from shared.domain import names
from shared.local.pipeline import LocalPipeline
from shared.local.simulator import UsageApiSimulator
from tests.reference import diff_tables, expected_table
from tests.support import GOLDEN, read_table
from tests.test_reference import stage_golden

Cli = Callable[..., tuple[int, str, str]]
DAYS = sorted(GOLDEN.records())
CRM_FILES = GOLDEN.crm_files()
STAGED = stage_golden()


def _companies_with_usage(day: str) -> list[str]:
    return sorted(STAGED.usage[date.fromisoformat(day)])


def _refuse(records: list[dict[str, Any]], companies: set[str], value: Any = "14") -> list[dict[str, Any]]:
    """The day's records with the counts of `companies` sent in a form the contract refuses."""
    return [{**r, "active_users": value} if r.get("company_id") in companies else r for r in records]


def _row(table: list[dict[str, Any]], company: str, day: str) -> dict[str, Any]:
    (row,) = [r for r in table if r["company_id"] == company and str(r["activity_date"]) == day]
    return row


# --------------------------------------------------------------------- one record, one company


@pytest.fixture
def idle_looking_company(api_records: dict[str, list[dict[str, Any]]]) -> str:
    """A company with usage on 10-01 whose record that day is sent with a string count."""
    company = _companies_with_usage("2026-10-01")[0]
    api_records["2026-10-01"] = _refuse(api_records["2026-10-01"], {company})
    return company


def test_a_refused_record_makes_the_day_unknown_not_zero(
    cli: Cli, idle_looking_company: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    for path in CRM_FILES[:2]:
        assert cli("crm-drop", str(path))[0] == 0
    code, _, err = cli("run", "--date", "2026-10-01")
    assert code == 0, err
    code, _, err = cli("run", "--date", "2026-10-02")
    assert code == 0, err
    data_dir = Path(Settings.from_env().local_data_dir)
    table = read_table(data_dir)
    first = _row(table, idle_looking_company, "2026-10-01")
    assert (first["active_users"], first["events"], first["events_per_user"]) == (None, None, None)
    assert first["rolling_7d_active_users"] == 0
    assert first["usage_unknown_7d"] == 1
    assert first["is_churn_risk"] is None  # the rule would flag it on a refused record: cannot tell
    second = _row(table, idle_looking_company, "2026-10-02")
    assert second["usage_unknown_7d"] == 1
    assert second["active_users"] is not None
    assert second["is_churn_risk"] is not True
    # The staging keeps which companies' usage is unknown, so a rebuild from staging alone (other
    # rules in force rebuild every day) knows it.
    monkeypatch.setenv("CHURN_MIN_ROLLING_USERS", "11")
    code, _, err = cli("rebuild")
    assert code == 0, err
    rebuilt = _row(read_table(data_dir), idle_looking_company, "2026-10-01")
    assert (rebuilt["active_users"], rebuilt["usage_unknown_7d"], rebuilt["is_churn_risk"]) == (None, 1, None)


def test_a_forced_replay_never_turns_refused_records_into_zeros(cli: Cli, idle_looking_company: str) -> None:
    assert cli("crm-drop", str(CRM_FILES[0]))[0] == 0
    assert cli("run", "--date", "2026-10-01", "--force")[0] == 0
    row = _row(read_table(Path(Settings.from_env().local_data_dir)), idle_looking_company, "2026-10-01")
    assert row["active_users"] is None and row["usage_unknown_7d"] == 1 and row["is_churn_risk"] is None
    # Its week holds that day alone: the rollups say unknown too, never 0 user-days.
    weeks = read_table(
        Path(Settings.from_env().local_data_dir), "SELECT * FROM analytics.company_weekly_activity"
    )
    (week,) = [w for w in weeks if w["company_id"] == idle_looking_company]
    assert (week["days_built"], week["days_usage_unknown"]) == (1, 1)
    assert (week["active_user_days"], week["total_events"], week["avg_daily_active_users"]) == (
        None,
        None,
        None,
    )
    assert week["is_churn_risk"] is None


def test_a_refused_record_of_a_company_with_no_row_adds_none(
    cli: Cli, api_records: dict[str, list[dict[str, Any]]]
) -> None:
    api_records["2026-10-01"] = [
        *api_records["2026-10-01"],
        {"company_id": "nobody-knows", "date": "2026-10-01", "active_users": 12.5, "events": 3},
    ]
    assert cli("crm-drop", str(CRM_FILES[0]))[0] == 0
    assert cli("run", "--date", "2026-10-01")[0] == 0
    table = read_table(Path(Settings.from_env().local_data_dir))
    assert not [r for r in table if r["company_id"] == "nobody-knows"]
    assert {r["usage_unknown_7d"] for r in table} == {0}


# ------------------------------------------------------------- any order, against the oracle


@pytest.mark.slow
@settings(
    max_examples=8,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(data=st.data(), seed=st.integers(0, 2**16))
def test_worlds_with_refused_records_converge_to_the_oracle(tmp_path_factory, data, seed) -> None:
    """Real companies' records refused on some days and valid on others, some refused first and
    corrected later; days fetched and CRM files dropped in any order."""
    rng = random.Random(seed)
    refused = {
        d: set(rng.sample(_companies_with_usage(d), k=data.draw(st.integers(0, 2), label=f"refused {d}")))
        for d in DAYS
    }
    served = {d: _refuse(records, refused[d]) for d, records in GOLDEN.records().items()}
    steps = [("crm", i) for i in range(len(CRM_FILES))] + [("run", d) for d in DAYS]
    steps = data.draw(st.permutations(steps), label="order")
    corrected = data.draw(st.sets(st.sampled_from(DAYS), max_size=2), label="corrected later")
    with UsageApiSimulator(lambda d: list(served.get(d.isoformat(), [])), api_key="k") as api:
        settings_ = replace(
            Settings.from_env({}),
            usage_api_base_url=api.base_url,
            usage_api_key="k",
            usage_api_page_size=9,
            usage_api_backoff_base_s=0.01,
            local_data_dir=Path(tmp_path_factory.mktemp("unknown")),
        )
        pipeline = LocalPipeline(settings_, rng=random.Random(seed))
        try:
            for kind, arg in steps:
                if kind == "crm":
                    path = CRM_FILES[arg]
                    pipeline.services.blobs.put(names.CRM_CONTAINER, path.name, path.read_bytes())
                else:
                    assert pipeline.host.http("POST", "replay", body={"date": arg}).status_code == 202
                if rng.random() < 0.5:
                    assert not pipeline.host.drain().dead_lettered
            assert not pipeline.host.drain().dead_lettered
            for d in sorted(corrected):  # the API sends the refused records again, valid
                served[d] = GOLDEN.records()[d]
                refused[d] = set()
                assert (
                    pipeline.host.http("POST", "replay", body={"date": d, "force": True}).status_code == 202
                )
            assert not pipeline.host.drain().dead_lettered
        finally:
            pipeline.close()
    usage = {
        day: {c: counts for c, counts in by_company.items() if c not in refused[day.isoformat()]}
        for day, by_company in STAGED.usage.items()
    }
    unknown = {date.fromisoformat(d): companies for d, companies in refused.items()}
    expected = expected_table(usage, STAGED.snapshots, unknown=unknown)
    differences = diff_tables(read_table(settings_.local_data_dir), expected)
    assert differences == [], "\n".join(differences[:15])


# ------------------------------------------------------------------------- status says them


def test_status_shows_the_unknown_companies_per_day(
    cli: Cli, idle_looking_company: str, pipeline: Any
) -> None:
    """Issue 22: the only trace of a refused record was `29 (+1 q)`; status now names the
    companies whose usage is unknown, per day: the table, the day's line, --json and the API."""
    import json

    assert cli("crm-drop", str(CRM_FILES[0]))[0] == 0
    code, out, _err = cli("run", "--date", "2026-10-01")
    assert code == 0 and f"usage unknown: 1 company ({idle_looking_company})" in out, out  # the day's line
    code, out, _err = cli("status")
    assert code == 0
    header, first = out.splitlines()[:2]
    assert header.split()[5] == "UNKNOWN" and first.split()[7] == "1", out
    said = [line for line in out.splitlines() if line.startswith("UNKNOWN: ")]
    assert said and said[0].endswith(f": 2026-10-01 1 company ({idle_looking_company})"), said
    assert "NULL (never 0)" in said[0] and "cannot be flagged" in said[0]
    code, out, _err = cli("status", "--date", "2026-10-01")
    assert code == 0 and f"2026-10-01 1 company ({idle_looking_company})" in out, out
    code, out, _err = cli("status", "--json")
    [day] = [d for d in json.loads(out)["days"] if d["date"] == "2026-10-01"]
    assert day["usage"]["unknown"] == 1 and day["usage"]["unknown_companies"] == [idle_looking_company]
    answer = pipeline.host.http("GET", "status", params={"date": "2026-10-01"})
    usage = json.loads(answer.get_body())["usage"]
    assert usage["unknown"] == 1 and usage["unknown_companies"] == [idle_looking_company]


# ------------------------------------------------- a contact later than the day (issue 22, case 5)


def test_a_contact_late_in_the_evening_west_of_utc_is_0_days_ago_never_minus_1(
    cli: Cli, tmp_path: Path
) -> None:
    """2026-10-01T23:30-05:00 is 2026-10-02 04:30 UTC: a day after the row's own day. (The golden
    snapshot's companies come along, so the day's usage is covered by the CRM.)"""
    drop = tmp_path / "companies_2026-10-01.csv"
    drop.write_text(
        CRM_FILES[0].read_text(encoding="utf-8")
        + "late-caller,Late Caller,US,retail,2026-10-01T23:30:00-05:00\n"
        + "on-time,On Time,US,retail,2026-09-30T12:00:00Z\n",
        encoding="utf-8",
    )
    assert cli("crm-drop", str(drop))[0] == 0
    code, _, err = cli("run", "--date", "2026-10-01")
    assert code == 0, err
    table = read_table(Path(Settings.from_env().local_data_dir))
    late, on_time = _row(table, "late-caller", "2026-10-01"), _row(table, "on-time", "2026-10-01")
    assert str(late["last_contact_at"]) == "2026-10-02 04:30:00"  # kept in UTC, as the contract says
    assert late["days_since_last_contact"] == 0
    assert on_time["days_since_last_contact"] == 1
