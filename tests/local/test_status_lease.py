"""A fetch that died leaves `status` saying so once its lease expired, never `fetching` forever."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from shared.local.status_view import day_line, day_state


def view(**fetch: object) -> dict[str, object]:
    return {"date": "2026-10-01", "fetch": {"run_id": "fetch-a", "started_at": "2026-10-02T06:00", **fetch}}


def test_a_running_fetch_with_a_live_lease_is_fetching() -> None:
    live = (datetime.now(UTC) + timedelta(minutes=10)).isoformat()
    assert day_state(view(status="running", lease_until=live)) == "fetching"


def test_a_fetch_whose_lease_expired_was_interrupted() -> None:
    dead = (datetime.now(UTC) - timedelta(minutes=1)).isoformat()
    died = view(status="running", lease_until=dead)
    assert day_state(died) == "fetch interrupted"
    assert "interrupted" in day_line(died) and "the next run resumes it" in day_line(died)


def test_a_fetch_the_api_asked_to_wait_for_is_scheduled() -> None:
    waiting = view(status="waiting", waiting_for="fetch of 2026-10-01: the API asked to wait 86400 s")
    assert day_state(waiting) == "fetch scheduled"
    assert "86400 s" in day_line(waiting)


def test_the_last_check_against_the_api_is_shown() -> None:
    checked = view(status="complete", last_checked_at="2026-10-06T06:01:00", last_check="unchanged")
    assert "last checked against the API 2026-10-06 06:01 UTC: unchanged" in day_line(checked)
