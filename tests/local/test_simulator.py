"""The local Usage API simulator (over real sockets) and the demo world it serves."""

from __future__ import annotations

import csv
import io
import itertools
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, date, datetime, timedelta
from email.utils import parsedate_to_datetime
from statistics import median
from typing import Any

import pytest
import requests

from shared.local.demo_world import CRM_COLUMNS, DemoWorld
from shared.local.simulator import NO_RESPONSE, Fault, RequestRecord, UsageApiSimulator

DAY = "2026-11-20"
EMPTY_DAY = "2026-11-21"
N_RECORDS = 1234  # 3 pages of 500: 500 + 500 + 234
KEY = "test-key"


def source(day: date) -> list[dict[str, Any]]:
    if day.isoformat() == EMPTY_DAY:
        return []
    return [
        {"company_id": f"c-{i:04d}", "date": day.isoformat(), "active_users": i % 80, "events": i * 3}
        for i in range(1, N_RECORDS + 1)
    ]


@pytest.fixture
def session() -> Iterator[requests.Session]:
    with requests.Session() as s:
        s.headers["Authorization"] = f"Bearer {KEY}"
        yield s


def start(**kwargs: Any) -> UsageApiSimulator:
    kwargs.setdefault("api_key", KEY)
    return UsageApiSimulator(source, **kwargs).start()


@pytest.fixture
def sim() -> Iterator[UsageApiSimulator]:
    api = start()
    yield api
    api.stop()


def get(
    session: requests.Session, api: UsageApiSimulator, timeout: float = 5.0, **params: Any
) -> requests.Response:
    return session.get(f"{api.base_url}/v2/usage", params=params, timeout=timeout)


def get_ok(session: requests.Session, api: UsageApiSimulator, **params: Any) -> dict[str, Any]:
    response = get(session, api, **params)
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


# ------------------------------------------------------------------ pagination


def test_pages_cover_every_record_once_with_has_next_and_total(
    sim: UsageApiSimulator, session: requests.Session
) -> None:
    pages = [get_ok(session, sim, date=DAY, page=p, page_size=500) for p in (1, 2, 3)]

    assert [p["has_next_page"] for p in pages] == [True, True, False]
    assert [p["total_pages"] for p in pages] == [3, 3, 3]
    assert [p["page"] for p in pages] == [1, 2, 3]
    assert [p["page_size"] for p in pages] == [500, 500, 500]
    assert [len(p["data"]) for p in pages] == [500, 500, 234]
    assert [r for p in pages for r in p["data"]] == source(date.fromisoformat(DAY))


def test_defaults_are_page_1_and_page_size_500(sim: UsageApiSimulator, session: requests.Session) -> None:
    body = get_ok(session, sim, date=DAY)
    assert (body["page"], body["page_size"], len(body["data"])) == (1, 500, 500)
    assert body["data"][0]["company_id"] == "c-0001"


def test_page_beyond_the_end_is_empty_and_final(sim: UsageApiSimulator, session: requests.Session) -> None:
    body = get_ok(session, sim, date=DAY, page=4, page_size=500)
    assert body["data"] == []
    assert body["has_next_page"] is False


def test_max_page_size_is_accepted(sim: UsageApiSimulator, session: requests.Session) -> None:
    body = get_ok(session, sim, date=DAY, page=2, page_size=1000)
    assert len(body["data"]) == N_RECORDS - 1000
    assert body["total_pages"] == 2


def test_day_without_records_is_one_empty_final_page(
    sim: UsageApiSimulator, session: requests.Session
) -> None:
    body = get_ok(session, sim, date=EMPTY_DAY, page=1)
    assert body["data"] == []
    assert body["has_next_page"] is False
    assert body["total_pages"] == 0  # documented choice: ceil(0 / page_size)


def test_total_pages_can_be_left_out(session: requests.Session) -> None:
    with start(include_total_pages=False) as api:
        first = get_ok(session, api, date=DAY, page=1, page_size=500)
        last = get_ok(session, api, date=DAY, page=3, page_size=500)
    assert "total_pages" not in first and "total_pages" not in last
    assert (first["has_next_page"], last["has_next_page"]) == (True, False)


