"""Replays coalesced and bounded (issue 21, item 6), and a body no number can break (item 7).

A replay of a day whose fetch is running adds nothing; "running" is a fetch in progress now,
never one that ended (done, failed, given up, interrupted) or whose holder died."""

from __future__ import annotations

import _thread
import json
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from typing import Any

import pytest

from shared.domain import names
from shared.local.pipeline import LocalPipeline
from shared.local.simulator import Fault, UsageApiSimulator
from shared.services import replay
from shared.services.fetch import ALIVE_AT
from tests.support import make_records

NOW = datetime(2026, 12, 7, 10, 0, 5, tzinfo=UTC)
DAY = "2026-06-01"  # three pages of ten records (local_env's page size)
FAILS_ONCE = "2026-06-02"  # its first request answers 404: that fetch fails


@dataclass
class ApiScript:
    """What the API does while it answers: `during` runs (once each) inside the next request,
    while the fetch that asked is running; `down` answers 500 to every request."""

    during: list[Callable[[], None]] = field(default_factory=list)
    down: bool = False


@pytest.fixture
def script() -> ApiScript:
    return ApiScript()


@pytest.fixture
def api(start_api: Callable[..., UsageApiSimulator], script: ApiScript) -> UsageApiSimulator:
    def records(day: date) -> list[dict[str, Any]]:
        while script.during:
            script.during.pop(0)()
        if script.down:
            raise ConnectionError("down")  # the simulator answers 500
        return make_records(30, day.isoformat())

    return start_api(records, faults=[Fault("status", date=FAILS_ONCE, status=404)])


def post(pipe: LocalPipeline, body: Any, key: str = "") -> tuple[int, dict[str, Any], dict[str, str]]:
    raw = body if isinstance(body, bytes) else json.dumps(body).encode()
    handler = pipe.host.routes[("POST", "replay")]
    import azure.functions as func

    request = func.HttpRequest(
        method="POST",
        url="http://localhost:7071/api/replay",
        params={},
        headers={"content-type": "application/json", **({"x-functions-key": key} if key else {})},
        body=raw,
    )
    response = handler.call(**{handler.arg_name: request})
    return response.status_code, json.loads(response.get_body()), dict(response.headers)


def forced_range(first: date) -> dict[str, Any]:
    return {"from": first.isoformat(), "to": (first + timedelta(days=92)).isoformat(), "force": True}


def test_forty_posts_of_one_forced_range_queue_it_once(pipeline: LocalPipeline) -> None:
    pipeline.services.clock = lambda: NOW
    answers = [post(pipeline, forced_range(date(2026, 6, 1))) for _ in range(40)]

    assert all(code == 202 for code, _, _ in answers)
    assert pipeline.host.bus.depth(names.FETCH_QUEUE) == 93
    first, *rest = [payload for _, payload, _ in answers]
    assert len(first["queued"]) == 93 and first["already_queued"] == []
    assert all(
        p["queued"] == [] and len(p["already_queued"]) == 93 and "nothing was added" in p["note"]
        for p in rest
    )


def test_a_forced_request_is_queued_over_a_plain_one(pipeline: LocalPipeline) -> None:
    pipeline.services.clock = lambda: NOW
    assert post(pipeline, {"date": "2026-06-01"})[1]["queued"] == ["2026-06-01"]
    assert post(pipeline, {"date": "2026-06-01", "force": True})[1]["queued"] == ["2026-06-01"]
    assert post(pipeline, {"date": "2026-06-01"})[1]["queued"] == []


def test_one_key_queues_a_bounded_number_of_forced_days_a_minute(pipeline: LocalPipeline) -> None:
    pipeline.services.clock = lambda: NOW
    assert post(pipeline, forced_range(date(2026, 1, 1)), key="k1")[0] == 202
    assert post(pipeline, forced_range(date(2026, 4, 4)), key="k1")[0] == 202
    code, payload, headers = post(pipeline, forced_range(date(2026, 7, 6)), key="k1")

    assert code == 429 and headers.get("Retry-After") == "55", (payload, headers)
    assert f"at most {replay.FORCED_DAYS_PER_MINUTE} a minute" in payload["error"]
    assert pipeline.host.bus.depth(names.FETCH_QUEUE) == 186
    assert post(pipeline, forced_range(date(2026, 7, 6)), key="k2")[0] == 202  # another key
    pipeline.services.clock = lambda: NOW + timedelta(minutes=1)
    assert post(pipeline, forced_range(date(2026, 7, 6)), key="k1")[0] == 202  # the next minute


