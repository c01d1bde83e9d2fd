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
* `skip`        nothing to do: a lookback re-check of a day never fetched, or whose last fetch
                failed (a failed day is replayed by a person, not retried daily with an alert
                each time), or one that another fetch holds right now (its lease has not expired).
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
) -> FetchDecision:
    """What a request for one day does. `state` is the day's fetch ledger entry (None: never
    asked), `recheck` marks a lookback request, `manifest_exists` whether the entry's manifest is
    still in the store; `daily` marks the daily timer's request for yesterday (also `run`
    without --date), which respects a wait the API asked for."""
    status = state.get("status") if state else None
    run_id = str(state["run_id"]) if state and state.get("run_id") else None
    if recheck and not force:
        return _lookback_decision(state, status, run_id, manifest_exists=manifest_exists, now=now)
    if daily and not force and status == "waiting" and state and _not_yet(state, now):
        return FetchDecision("skip", False, run_id, "the API asked to wait: its fetch is scheduled")
    if status == "complete" and manifest_exists and not force:
        return FetchDecision("re-announce", False, run_id, "already fetched")
    if run_id is not None and (status in ("running", "waiting") or (status == "complete" and not force)):
        # Cut off, or complete with its manifest lost: the same run, landed pages read back.
        return FetchDecision(
            "resume", bool((state or {}).get("force")) or force, run_id, "resuming a cut-off run"
        )
    return FetchDecision("start", force, reason="forced" if force and status else "")


def _lookback_decision(
    state: Mapping[str, Any] | None,
    status: Any,
    run_id: str | None,
    *,
    manifest_exists: bool,
    now: datetime,
) -> FetchDecision:
    """What a lookback re-check (not forced) of one day does: a fetched day is compared with
    the API, a cut-off one resumed, and any other skipped."""
    if state is None or status is None:
        return FetchDecision("skip", False, reason="never fetched: the lookback re-checks fetched days only")
    if status == "failed":
        return FetchDecision("skip", False, run_id, "its last fetch failed: replay it once the API is fixed")
    if status == "waiting" and _not_yet(state, now):
        return FetchDecision("skip", False, run_id, "the API asked to wait: its fetch is scheduled")
    if status in ("running", "waiting"):
        if status == "running" and not lease_expired(state, now):
            return FetchDecision("skip", False, run_id, "another fetch of it is running")
        return FetchDecision("resume", bool(state.get("force")), run_id, "a fetch of it was cut off")
    if status == "complete" and manifest_exists:
        # A day a person forced through stays forced when its correction lands.
        return FetchDecision(
            "re-check", bool(state.get("force")), run_id, "fetched before: compared with the API"
        )
    return FetchDecision("start", False, reason="its manifest is gone: fetched again")