# ------------------------------------------------------------------ auth and validation


@pytest.mark.parametrize("header", [None, "Bearer wrong-key", f"Basic {KEY}", KEY, "Bearer "])
def test_missing_or_invalid_bearer_is_401(sim: UsageApiSimulator, header: str | None) -> None:
    headers = {} if header is None else {"Authorization": header}
    response = requests.get(f"{sim.base_url}/v2/usage", params={"date": DAY}, headers=headers, timeout=5)
    assert response.status_code == 401
    assert "error" in response.json()
    assert sim.count(status=401) == 1


def test_bearer_scheme_is_case_insensitive(sim: UsageApiSimulator) -> None:
    headers = {"Authorization": f"bearer {KEY}"}
    response = requests.get(f"{sim.base_url}/v2/usage", params={"date": DAY}, headers=headers, timeout=5)
    assert response.status_code == 200


def test_no_api_key_means_no_auth() -> None:
    with UsageApiSimulator(source, api_key=None) as api:
        response = requests.get(f"{api.base_url}/v2/usage", params={"date": DAY}, timeout=5)
    assert response.status_code == 200


@pytest.mark.parametrize(
    "params",
    [
        {},
        {"date": ""},
        {"date": "2026-13-01"},
        {"date": "2026-02-30"},
        {"date": "20261120"},
        {"date": "yesterday"},
        {"date": DAY, "page": "0"},
        {"date": DAY, "page": "-1"},
        {"date": DAY, "page": "abc"},
        {"date": DAY, "page": "1.5"},
        {"date": DAY, "page_size": "0"},
        {"date": DAY, "page_size": "1001"},
        {"date": DAY, "page_size": "x"},
    ],
)
def test_bad_parameters_are_400_with_json_error(
    sim: UsageApiSimulator, session: requests.Session, params: dict[str, str]
) -> None:
    response = session.get(f"{sim.base_url}/v2/usage", params=params, timeout=5)
    assert response.status_code == 400
    assert isinstance(response.json()["error"], str)


def test_unknown_path_is_404(sim: UsageApiSimulator, session: requests.Session) -> None:
    response = session.get(f"{sim.base_url}/v1/usage", params={"date": DAY}, timeout=5)
    assert response.status_code == 404
    assert "error" in response.json()


def test_request_log_and_count(sim: UsageApiSimulator, session: requests.Session) -> None:
    get_ok(session, sim, date=DAY, page=2, page_size=100)
    get(session, sim, date=DAY, page=0)
    assert sim.requests_seen == [
        RequestRecord(DAY, 2, 100, 200, None),
        RequestRecord(DAY, 0, None, 400, None),
    ]
    assert sim.count() == 2
    assert sim.count(status=200, date=DAY, page=2) == 1
    assert sim.count(status=400) == 1
    assert sim.count(date=EMPTY_DAY) == 0


def test_stopped_simulator_refuses_connections(session: requests.Session) -> None:
    api = start()
    url = api.base_url
    get_ok(session, api, date=DAY)  # leaves a pooled keep-alive connection behind
    api.stop()
    with pytest.raises(requests.ConnectionError):
        session.get(f"{url}/v2/usage", params={"date": DAY}, timeout=2)
    with pytest.raises(RuntimeError):
        _ = api.base_url


# ------------------------------------------------------------------ faults


@pytest.mark.parametrize("status", [400, 401, 403, 404, 500, 502, 503, 504])
def test_status_fault_answers_that_status_then_is_spent(session: requests.Session, status: int) -> None:
    with start(faults=[Fault("status", status=status, times=2)]) as api:
        statuses = [get(session, api, date=DAY).status_code for _ in range(3)]
        assert statuses == [status, status, 200]
        assert api.count(status=status) == 2
        assert api.faults_remaining() == [0]