def test_a_number_of_five_thousand_digits_is_a_bad_request(pipeline: LocalPipeline) -> None:
    for body in (b'{"date": ' + b"9" * 5000 + b"}", b'{"from": "2026-06-01", "to": ' + b"1" * 5000 + b"}"):
        code, payload, _ = post(pipeline, body)
        assert code == 400 and "number too long" in payload["error"], payload


# --- a day whose fetch is running ----------------------------------------------------------


def fetch_of(pipe: LocalPipeline, day: str = DAY) -> dict[str, Any]:
    entry = pipe.services.ledger.get(names.FETCH, day)
    return dict(entry.data) if entry else {}


def page_ones(api: UsageApiSimulator, day: str = DAY) -> int:
    """How many fetches of the day asked the API for its first page."""
    return api.count(date=day, page=1, status=200)


def test_a_replay_while_the_day_is_fetched_adds_nothing_unless_it_forces_more(
    pipeline: LocalPipeline, api: UsageApiSimulator, script: ApiScript
) -> None:
    """Before: a day's queued mark was cleared when its fetch started, so a replay during the
    fetch queued it again (the fresh-clone review: 184 fetches for 93 days in 40 POSTs)."""
    answers: list[tuple[int, dict[str, Any], dict[str, str]]] = []
    assert post(pipeline, {"date": DAY})[1]["queued"] == [DAY]
    script.during += [
        lambda: answers.append(post(pipeline, {"date": DAY})),
        lambda: answers.append(post(pipeline, {"date": DAY, "force": True})),  # forced is more
    ]
    pipeline.host.drain()

    (plain_code, plain, _), (_, forced, _) = answers
    assert plain_code == 202 and plain["queued"] == [] and plain["running"] == [DAY], plain
    assert plain["already_queued"] == [] and "being fetched now; nothing was added" in plain["note"]
    assert forced["queued"] == [DAY] and forced["running"] == [], forced
    assert page_ones(api) == 2  # the plain fetch, then the forced one
    assert fetch_of(pipeline)["status"] == "complete" and fetch_of(pipeline)["force"] is True


def test_a_forced_replay_while_a_forced_fetch_runs_adds_nothing(
    pipeline: LocalPipeline, api: UsageApiSimulator, script: ApiScript
) -> None:
    """The decision in docs/reliability.md (replays): a forced fetch that started before the
    request covers it; every page it has not landed yet is read as the API says it now."""
    answers: list[tuple[int, dict[str, Any], dict[str, str]]] = []
    assert post(pipeline, {"date": DAY, "force": True})[1]["queued"] == [DAY]
    script.during.append(lambda: answers.append(post(pipeline, {"date": DAY, "force": True})))
    pipeline.host.drain()

    assert answers[0][1]["queued"] == [] and answers[0][1]["running"] == [DAY], answers
    assert page_ones(api) == 1 and pipeline.host.bus.depth(names.FETCH_QUEUE) == 0


def end_the_fetch(pipeline: LocalPipeline, api: UsageApiSimulator, script: ApiScript, how: str) -> str:
    """Run a fetch that ends `how` without landing its day; returns the day."""
    if how == "failed":  # a permanent error: the run fails with an alert
        assert post(pipeline, {"date": FAILS_ONCE})[1]["queued"] == [FAILS_ONCE]
        pipeline.host.drain()
        assert fetch_of(pipeline, FAILS_ONCE)["status"] == "failed"
        return FAILS_ONCE
    assert post(pipeline, {"date": DAY})[1]["queued"] == [DAY]
    if how == "given up":  # every delivery raised, until the request was dead-lettered
        script.down = True
        report = pipeline.host.drain()
        script.down = False
        assert report.dead_lettered, report
    else:  # Ctrl-C in the middle of the fetch
        script.during.append(_thread.interrupt_main)
        with pytest.raises(KeyboardInterrupt):
            pipeline.host.drain()
    entry = fetch_of(pipeline)
    assert entry["status"] == "running" and not entry.get("alive_at")  # unfinished, not alive
    if how == "given up":
        # The hour-long lease outlives such a fetch (the attempt reverted in 281ad64 took it
        # for life); the heartbeat does not. A stop signal also ends the lease (issue 23 (d)).
        assert datetime.fromisoformat(entry["lease_until"]) > pipeline.services.clock()
    return DAY


