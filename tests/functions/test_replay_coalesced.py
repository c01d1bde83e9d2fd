"""Replays coalesced and bounded (issue 21, item 6), and a body no number can break (item 7)."""

from __future__ import annotations

import json
from datetime import UTC, date, datetime, timedelta
from typing import Any

from shared.domain import names
from shared.local.pipeline import LocalPipeline
from shared.services import replay

NOW = datetime(2026, 12, 7, 10, 0, 5, tzinfo=UTC)


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
