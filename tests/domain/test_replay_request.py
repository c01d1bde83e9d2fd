"""Validation of replay requests (HTTP and CLI share it)."""

from __future__ import annotations

from datetime import date

import pytest

from shared.domain.replay_request import (
    MAX_REPLAY_DAYS,
    BadFetchRequest,
    BadReplayRequest,
    FetchRequest,
    ReplayRequest,
)

TODAY = date(2026, 11, 22)


def test_one_day_and_a_range() -> None:
    assert ReplayRequest.parse({"date": "2026-11-20"}, TODAY).days == [date(2026, 11, 20)]
    request = ReplayRequest.parse({"from": "2026-11-01", "to": "2026-11-03", "force": True}, TODAY)
    assert request.days == [date(2026, 11, 1), date(2026, 11, 2), date(2026, 11, 3)] and request.force


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ([], "JSON object"),
        ({}, "give date"),
        ({"date": "2026-11-31"}, "must be a date"),
        ({"date": "20261101"}, "must be a date"),
        ({"date": 20261101}, "must be a date"),
        ({"date": "2026-11-23"}, "future"),
        # Today is not finished: a build of it would be marked done with half a day in it.
        (
            {"date": "2026-11-22"},
            "2026-11-22 is today: only finished UTC days can be run (the last one is 2026-11-21)",
        ),
        ({"from": "2026-11-20", "to": "2026-11-22"}, "is today"),
        ({"from": "2026-11-05", "to": "2026-11-01"}, "before"),
        ({"from": "2026-01-01", "to": "2026-11-01"}, str(MAX_REPLAY_DAYS)),
        ({"date": "2026-11-01", "force": "yes"}, "true or false"),
        ({"date": "2026-11-01", "from": "2026-11-01", "to": "2026-11-02"}, "not both"),
        ({"date": "2026-11-01", "dry_run": True}, "unknown option"),
    ],
)
def test_bad_requests_get_one_clear_line(body, message) -> None:
    with pytest.raises(BadReplayRequest) as error:
        ReplayRequest.parse(body, TODAY)
    assert message in str(error.value) and "\n" not in str(error.value)


def test_a_fetch_request_for_today_is_refused_whoever_sent_it() -> None:
    assert FetchRequest.from_json({"date": "2026-11-21"}, TODAY).day == date(2026, 11, 21)
    for day in ("2026-11-22", "2026-11-30"):
        with pytest.raises(BadFetchRequest, match="only finished UTC days"):
            FetchRequest.from_json({"date": day}, TODAY)