@pytest.mark.parametrize("how", ["given up", "failed", "interrupted"])
def test_after_a_fetch_ended_unfinished_a_replay_queues_the_day_and_it_runs(
    pipeline: LocalPipeline, api: UsageApiSimulator, script: ApiScript, how: str
) -> None:
    day = end_the_fetch(pipeline, api, script, how)
    fetches = page_ones(api, day)

    code, answer, _ = post(pipeline, {"date": day})
    pipeline.host.drain()

    assert code == 202 and answer["queued"] == [day] and answer["running"] == [], answer
    assert fetch_of(pipeline, day)["status"] == "complete"
    assert page_ones(api, day) == fetches + 1


def test_a_fetch_that_gave_up_says_how_many_attempts_and_requests_it_made(
    pipeline: LocalPipeline, api: UsageApiSimulator, script: ApiScript
) -> None:
    """Before: "(30 requests by this fetch, 1 s spent retrying)", the five deliveries unsaid."""
    end_the_fetch(pipeline, api, script, "given up")
    attempts = pipeline.host.bus.max_delivery_count
    requests = attempts * pipeline.settings.usage_api_max_attempts

    error = fetch_of(pipeline)["last_error"]

    assert f"({attempts} attempts of this fetch made {requests} HTTP requests in all," in error, error
    assert requests == api.count(date=DAY) and fetch_of(pipeline)["requests"] == requests


@pytest.mark.parametrize("how", ["given up", "failed", "interrupted"])
def test_after_a_fetch_ended_unfinished_run_date_fetches_the_day(
    pipeline: LocalPipeline,
    api: UsageApiSimulator,
    script: ApiScript,
    cli: Callable[..., tuple[int, str, str]],
    how: str,
) -> None:
    day = end_the_fetch(pipeline, api, script, how)
    fetches = page_ones(api, day)
    pipeline.close()  # the command below is the next process

    cli("run", "--date", day)

    assert fetch_of(pipeline, day)["status"] == "complete"
    assert page_ones(api, day) == fetches + 1


@pytest.fixture
def killed_mid_fetch(pipeline: LocalPipeline, script: ApiScript) -> Iterator[dict[str, Any]]:
    """The day's fetch entry as a holder killed (SIGKILL) in the middle of the fetch left it:
    taken while the fetch ran, put back once it ended."""
    seen: list[dict[str, Any]] = []
    assert post(pipeline, {"date": DAY})[1]["queued"] == [DAY]
    script.during.append(lambda: seen.append(fetch_of(pipeline)))
    pipeline.host.drain()
    assert seen[0]["status"] == "running" and seen[0][ALIVE_AT]
    pipeline.services.ledger.put(names.FETCH, DAY, seen[0])
    yield seen[0]


def test_a_fetch_whose_heartbeat_went_stale_is_queued_again(
    pipeline: LocalPipeline, api: UsageApiSimulator, killed_mid_fetch: dict[str, Any]
) -> None:
    alive_at = datetime.fromisoformat(killed_mid_fetch[ALIVE_AT])
    stale_after = timedelta(seconds=replay.running_for_s(pipeline.services))
    pipeline.services.clock = lambda: alive_at + stale_after
    assert post(pipeline, {"date": DAY})[1]["running"] == [DAY]  # still alive, as far as we know

    pipeline.services.clock = lambda: alive_at + stale_after + timedelta(seconds=1)
    code, answer, _ = post(pipeline, {"date": DAY})
    pipeline.host.drain()

    assert code == 202 and answer["queued"] == [DAY] and answer["running"] == [], answer
    assert fetch_of(pipeline)["status"] == "complete" and page_ones(api) == 1  # resumed: pages reused


def test_a_local_command_lets_go_of_the_fetch_of_a_killed_one(
    pipeline: LocalPipeline,
    api: UsageApiSimulator,
    cli: Callable[..., tuple[int, str, str]],
    killed_mid_fetch: dict[str, Any],
) -> None:
    """`run --date D` just after a command fetching D was killed (its heartbeat still fresh):
    the command holds LOCAL_DATA_DIR's lock, so nobody else is fetching D."""
    pipeline.close()

    cli("run", "--date", DAY)

    assert fetch_of(pipeline)["status"] == "complete"
