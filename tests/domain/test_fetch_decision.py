"""The one place a fetch request's effect is decided (issue 23): start, resume, re-announce,
re-check, skip."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from shared.domain.fetch_decision import NEVER_FETCHED, RETRIED, FetchDecision, decide_fetch, lease_expired

NOW = datetime(2026, 11, 21, 6, 0, tzinfo=UTC)
LIVE = (NOW + timedelta(minutes=5)).isoformat()
DEAD = (NOW - timedelta(minutes=5)).isoformat()
COMPLETE = {"run_id": "fetch-a", "status": "complete", "manifest": "m.json", "force": False}
ALIVE = (NOW - timedelta(seconds=5)).isoformat()
RUNNING = {"run_id": "fetch-a", "status": "running", "force": True, "lease_until": LIVE, "alive_at": ALIVE}
WAITING = {"run_id": "fetch-a", "status": "waiting", "force": False, "retry_at": LIVE}
FAILED = {"run_id": "fetch-a", "status": "failed", "error": "HTTP 404"}


def decide(state: dict[str, Any] | None, **kw: Any) -> FetchDecision:
    args = {"force": False, "recheck": False, "manifest_exists": True, "now": NOW, "alive_for_s": 60, **kw}
    return decide_fetch(state, **args)


@pytest.mark.parametrize(
    ("state", "kw", "action", "run_id", "force"),
    [
        (None, {}, "start", None, False),
        (None, {"force": True}, "start", None, True),
        (COMPLETE, {}, "re-announce", "fetch-a", False),
        (COMPLETE, {"force": True}, "start", None, True),
        (COMPLETE, {"manifest_exists": False}, "resume", "fetch-a", False),  # manifest lost
        (RUNNING, {}, "resume", "fetch-a", True),  # keeps its own force
        (FAILED, {}, "start", None, False),
        # The lookback.
        # The lookback fetches a day never fetched, and again one whose last fetch failed.
        (None, {"recheck": True}, "start", None, False),
        (FAILED, {"recheck": True}, "start", None, False),
        (COMPLETE, {"recheck": True}, "re-check", "fetch-a", False),
        ({**COMPLETE, "force": True}, {"recheck": True}, "re-check", "fetch-a", True),  # stays forced
        (COMPLETE, {"recheck": True, "manifest_exists": False}, "start", None, False),
        (RUNNING, {"recheck": True}, "skip", "fetch-a", False),  # another fetch holds it
        ({**RUNNING, "lease_until": DEAD}, {"recheck": True}, "resume", "fetch-a", True),
        # Out of retries: the lease still holds, but nobody is alive behind it (issue 23).
        ({**RUNNING, "alive_at": ""}, {"recheck": True}, "resume", "fetch-a", True),
        ({k: v for k, v in RUNNING.items() if k != "alive_at"}, {"recheck": True}, "resume", "fetch-a", True),
        ({**RUNNING, "alive_at": DEAD}, {"recheck": True}, "resume", "fetch-a", True),  # stale
        # A long Retry-After: the scheduled request (or a person's) resumes; a re-check before
        # that time leaves it alone.
        (WAITING, {}, "resume", "fetch-a", False),
        (WAITING, {"recheck": True}, "skip", "fetch-a", False),
        ({**WAITING, "retry_at": DEAD}, {"recheck": True}, "resume", "fetch-a", False),
        # The daily timer's request (`run` without --date) respects the wait; --force does not.
        (WAITING, {"daily": True}, "skip", "fetch-a", False),
        ({**WAITING, "retry_at": DEAD}, {"daily": True}, "resume", "fetch-a", False),
        (WAITING, {"daily": True, "force": True}, "resume", "fetch-a", True),
    ],
)
def test_decisions(
    state: dict[str, Any] | None, kw: dict[str, Any], action: str, run_id: str | None, force: bool
) -> None:
    decision = decide(state, **kw)
    assert (decision.action, decision.run_id, decision.force) == (action, run_id, force)


def test_the_lookback_says_why_it_fetches_or_skips() -> None:
    assert decide(None, recheck=True).reason == NEVER_FETCHED
    assert decide(FAILED, recheck=True).reason == RETRIED
    assert "wait" in decide(WAITING, recheck=True).reason
    assert "running" in decide(RUNNING, recheck=True).reason


def test_a_lease_expires() -> None:
    assert not lease_expired(RUNNING, NOW)
    assert lease_expired({**RUNNING, "lease_until": DEAD}, NOW)
    assert lease_expired({"status": "running"}, NOW)  # written before leases: not held
    assert lease_expired({"lease_until": "garbage"}, NOW)