def test_fault_forever_never_runs_out(session: requests.Session) -> None:
    with start(faults=[Fault("status", status=503, times=-1)]) as api:
        assert {get(session, api, date=DAY).status_code for _ in range(4)} == {503}


def test_faults_match_date_and_page(session: requests.Session) -> None:
    with start(faults=[Fault("status", date=DAY, page=2, status=500)]) as api:
        assert get(session, api, date=DAY, page=1).status_code == 200
        assert get(session, api, date=EMPTY_DAY, page=2).status_code == 200
        assert get(session, api, date=DAY, page=2).status_code == 500
        assert get(session, api, date=DAY, page=2).status_code == 200


def test_faults_apply_in_order_skipping_spent_ones(session: requests.Session) -> None:
    faults = [Fault("status", status=502), Fault("status", status=504, times=2)]
    with start(faults=faults) as api:
        assert [get(session, api, date=DAY).status_code for _ in range(4)] == [502, 504, 504, 200]


def test_retry_after_seconds(session: requests.Session) -> None:
    with start(faults=[Fault("retry_after_seconds", seconds=7)]) as api:
        limited = get(session, api, date=DAY)
        after = get(session, api, date=DAY)
    assert limited.status_code == 429
    assert limited.headers["Retry-After"] == "7"
    assert after.status_code == 200


def test_retry_after_http_date(session: requests.Session) -> None:
    with start(faults=[Fault("retry_after_date", seconds=30)]) as api:
        before = datetime.now(UTC)
        limited = get(session, api, date=DAY)
        after = get(session, api, date=DAY)
    assert limited.status_code == 429
    header = limited.headers["Retry-After"]
    assert header.endswith(" GMT") and not header.isdigit()
    wait = (parsedate_to_datetime(header) - before).total_seconds()
    assert 30 <= wait <= 32
    assert after.status_code == 200


def test_reset_raises_connection_error_then_recovers(session: requests.Session) -> None:
    with start(faults=[Fault("reset", page=1)]) as api:
        with pytest.raises(requests.ConnectionError):
            get(session, api, date=DAY, page=1)
        assert get_ok(session, api, date=DAY, page=1)["page"] == 1
        assert api.count(status=NO_RESPONSE) == 1


def test_truncate_gives_invalid_json_with_matching_length(session: requests.Session) -> None:
    with start(faults=[Fault("truncate")]) as api:
        broken = get(session, api, date=DAY, page=3)
        whole = get(session, api, date=DAY, page=3)
    assert broken.status_code == 200
    assert int(broken.headers["Content-Length"]) == len(broken.content)
    assert len(broken.content) == len(whole.content) // 2
    assert whole.content.startswith(broken.content)
    with pytest.raises(requests.JSONDecodeError):
        broken.json()


def test_delay_exceeds_client_timeout_then_is_spent(session: requests.Session) -> None:
    # Bounds far from the delay, none near the expected times: a busy machine passes them too.
    api = start(faults=[Fault("delay", seconds=60.0)])
    try:
        started = time.monotonic()
        with pytest.raises(requests.Timeout):
            get(session, api, timeout=0.2, date=DAY)
        assert time.monotonic() - started < 20
        assert get(session, api, timeout=20, date=DAY).status_code == 200
    finally:
        stop_started = time.monotonic()
        api.stop()
    assert time.monotonic() - stop_started < 20  # stop() cuts the pending delay short


def test_drift_duplicate_repeats_last_record_of_previous_page(session: requests.Session) -> None:
    with start(faults=[Fault("drift_duplicate", times=-1)]) as api:
        first = get_ok(session, api, date=DAY, page=1, page_size=500)
        second = get_ok(session, api, date=DAY, page=2, page_size=500)
        assert api.count(page=1) == 1 and api.requests_seen[0].fault is None  # page 1 has no previous page
        assert api.requests_seen[1].fault == "drift_duplicate"
    assert len(first["data"]) == 500
    assert second["data"][0] == first["data"][-1]
    assert second["data"][1:] == source(date.fromisoformat(DAY))[500:1000]


