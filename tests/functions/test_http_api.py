"""The replay and status routes through the real HTTP handlers."""

from __future__ import annotations

import json

import pytest

from shared.domain import names
from shared.local.pipeline import LocalPipeline


@pytest.mark.parametrize(
    ("body", "phrase"),
    [
        (b"{not json", "not valid JSON"),
        (b'{"date": "2026-13-01"}', "must be a date"),
        (b'{"date": "2999-01-01"}', "future"),
        (b'{"from": "2026-01-01", "to": "2026-06-30"}', "limit of 93"),
        (b'{"date": "2026-10-01", "priority": "high"}', "unknown option"),
        (b'["2026-10-01"]', "JSON object"),
    ],
)
def test_bad_replays_get_400_with_a_clear_message(pipeline: LocalPipeline, body: bytes, phrase: str) -> None:
    response = pipeline.host.http("POST", "replay", body=body)
    assert response.status_code == 400
    assert phrase in json.loads(response.get_body())["error"]
    assert pipeline.services.bus.depth(names.FETCH_QUEUE) == 0


def test_a_replay_is_accepted_and_only_queued(pipeline: LocalPipeline, api) -> None:
    response = pipeline.host.http(
        "POST", "replay", body={"from": "2026-10-01", "to": "2026-10-03", "force": True}
    )
    assert response.status_code == 202
    payload = json.loads(response.get_body())
    assert payload["dates"] == ["2026-10-01", "2026-10-02", "2026-10-03"] and payload["force"] is True
    assert payload["status_urls"][0] == "/api/status?date=2026-10-01"
    assert pipeline.services.bus.depth(names.FETCH_QUEUE) == 3
    assert api.requests_seen == []  # no work inside the request


def test_status_for_a_day_and_for_all(pipeline: LocalPipeline) -> None:
    pipeline.host.http("POST", "replay", body={"date": "2026-10-01"})
    pipeline.host.drain()
    one = pipeline.host.http("GET", "status", params={"date": "2026-10-01"})
    assert one.status_code == 200
    view = json.loads(one.get_body())
    assert view["fetch"]["status"] == "complete" and view["days"]["status"] == "waiting"
    everything = json.loads(pipeline.host.http("GET", "status").get_body())
    assert [d["date"] for d in everything["days"]] == ["2026-10-01"]
    bad = pipeline.host.http("GET", "status", params={"date": "yesterday"})
    assert bad.status_code == 400


@pytest.mark.parametrize("text", ["20261120", "2026-W47-5"])
def test_status_and_replay_refuse_the_same_dates(pipeline: LocalPipeline, text: str) -> None:
    status = pipeline.host.http("GET", "status", params={"date": text})
    replay = pipeline.host.http("POST", "replay", body={"date": text})
    assert (status.status_code, replay.status_code) == (400, 400)
