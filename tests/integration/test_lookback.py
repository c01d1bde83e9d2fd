"""The lookback (contract section 1, issue 23): `run` without --date does what the daily timer
does, yesterday plus a re-check of the USAGE_API_LOOKBACK_DAYS days before it that were fetched
before. An unchanged day costs its API requests and a ledger line, nothing else; a corrected
day lands as a new fetch and the table ends up as a from-scratch computation over the
corrected data.

The clock of the local services is shifted so that "today" is 2026-10-06 of the golden case
(yesterday 2026-10-05; re-checked 2026-10-02..04), and still moves, so a row rewritten by this
run would get a new loaded_at.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any

import pytest

import shared.local.pipeline
from shared.domain import names
from shared.local.simulator import UsageApiSimulator
from tests.reference import diff_tables, expected_table
from tests.support import GOLDEN, read_table
from tests.test_reference import stage_golden

Cli = Callable[..., tuple[int, str, str]]
TODAY = date(2026, 10, 6)
FETCHED = ["2026-10-01", "2026-10-02", "2026-10-03", "2026-10-04"]
RECHECKED = ["2026-10-02", "2026-10-03", "2026-10-04"]
YESTERDAY = "2026-10-05"
CORRECTED = "2026-10-03"


@pytest.fixture
def golden_today(monkeypatch: pytest.MonkeyPatch, utc_today: date) -> None:
    """The local services' clock runs as if today were TODAY (a moving clock, shifted)."""
    shift = utc_today - TODAY
    real_build = shared.local.pipeline.build_local

    def build(*args: Any, **kwargs: Any) -> Any:
        services = real_build(*args, **kwargs)
        services.clock = lambda: datetime.now(UTC) - shift
        return services

    monkeypatch.setattr(shared.local.pipeline, "build_local", build)


def drop_crm(cli: Cli, days: list[str]) -> None:
    for path in GOLDEN.crm_files():
        if any(d in path.name for d in days):
            code, _out, err = cli("crm-drop", str(path))
            assert code == 0, err


def raw_blobs(data_dir: Path) -> set[str]:
    root = data_dir / "blobs" / names.RAW_CONTAINER
    return {str(p.relative_to(root)) for p in root.rglob("*") if p.is_file()}


def by_key(rows: list[dict[str, Any]]) -> dict[tuple[str, date], dict[str, Any]]:
    return {(r["company_id"], r["activity_date"]): r for r in rows}


def fetch_entry(cli: Cli, day: str) -> dict[str, Any]:
    return ledger_view(cli, day, "fetch")


def ledger_view(cli: Cli, day: str, part: str) -> dict[str, Any]:
    """The day's entry of one ledger partition, as `status --json` shows it."""
    code, out, err = cli("status", "--date", day, "--json")
    assert code == 0, err
    return dict(json.loads(out)[part] or {})