def test_endless_never_says_last_page(session: requests.Session) -> None:
    with start(faults=[Fault("endless", times=-1)]) as api:
        pages = [get_ok(session, api, date=DAY, page=p, page_size=1000) for p in (1, 2, 3, 50)]
    assert all(p["has_next_page"] is True for p in pages)
    assert all("total_pages" not in p for p in pages)
    assert [len(p["data"]) for p in pages] == [1000, N_RECORDS - 1000, 0, 0]


def test_endless_is_spent_after_times(session: requests.Session) -> None:
    with start(faults=[Fault("endless", page=3, times=1)]) as api:
        assert get_ok(session, api, date=DAY, page=3)["has_next_page"] is True
        assert get_ok(session, api, date=DAY, page=3)["has_next_page"] is False


def test_unknown_fault_kind_is_rejected() -> None:
    with pytest.raises(ValueError):
        Fault("explode")  # type: ignore[arg-type]
    with pytest.raises(ValueError):
        Fault("status", status=418)


def test_every_fault_kind_has_its_answer() -> None:
    from shared.local.simulator import _FAULT_ANSWERS, FAULT_KINDS

    assert set(_FAULT_ANSWERS) == FAULT_KINDS  # a kind without one would answer nothing at all


# ------------------------------------------------------------------ latency and rate limit


def authorised_get(api: UsageApiSimulator, **params: Any) -> requests.Response:
    """A request on its own connection (a Session is not shared between threads here)."""
    with requests.Session() as own:
        own.headers["Authorization"] = f"Bearer {KEY}"
        return get(own, api, **params)


def test_latency_delays_every_answer(session: requests.Session) -> None:
    with start(latency_s=0.2) as api:
        for params in ({"date": DAY}, {"date": "nope"}):  # a 400 waits too
            started = time.monotonic()
            get(session, api, **params)
            assert time.monotonic() - started >= 0.2  # a lower bound: the server slept that long
        assert [r.status for r in api.requests_seen] == [200, 400]
        assert api.max_in_flight == 1  # one after the other


def test_latency_holds_no_lock_so_requests_overlap() -> None:
    n = 4
    # A latency no wait here reaches: all n are held at once however slowly a busy machine
    # sends them (a 0.5 s latency made the count depend on the four arriving within it).
    api = start(latency_s=60)
    try:
        with ThreadPoolExecutor(n) as pool:
            pending = [pool.submit(authorised_get, api, date=DAY) for _ in range(n)]
            deadline = time.monotonic() + 30  # reached only when the requests are served one by one
            while api.max_in_flight < n and time.monotonic() < deadline:
                time.sleep(0.01)
            assert api.max_in_flight == n  # all held at once, not served one by one
            api.stop()  # cuts the latency short
            for request in pending:
                with pytest.raises(requests.ConnectionError):
                    request.result()
    finally:
        api.stop()


def test_stop_cuts_latency_short() -> None:
    api = start(latency_s=30)
    with ThreadPoolExecutor(1) as pool:
        pending = pool.submit(authorised_get, api, date=DAY)
        deadline = time.monotonic() + 30  # reached only when the request never arrives
        while api.max_in_flight == 0 and time.monotonic() < deadline:
            time.sleep(0.01)
        assert api.max_in_flight == 1
        stop_started = time.monotonic()
        api.stop()
        assert time.monotonic() - stop_started < 10  # not the 30 s latency; 1 s was near a busy machine's own
        with pytest.raises(requests.ConnectionError):
            pending.result()


def test_rate_limit_answers_429_with_retry_after_1_and_logs_it(session: requests.Session) -> None:
    with start(rate_limit_rps=0.5) as api:  # 1 token, one more every 2 s
        first = get(session, api, date=DAY, page=2, page_size=100)
        second = get(session, api, date=DAY, page=2, page_size=100)
    assert first.status_code == 200
    assert second.status_code == 429
    assert second.headers["Retry-After"] == "1"
    assert "error" in second.json()
    assert api.requests_seen == [
        RequestRecord(DAY, 2, 100, 200, None),
        RequestRecord(DAY, 2, 100, 429, "rate_limit"),
    ]
    assert api.count(status=429) == 1


