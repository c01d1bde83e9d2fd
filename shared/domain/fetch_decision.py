"""What a request to fetch a day does, decided in one place from what the ledger knows.

`decide_fetch` is pure: the fetch service reads the day's fetch entry (and whether its manifest
is still in the store), asks, and does what the answer says. The answers:

* `start`       a new fetch run (a new run id): never fetched, forced, or the last one failed.
* `resume`      the run that was cut off part way: same run id, landed pages read back.
* `re-announce` the day is fetched and its manifest is there: send its BlobCreated event again
                (staging is idempotent), ask the API nothing.
* `re-check`    the lookback (contract section 1): ask the API for the day again and compare
                its pages with the last landed ones; only a difference lands as a new fetch.
  A fetch that the API asked to wait for (a long Retry-After) is `waiting`: a request for it
  before its time from the daily timer (or `run` without --date) or a re-check skips it; the
  scheduled request, or a person's (`run --date`, replay, --force), resumes it.
  The lookback also fetches (`start`) a day in its window never fetched, and one whose last
  fetch failed: once per daily run, as a fetch, not a re-check.
* `skip`        nothing to do: a lookback request for a day another fetch holds right now (its
                lease has not expired and its heartbeat is fresh), or whose fetch the API asked
                to wait for. A running entry without a fresh heartbeat stopped (it ran out of
                retries, or died): the lookback resumes it.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Literal

Action = Literal["start", "resume", "re-announce", "re-check", "skip"]


@dataclass(frozen=True)
class FetchDecision:
    action: Action
    force: bool  # the run's force flag (a resumed run keeps its own, or takes the new one)
    run_id: str | None = None  # the run resumed or re-announced; None for a new run
    reason: str = ""


def lease_expired(state: Mapping[str, Any], now: datetime) -> bool:
    """A running fetch whose lease (`lease_until`) has passed: the process holding it died or
    was stopped. Entries written before leases existed have none and count as expired."""
    until = state.get("lease_until")
    if not isinstance(until, str):
        return True
    try:
        return datetime.fromisoformat(until) <= now
    except ValueError:
        return True


def heartbeat_fresh(state: Mapping[str, Any], now: datetime, alive_for_s: float) -> bool:
    """A running fetch's heartbeat (`alive_at`) is at most `alive_for_s` old: its holder is
    alive. A fetch that stopped by raising (out of retries) clears it, but keeps its lease."""
    stamped = state.get("alive_at")
    try:
        alive_at = datetime.fromisoformat(stamped) if isinstance(stamped, str) else None
    except ValueError:
        return False
    return alive_at is not None and abs((now - alive_at).total_seconds()) <= alive_for_s


SCHEDULED = "the API asked to wait: its fetch is scheduled"


@dataclass(frozen=True)
class _Day:
    """What a decision needs of the day's fetch entry, read once."""

    status: str | None  # None: never asked
    run_id: str | None
    forced: bool  # the entry's own force flag
    manifest_exists: bool
    scheduled: bool  # waiting for a time the API named, not come yet
    held: bool  # running under a live lease, with a fresh heartbeat: another fetch holds it

    @classmethod
    def of(
        cls, state: Mapping[str, Any] | None, manifest_exists: bool, now: datetime, alive_for_s: float
    ) -> _Day:
        state = state or {}
        status = state.get("status")
        return cls(
            status=str(status) if status else None,
            run_id=str(state["run_id"]) if state.get("run_id") else None,
            forced=bool(state.get("force")),
            manifest_exists=manifest_exists,
            scheduled=status == "waiting" and _not_yet(state, now),
            held=status == "running"
            and not lease_expired(state, now)
            and heartbeat_fresh(state, now, alive_for_s),
        )

    @property
    def unfinished(self) -> bool:
        """A run that stopped part way (cut off, or waiting for the API)."""
        return self.status in ("running", "waiting")


def _not_yet(state: Mapping[str, Any], now: datetime) -> bool:
    until = state.get("retry_at")
    try:
        return isinstance(until, str) and datetime.fromisoformat(until) > now
    except ValueError:
        return False


def decide_fetch(
    state: Mapping[str, Any] | None,
    *,
    force: bool,
    recheck: bool,
    manifest_exists: bool,
    now: datetime,
    daily: bool = False,
    alive_for_s: float = 0.0,
) -> FetchDecision:
    """What a request for one day does. `state` is the day's fetch ledger entry (None: never
    asked), `recheck` marks a lookback request, `manifest_exists` whether the entry's manifest is
    still in the store; `daily` marks the daily timer's request for yesterday (also `run`
    without --date), which respects a wait the API asked for; `alive_for_s` how long after its
    last heartbeat a running fetch still counts as alive (the service's `running_for_s`)."""
    day = _Day.of(state, manifest_exists, now, alive_for_s)
    if recheck and not force:
        return _lookback_decision(day)
    if daily and not force and day.scheduled:
        return FetchDecision("skip", False, day.run_id, SCHEDULED)
    return _requested_decision(day, force)


def _requested_decision(day: _Day, force: bool) -> FetchDecision:
    """What a request for the day (a person's, the timer's for yesterday, a scheduled one) does."""
    if day.status == "complete" and day.manifest_exists and not force:
        return FetchDecision("re-announce", False, day.run_id, "already fetched")
    if day.run_id is not None and (day.unfinished or (day.status == "complete" and not force)):
        # Cut off, or complete with its manifest lost: the same run, landed pages read back.
        return FetchDecision("resume", day.forced or force, day.run_id, "resuming a cut-off run")
    return FetchDecision("start", force, reason="forced" if force and day.status else "")


def _lookback_decision(day: _Day) -> FetchDecision:
    """What the daily run's request for a day of its lookback window (not forced) does: a
    fetched day is compared with the API; a day never fetched is fetched, and one whose last
    fetch failed is fetched again (once per daily run); a cut-off one is resumed."""
    if day.status is None:
        return FetchDecision("start", False, reason=NEVER_FETCHED)
    if day.status == "failed":
        return FetchDecision("start", False, reason=RETRIED)
    if day.scheduled:
        return FetchDecision("skip", False, day.run_id, SCHEDULED)
    if day.held:
        return FetchDecision("skip", False, day.run_id, "another fetch of it is running")
    if day.unfinished:
        return FetchDecision("resume", day.forced, day.run_id, "a fetch of it was cut off")
    if day.status == "complete" and day.manifest_exists:
        # A day a person forced through stays forced when its correction lands.
        return FetchDecision("re-check", day.forced, day.run_id, "fetched before: compared with the API")
    return FetchDecision("start", False, reason="its manifest is gone: fetched again")


# What the lookback says of a day it fetches rather than re-checks (`status` and `run` show it).
NEVER_FETCHED = "never fetched before: fetched by the lookback"
RETRIED = "its last fetch had failed: fetched again by the lookback, once per daily run"