def test_run_without_date_rechecks_the_lookback_and_heals_a_corrected_day(
    cli: Cli,
    local_env: Path,
    api: UsageApiSimulator,
    api_records: dict[str, list[dict[str, Any]]],
    golden_today: None,
) -> None:
    drop_crm(cli, [*FETCHED, YESTERDAY])
    code, _out, err = cli("backfill", "--from", FETCHED[0], "--to", FETCHED[-1])
    assert code == 0, err
    before = by_key(read_table(local_env))
    blobs_before = raw_blobs(local_env)

    # The API corrects one company's counts on CORRECTED, after it was fetched.
    corrected = api_records[CORRECTED][0]
    corrected["active_users"] += 5
    corrected["events"] += 50
    asked_before = len(api.requests_seen)

    code, out, err = cli("run")

    assert code == 0, err
    asked = [r for r in api.requests_seen[asked_before:]]
    # Yesterday fetched, the three days before it re-checked (every page once), 10-01 not asked.
    assert {r.date for r in asked} == {*RECHECKED, YESTERDAY}
    pages = {d: -(-len(api_records[d]) // 10) for d in [*RECHECKED, YESTERDAY]}
    assert len(asked) == sum(pages.values())
    # Blobs: yesterday's pages and manifest; for the corrected day only the changed page and a
    # manifest; nothing for the unchanged days.
    new = raw_blobs(local_env) - blobs_before
    assert {b.split("/")[1] for b in new} == {CORRECTED, YESTERDAY}, sorted(new)
    assert len([b for b in new if CORRECTED in b]) == 2, sorted(new)  # page-1 + manifest
    # The ledger (and so status) says when each day was last checked and what it found.
    for day in RECHECKED:
        entry = fetch_entry(cli, day)
        assert entry["last_check"] == ("changed" if day == CORRECTED else "unchanged"), entry
        assert entry["last_checked_at"].startswith(TODAY.isoformat())
        assert entry["status"] == "complete"
    assert "unchanged" in out and "changed" in out

    # The table is the from-scratch computation over the corrected data ...
    staged = stage_golden()
    usage = {d: dict(v) for d, v in staged.usage.items() if d.isoformat() in [*FETCHED, YESTERDAY]}
    day = date.fromisoformat(CORRECTED)
    users, events = usage[day][corrected["company_id"]]
    usage[day][corrected["company_id"]] = (users + 5, events + 50)
    snapshots = {d: s for d, s in staged.snapshots.items() if d <= date.fromisoformat(YESTERDAY)}
    after = read_table(local_env)
    differences = diff_tables(after, expected_table(usage, snapshots))
    assert differences == [], "\n".join(differences[:20])
    # ... and the rows the correction does not reach (before CORRECTED, or other companies whose
    # values did not change) were not touched: loaded_at stays.
    after_by_key = by_key(after)
    for key, row in before.items():
        company, activity = key
        if activity < day or company != corrected["company_id"]:
            assert after_by_key[key]["loaded_at"] == row["loaded_at"], key
    assert (
        after_by_key[(corrected["company_id"], day)]["loaded_at"]
        != before[(corrected["company_id"], day)]["loaded_at"]
    )

    # Again, nothing changed upstream: API requests and ledger lines only.
    table = read_table(local_env)
    blobs = raw_blobs(local_env)
    code, out, err = cli("run")
    assert code == 0, err
    assert raw_blobs(local_env) == blobs
    assert read_table(local_env) == table
    assert fetch_entry(cli, CORRECTED)["last_check"] == "unchanged"
    # reconcile says when the day was last checked against the API.
    code, out, err = cli("reconcile", "--date", RECHECKED[0], "--skip-api")
    assert f"last checked against the API {TODAY.isoformat()}" in out and "(unchanged)" in out, out


def test_the_same_records_reordered_and_repaged_land_as_a_new_fetch_and_rebuild(
    cli: Cli,
    local_env: Path,
    api: UsageApiSimulator,
    api_records: dict[str, list[dict[str, Any]]],
    golden_today: None,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Contract section 1: a re-check compares the day's pages with the last landed ones by the
    manifest's checksums. The same records reordered and repaged are different pages: the day
    lands as a new fetch and is rebuilt, and the table stays the from-scratch computation."""
    drop_crm(cli, [*FETCHED, YESTERDAY])
    code, _out, err = cli("backfill", "--from", FETCHED[0], "--to", FETCHED[-1])
    assert code == 0, err
    blobs = raw_blobs(local_env)
    generations = {day: fetch_entry(cli, day)["generation"] for day in RECHECKED}
    built = {day: ledger_view(cli, day, "days")["built_at"] for day in FETCHED}
    # The API now sends every re-checked day's records in reverse order, 7 a page instead of 10,
    # and one count as 12.0 instead of 12: every page's bytes differ, the records do not.
    for day in RECHECKED:
        api_records[day].reverse()
        api_records[day][0]["events"] = float(api_records[day][0]["events"])
    monkeypatch.setenv("USAGE_API_PAGE_SIZE", "7")

    code, _out, err = cli("run")

    assert code == 0, err
    new = raw_blobs(local_env) - blobs
    for day in RECHECKED:
        entry = fetch_entry(cli, day)
        assert entry["last_check"] == "changed", entry
        assert entry["generation"] == generations[day] + 1, entry  # a new fetch of the day
        assert entry["manifest"] in new, entry
        manifest = json.loads((local_env / "blobs" / names.RAW_CONTAINER / entry["manifest"]).read_text())
        assert "records_digest" not in manifest, manifest  # no digest computed or stored
        assert len(manifest["pages"]) == -(-len(api_records[day]) // 7), manifest
    for day in RECHECKED:  # rebuilt (10-01, before the first changed day, is not)
        assert ledger_view(cli, day, "days")["built_at"] != built[day], day
    assert ledger_view(cli, FETCHED[0], "days")["built_at"] == built[FETCHED[0]]
    staged = stage_golden()
    usage = {d: v for d, v in staged.usage.items() if d.isoformat() in [*FETCHED, YESTERDAY]}
    snapshots = {d: s for d, s in staged.snapshots.items() if d <= date.fromisoformat(YESTERDAY)}
    differences = diff_tables(read_table(local_env), expected_table(usage, snapshots))
    assert differences == [], "\n".join(differences[:20])


def test_lookback_zero_rechecks_nothing(
    cli: Cli,
    local_env: Path,
    api: UsageApiSimulator,
    golden_today: None,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("USAGE_API_LOOKBACK_DAYS", "0")
    drop_crm(cli, [*FETCHED, YESTERDAY])
    code, _out, err = cli("backfill", "--from", FETCHED[0], "--to", FETCHED[-1])
    assert code == 0, err
    asked_before = len(api.requests_seen)

    code, out, err = cli("run")

    assert code == 0, err
    assert {r.date for r in api.requests_seen[asked_before:]} == {YESTERDAY}
    assert YESTERDAY in out and " built " in out


def test_a_day_never_fetched_in_the_window_is_fetched_and_says_so(
    cli: Cli, local_env: Path, api: UsageApiSimulator, golden_today: None
) -> None:
    drop_crm(cli, [*FETCHED, YESTERDAY])
    code, _out, err = cli("run", "--date", "2026-10-04")
    assert code == 0, err
    asked_before = len(api.requests_seen)

    code, out, err = cli("run")

    assert code == 0, err
    assert {r.date for r in api.requests_seen[asked_before:]} == {*RECHECKED, YESTERDAY}
    for day in ("2026-10-02", "2026-10-03"):
        line = next(line for line in out.splitlines() if line.startswith(day))
        assert " built " in line and "(never fetched before: fetched by the lookback)" in line, out
        assert fetch_entry(cli, day)["status"] == "complete"
    assert "(last checked against the API" in next(line for line in out.splitlines() if "2026-10-04" in line)


def test_a_failed_day_in_the_window_is_fetched_again_once_per_run(
    cli: Cli,
    local_env: Path,
    api: UsageApiSimulator,
    api_records: dict[str, list[dict[str, Any]]],
    start_api: Callable[..., UsageApiSimulator],
    golden_today: None,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from shared.local.simulator import Fault

    drop_crm(cli, [*FETCHED, YESTERDAY])
    refusing = start_api(api_records, faults=[Fault(kind="status", status=404, date=CORRECTED, times=-1)])
    monkeypatch.setenv("USAGE_API_BASE_URL", refusing.base_url)
    code, _out, err = cli("backfill", "--from", FETCHED[0], "--to", FETCHED[-1])
    assert code == 1 and "404" in err, err
    assert fetch_entry(cli, CORRECTED)["status"] == "failed"

    code, out, err = cli("run")  # the API still refuses it: asked once more, and said so

    assert code == 1 and f"{CORRECTED}: fetch failed" in err, err
    assert refusing.count(date=CORRECTED) == 2  # the backfill's request, and this run's one
    line = next(line for line in out.splitlines() if line.startswith(CORRECTED))
    assert "fetch failed" in line and "fetched again by the lookback, once per daily run" in line, out

    monkeypatch.setenv("USAGE_API_BASE_URL", api.base_url)  # the API is fixed
    code, out, err = cli("run")

    assert code == 0, err
    pages = -(-len(api_records[CORRECTED]) // 10)
    assert api.count(date=CORRECTED) == pages  # fetched, not re-checked and then fetched
    line = next(line for line in out.splitlines() if line.startswith(CORRECTED))
    assert " built " in line and "fetched again by the lookback" in line, out
    code, out, err = cli("run")  # from now on it is re-checked like any fetched day
    assert code == 0, err
    assert "(last checked against the API" in next(ln for ln in out.splitlines() if ln.startswith(CORRECTED))


def test_usage_api_max_rps_holds_over_the_whole_lookback_not_per_day(
    cli: Cli,
    local_env: Path,
    api: UsageApiSimulator,
    golden_today: None,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    rate, burst = 2, 1  # USAGE_API_MAX_RPS, and the limiter's burst
    drop_crm(cli, [*FETCHED, YESTERDAY])
    code, _out, err = cli("backfill", "--from", FETCHED[0], "--to", FETCHED[-1])
    assert code == 0, err
    monkeypatch.setenv("USAGE_API_MAX_RPS", str(rate))
    asked_before = len(api.requests_seen)

    code, _out, err = cli("run")  # yesterday and three re-checked days: 16 requests

    assert code == 0, err
    times = api.request_times[asked_before:]
    assert {r.date for r in api.requests_seen[asked_before:]} == {*RECHECKED, YESTERDAY}
    assert len(times) >= 12
    # Counted on the times the simulator recorded: between any two requests at most
    # rate x (their distance) + burst requests, and one more for the network's jitter.
    worst = max(
        (j - i + 1) - (rate * (times[j] - times[i]) + burst)
        for i in range(len(times))
        for j in range(i, len(times))
    )
    assert worst <= 1, (
        f"{[round(t - times[0], 2) for t in times]} {worst:.2f} requests over USAGE_API_MAX_RPS={rate} in some window"
    )
    # And so no 1-second window of recorded requests holds more than rate + burst.
    assert max(sum(1 for u in times if t <= u < t + 1) for t in times) <= rate + burst


def test_run_without_date_respects_the_wait_the_api_asked_for_yesterday(
    cli: Cli,
    local_env: Path,
    api_records: dict[str, list[dict[str, Any]]],
    start_api: Callable[..., UsageApiSimulator],
    golden_today: None,
    monkeypatch: pytest.MonkeyPatch,
    utc_today: date,
) -> None:
    import sqlite3
    import time

    import shared.adapters.bus_in_process as bus_in_process
    from shared.local.simulator import Fault

    # The bus's clock runs as the services' (golden_today): the scheduled message is not due.
    shift = utc_today - TODAY
    monkeypatch.setattr(bus_in_process, "utc_now", lambda: datetime.now(UTC) - shift)

    waiting = start_api(
        api_records,
        faults=[Fault(kind="retry_after_seconds", date=YESTERDAY, page=2, seconds=86400, times=-1)],
    )
    monkeypatch.setenv("USAGE_API_BASE_URL", waiting.base_url)
    monkeypatch.setenv("USAGE_API_CONCURRENCY", "1")
    monkeypatch.setenv("USAGE_API_LOOKBACK_DAYS", "0")
    drop_crm(cli, [YESTERDAY])

    def scheduled() -> list[str]:
        with sqlite3.connect(local_env / "bus.sqlite3") as con:
            rows = con.execute("SELECT message_id FROM messages WHERE message_id LIKE 'later-%'").fetchall()
        return [r[0] for r in rows]

    code, _out, err = cli("run")
    assert code == 75, err
    asked = waiting.count(date=YESTERDAY)
    retry_at = fetch_entry(cli, YESTERDAY)["retry_at"]
    assert len(scheduled()) == 1

    # The timer's path again, before that time: the API is not asked, nothing more is scheduled.
    code, _out, err = cli("run")
    assert code in (0, 75), err
    assert waiting.count(date=YESTERDAY) == asked
    assert fetch_entry(cli, YESTERDAY)["retry_at"] == retry_at
    assert len(scheduled()) == 1

    # A person's explicit request goes early; the scheduled message stays the one there was
    # (the clock's second turned, so an id stamped to the second would differ).
    second = int(time.time())
    while int(time.time()) == second:  # waits for the turn, not for a guess at it
        time.sleep(0.01)
    code, _out, err = cli("run", "--date", YESTERDAY)
    assert code == 75, err
    assert waiting.count(date=YESTERDAY) > asked
    assert len(scheduled()) == 1
    assert fetch_entry(cli, YESTERDAY)["status"] == "waiting"


def test_status_reads_beside_a_bad_lookback_setting_and_says_it_in_one_line(
    cli: Cli, local_env: Path, api: UsageApiSimulator, monkeypatch: pytest.MonkeyPatch
) -> None:
    drop_crm(cli, [FETCHED[0]])
    assert cli("run", "--date", FETCHED[0])[0] == 0
    monkeypatch.setenv("USAGE_API_LOOKBACK_DAYS", "99")

    code, out, err = cli("status")

    assert code == 0 and f"{FETCHED[0]}  " in out, err
    assert err.count("\n") == 1 and err.startswith("warning: USAGE_API_LOOKBACK_DAYS must be"), err
    assert "status shows what is stored" in err
    code, _out, err = cli("run")  # what uses it still refuses
    assert code == 2 and err.startswith("error: setting USAGE_API_LOOKBACK_DAYS"), err
    monkeypatch.setenv("CHURN_MIN_ROLLING_USERS", "-1")  # one status uses: it refuses, naming it
    code, _out, err = cli("status")
    assert code == 2 and err.startswith("error: setting CHURN_MIN_ROLLING_USERS"), err