def test_rate_limit_burst_admits_that_many_at_once(session: requests.Session) -> None:
    with start(rate_limit_rps=0.5, rate_limit_burst=3) as api:
        statuses = [get(session, api, date=DAY).status_code for _ in range(4)]
    assert statuses == [200, 200, 200, 429]


def test_rate_limit_refills_over_time(session: requests.Session) -> None:
    # One token a second, burst max(1, 1 / 10) = 1: the second request comes within that second
    # even on a busy machine (at 10 per second it had to come within 0.1 s, and did not always).
    with start(rate_limit_rps=1) as api:
        assert get(session, api, date=DAY).status_code == 200
        assert get(session, api, date=DAY).status_code == 429
        deadline = time.monotonic() + 30  # reached only when no token ever comes back
        while (status := get(session, api, date=DAY).status_code) == 429 and time.monotonic() < deadline:
            time.sleep(0.05)
        assert status == 200  # a token is back
        assert get(session, api, date=DAY).status_code == 429  # and only one: the bucket holds 1


def test_rate_limit_comes_after_auth_and_before_faults(session: requests.Session) -> None:
    with start(rate_limit_rps=0.5, faults=[Fault("status", status=503)]) as api:
        assert requests.get(f"{api.base_url}/v2/usage", params={"date": DAY}, timeout=5).status_code == 401
        assert get(session, api, date=DAY).status_code == 503  # the 401 took no token; the fault one did
        assert get(session, api, date=DAY).status_code == 429
        assert api.faults_remaining() == [0]
    assert [(r.status, r.fault) for r in api.requests_seen] == [
        (401, None),
        (503, "status"),
        (429, "rate_limit"),
    ]


def test_latency_and_rate_limit_arguments_are_checked() -> None:
    with pytest.raises(ValueError):
        UsageApiSimulator(source, latency_s=-1)
    with pytest.raises(ValueError):
        UsageApiSimulator(source, rate_limit_rps=0)


# ------------------------------------------------------------------ demo world

FIRST = date(2026, 10, 1)
SEEDS = [7, 1, 2, 3, 42, 2026]


def all_usage(world: DemoWorld) -> dict[date, list[dict[str, Any]]]:
    return {
        world.first_day + timedelta(days=i): world.usage_records(world.first_day + timedelta(days=i))
        for i in range(world.days)
    }


def read_csv(content: bytes) -> tuple[list[str], list[dict[str, str]]]:
    reader = csv.DictReader(io.StringIO(content.decode("utf-8-sig"), newline=""))
    rows = list(reader)
    header = [h.lower() for h in reader.fieldnames or []]
    lowered = [{k.lower(): v for k, v in row.items()} for row in rows]
    return header, lowered


@pytest.fixture(scope="module")
def world() -> DemoWorld:
    return DemoWorld(FIRST)


def test_world_is_deterministic(world: DemoWorld) -> None:
    again = DemoWorld(FIRST)
    assert all_usage(again) == all_usage(world)
    assert [again.crm_snapshot_csv(d) for d in again.snapshot_days()] == [
        world.crm_snapshot_csv(d) for d in world.snapshot_days()
    ]
    other = DemoWorld(FIRST, seed=world.seed + 1)
    assert all_usage(other) != all_usage(world)


def test_world_size_and_record_shape(world: DemoWorld) -> None:
    usage = all_usage(world)
    assert world.days >= 14 and len(usage) == world.days
    ids = {r["company_id"] for records in usage.values() for r in records}
    assert len(ids) >= 50
    for day, records in usage.items():
        assert len({r["company_id"] for r in records}) == len(records)  # no duplicates within a day
        for r in records:
            assert set(r) == {"company_id", "date", "active_users", "events"}
            assert r["date"] == day.isoformat()
            assert 0 <= r["active_users"] <= 80 and r["events"] >= 0
            assert (r["active_users"] == 0) == (r["events"] == 0)
    first = usage[FIRST]
    assert [r["company_id"] for r in first] != sorted(r["company_id"] for r in first)  # shuffled
    assert world.usage_records(FIRST - timedelta(days=1)) == []


def test_weekends_are_quieter(world: DemoWorld) -> None:
    usage = all_usage(world)
    weekday = [sum(r["active_users"] for r in rs) for d, rs in usage.items() if d.weekday() < 5]
    weekend = [sum(r["active_users"] for r in rs) for d, rs in usage.items() if d.weekday() >= 5]
    assert weekend and max(weekend) < min(weekday)


@pytest.mark.parametrize("seed", SEEDS)
def test_some_companies_churn_to_zero_and_vanish(seed: int) -> None:
    world = DemoWorld(FIRST, seed=seed)
    churners = world.churning_companies()
    assert 0.10 * world.companies <= len(churners) <= 0.20 * world.companies
    usage = all_usage(world)
    series = {
        cid: [next((r["active_users"] for r in rs if r["company_id"] == cid), None) for rs in usage.values()]
        for cid in churners
    }
    vanished = [cid for cid, s in series.items() if s[-1] is None]
    assert len(vanished) >= len(churners) // 2
    for cid in vanished:
        s = series[cid]
        assert s[0] is not None and max(v for v in s if v is not None) > 0  # active before churning
        gone = s.index(None)
        assert all(v is None for v in s[gone:])  # never comes back
        assert s[gone - 1] == 0  # last seen with zero users
    steady = {r["company_id"] for r in usage[FIRST]} - set(churners)
    assert all(steady <= {r["company_id"] for r in rs} for rs in usage.values())  # only churners leave
    # Vanishing is staggered: at most one company leaves the API per day.
    exits = [series[cid].index(None) for cid in vanished]
    assert len(exits) == len(set(exits))


@pytest.mark.parametrize("seed", SEEDS)
def test_record_count_never_drops_more_than_10_percent(seed: int) -> None:
    world = DemoWorld(FIRST, seed=seed)
    counts = [len(records) for records in all_usage(world).values()]
    assert counts[-1] < counts[0]  # churn is visible in the counts
    for i in range(1, len(counts)):
        baseline = median(counts[max(0, i - 7) : i])
        assert counts[i] >= 0.9 * baseline, (i, counts)


def test_snapshot_days_start_on_first_day_without_long_gaps(world: DemoWorld) -> None:
    days = world.snapshot_days()
    assert days[0] == FIRST and days[-1] <= world.last_day
    gaps = {(b - a).days for a, b in itertools.pairwise(days)}
    assert gaps <= {2, 3}
    assert world.last_day - days[-1] <= timedelta(days=5)
    assert world.crm_file_name(date(2026, 10, 3)) == "companies_2026-10-03.csv"
    with pytest.raises(ValueError):
        world.crm_snapshot_csv(FIRST + timedelta(days=1))


def test_crm_drops_parse_and_list_every_company(world: DemoWorld) -> None:
    crm_ids = {f"c-{i:04d}" for i in range(1, world.companies + 1)}
    usage_ids = {r["company_id"] for rs in all_usage(world).values() for r in rs}
    for day in world.snapshot_days():
        header, rows = read_csv(world.crm_snapshot_csv(day))
        name_column = "company_name" if "company_name" in header else "name"
        assert {"company_id", name_column, "country", "industry_tag", "last_contact_at"} <= set(header)
        ids = [row["company_id"] for row in rows]
        assert set(ids) - {""} == crm_ids
        blank = ids.count("")
        assert blank <= 1 and blank / len(rows) < 0.05
        exported = datetime(day.year, day.month, day.day, tzinfo=UTC)
        for row in rows:
            if row["last_contact_at"]:
                stamp = datetime.fromisoformat(row["last_contact_at"])
                as_utc = stamp if stamp.tzinfo else stamp.replace(tzinfo=UTC)  # no offset means UTC
                assert as_utc < exported, (day, row)  # no contact from the future
    only_usage = usage_ids - crm_ids
    assert 2 <= len(only_usage) <= 3
    assert sorted(only_usage) == world.usage_only_companies()


def test_crm_drops_come_in_awkward_shapes(world: DemoWorld) -> None:
    files = {world.crm_variant(d): world.crm_snapshot_csv(d) for d in world.snapshot_days()}
    assert set(files) == {"standard", "bom_crlf_upper", "renamed_extra", "bad_row"}

    bom = files["bom_crlf_upper"]
    assert bom.startswith(b"\xef\xbb\xbf") and bom.count(b"\r\n") == bom.count(b"\n")
    assert bom[3:].split(b"\r\n")[0] == ",".join(CRM_COLUMNS).upper().encode()
    assert b"\r" not in files["standard"] and not files["standard"].startswith(b"\xef\xbb\xbf")

    renamed_header, renamed_rows = read_csv(files["renamed_extra"])
    assert "company_name" in renamed_header and "name" not in renamed_header
    assert "account_owner" in renamed_header
    assert any(row["account_owner"] for row in renamed_rows)

    _, bad_rows = read_csv(files["bad_row"])
    assert [row["company_id"] for row in bad_rows].count("") == 1
    _, standard_rows = read_csv(files["standard"])
    assert "" not in [row["company_id"] for row in standard_rows]


def test_crm_values_are_realistically_messy(world: DemoWorld) -> None:
    stamps: list[str] = []
    names: list[str] = []
    for day in world.snapshot_days():
        _, rows = read_csv(world.crm_snapshot_csv(day))
        stamps += [row["last_contact_at"] for row in rows if row["company_id"]]
        names += [row.get("name") or row.get("company_name") or "" for row in rows]
    assert any("," in n for n in names) and any('"' in n for n in names)
    assert any(not n.isascii() for n in names)
    assert "" in stamps  # never contacted
    assert any(len(s) == 10 for s in stamps)  # date only
    assert any(s.endswith("Z") for s in stamps)
    assert any(s.endswith("+02:00") for s in stamps)
    parsed = [datetime.fromisoformat(s) for s in stamps if s]
    as_utc = [p if p.tzinfo else p.replace(tzinfo=UTC) for p in parsed]
    ages = [(datetime(2026, 10, 21, tzinfo=UTC) - p).days for p in as_utc]
    assert min(ages) <= 3 and max(ages) >= 30  # recent and weeks/months old


def test_simulator_serves_the_demo_world(world: DemoWorld, session: requests.Session) -> None:
    day = FIRST + timedelta(days=5)
    with UsageApiSimulator(world.usage_records, api_key=KEY) as api:
        served: list[dict[str, Any]] = []
        page = 1
        while True:
            body = get_ok(session, api, date=day.isoformat(), page=page, page_size=25)
            served += body["data"]
            if not body["has_next_page"]:
                break
            page += 1
    assert served == world.usage_records(day)
    assert page == body["total_pages"] > 1


def test_a_page_is_served_from_the_source_without_copying_the_day() -> None:
    """A request reads its page's slice of what the source holds; nothing walks the whole day."""
    from collections.abc import Sequence

    class Day(Sequence[dict[str, Any]]):
        def __init__(self, n: int) -> None:
            self.n, self.read = n, 0

        def __len__(self) -> int:
            return self.n

        def __getitem__(self, index: Any) -> Any:
            if not isinstance(index, slice):
                self.read += 1
                return {"company_id": f"c-{index}", "date": "2026-10-01", "active_users": 1, "events": 2}
            return [self[i] for i in range(*index.indices(self.n))]

        def __iter__(self) -> Any:
            raise AssertionError("the whole day was copied")

    day = Day(100_000)
    with UsageApiSimulator(lambda d: day, api_key=None) as api:
        body = requests.get(f"{api.base_url}/v2/usage?date=2026-10-01&page=3&page_size=10", timeout=5).json()
    assert [r["company_id"] for r in body["data"]] == [f"c-{i}" for i in range(20, 30)]
    assert body["total_pages"] == 10_000 and day.read == 10
