"""Asking for days to be fetched: one `fetch-requests` message per day (HTTP replay, timer, CLI).

Requests are coalesced: a day whose fetch is queued and not started yet, or running now, is
not queued again (a forced request is queued over a plain one, queued or running); the answer
says which days were coalesced and why. "Running" means the fetch's ledger entry says `running`
and its holder stamped its heartbeat lately (`fetch.HEARTBEAT_S`), never the hour-long lease
alone: a fetch that ended in any way, or whose holder died, does not count. One caller (a
function key) queues at most FORCED_DAYS_PER_MINUTE forced days a minute: a forced fetch
re-reads every page of the day from the API.
"""

from __future__ import annotations

import hashlib
import logging
import uuid
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from datetime import date, datetime, timedelta
from typing import Any

from shared.domain import names
from shared.domain.ledger_records import FetchRecord, QuotaRecord, ReplayRecord, stamp_time, without
from shared.ports import OutgoingMessage, Services
from shared.services.fetch import ALIVE_AT, HEARTBEAT_S, retry_budget_s
from shared.services.ledger import put_record, query_records, read_record, update_record

log = logging.getLogger(__name__)

FORCED_DAYS_PER_MINUTE = 200  # two full forced ranges (MAX_REPLAY_DAYS) a minute, per key
QUEUED_FOR_S = 3600  # a queued mark older than this is not trusted (its message may be lost)


class TooManyForcedDays(RuntimeError):
    """Answered with HTTP 429 and Retry-After."""

    def __init__(self, message: str, retry_after_s: int) -> None:
        super().__init__(message)
        self.retry_after_s = retry_after_s


@dataclass(frozen=True)
class Enqueued:
    request_id: str
    queued: list[date] = field(default_factory=list)
    already_queued: list[date] = field(default_factory=list)  # coalesced: nothing added for them
    running: list[date] = field(default_factory=list)  # coalesced: being fetched now


def enqueue_fetches(
    services: Services,
    days: list[date],
    *,
    force: bool,
    requested_by: str,
    caller: str = "",
    recheck: Sequence[date] = (),
    daily: bool = False,
) -> Enqueued:
    """One fetch request per day not already queued on `fetch-requests`, and one lookback
    re-check request per day of `recheck` (never forced, never coalesced: a re-check of an
    unchanged day costs the API's pages and writes nothing). `caller` is the function key (kept
    only as a hash) whose forced days are counted."""
    now = services.clock()
    request_id = f"req-{now:%Y%m%dT%H%M%S}-{uuid.uuid4().hex[:6]}"
    already = [d for d in days if _queued(services, d, force, now)]
    running = [d for d in days if d not in already and _running(services, d, force, now)]
    todo = [d for d in days if d not in {*already, *running}]
    if force and todo:
        _count_forced(services, caller, len(todo), now)
    queued = ReplayRecord(request_id=request_id, force=force, queued_at=now.isoformat())
    for d in todo:
        put_record(services.ledger, d.isoformat(), queued)
    asked = [(d, False) for d in todo] + [(d, True) for d in recheck]
    services.bus.send(
        names.FETCH_QUEUE,
        [
            OutgoingMessage(
                body={
                    "date": d.isoformat(),
                    "force": force and not again,
                    "request_id": request_id,
                    "requested_by": requested_by,
                    **({"recheck": True} if again else {}),
                    **({"daily": True} if daily and not again else {}),
                },
                message_id=f"{'recheck' if again else 'fetch'}-{d.isoformat()}-{request_id}",
                properties={"date": d.isoformat()},
            )
            for d, again in asked
        ],
    )
    return Enqueued(request_id, todo, already, running)


def daily_days(today: date, lookback_days: int) -> tuple[date, list[date]]:
    """What the daily run asks for: yesterday, and the `lookback_days` finished days before it
    to re-check (oldest first)."""
    yesterday = today - timedelta(days=1)
    return yesterday, [yesterday - timedelta(days=n) for n in range(lookback_days, 0, -1)]


def enqueue_daily(services: Services, *, requested_by: str) -> tuple[date, list[date]]:
    """The daily timer's requests (also `run` without --date): fetch yesterday, re-check the
    USAGE_API_LOOKBACK_DAYS days before it. Returns (yesterday, the days re-checked)."""
    yesterday, lookback = daily_days(services.clock().date(), services.settings.usage_api_lookback_days)
    enqueue_fetches(
        services, [yesterday], force=False, requested_by=requested_by, recheck=lookback, daily=True
    )
    return yesterday, lookback


def fetch_started(services: Services, day: date, body: Mapping[str, Any]) -> None:
    """The fetch of a queued request starts: a new request for the day is queued again."""
    request_id = str(body.get("request_id") or "")

    def clear(current: ReplayRecord | None) -> ReplayRecord | None:
        if not current or not request_id or current.request_id != request_id:
            return None
        return replace(current, request_id="", force=False, queued_at="")

    update_record(services.ledger, ReplayRecord, day.isoformat(), clear)


@contextmanager
def fetch_in_progress(services: Services, day: date) -> Iterator[None]:
    """Around a fetch: when it stops by raising (redelivered, given up to the dead letters,
    Ctrl-C, any error) its heartbeat is cleared, so a replay of the day queues it again at once.
    A fetch that returns says how it ended in its status (complete, failed, waiting)."""
    try:
        yield
    except BaseException:
        _clear_heartbeat(services, day.isoformat())
        raise


def let_go_of_fetches(services: Services) -> list[str]:
    """The days whose fetch the ledger shows alive, let go. Only for a caller that knows no
    other process fetches now (a local command holding LOCAL_DATA_DIR's lock): such a heartbeat
    was left by a command that was killed."""
    fetches = query_records(services.ledger, FetchRecord).items()
    alive = [key for key, fetch in fetches if fetch.status == "running" and fetch.alive_at]
    for key in alive:
        _clear_heartbeat(services, key)
    return alive


def running_for_s(services: Services) -> float:
    """How long after its last heartbeat a fetch still counts as running: a live fetch stamps
    before each page, and one page takes at most its retry budget (waits the API asks for
    aside: a fetch past it while waiting may be queued once more, which resumes the same run)."""
    return HEARTBEAT_S + retry_budget_s(services)


def _clear_heartbeat(services: Services, key: str) -> None:
    def clear(current: FetchRecord | None) -> FetchRecord | None:
        return without(current, ALIVE_AT) if current and current.alive_at else None

    try:
        update_record(services.ledger, FetchRecord, key, clear)
    except Exception as exc:  # the error that stopped the fetch is the one to tell
        log.warning("could not clear the heartbeat of %s's fetch (%s); it goes stale", key, exc)


def _running(services: Services, day: date, force: bool, now: datetime) -> bool:
    """A fetch of the day is in progress now, and covers this request: a plain request is
    covered by any fetch, a forced one only by a forced fetch (which lands what the API says
    now for every page it has not landed yet; see docs/reliability.md, replays)."""
    fetch = read_record(services.ledger, FetchRecord, day.isoformat())
    if fetch is None or fetch.status != "running":
        return False
    if force and not fetch.force:
        return False  # a forced request is more than the plain fetch running
    # No heartbeat (it stopped, or was written before heartbeats existed) reads as long ago.
    # Either way round: another instance's clock may be a little ahead of this one's.
    return abs((now - stamp_time(fetch.alive_at)).total_seconds()) <= running_for_s(services)


def _queued(services: Services, day: date, force: bool, now: datetime) -> bool:
    queued = read_record(services.ledger, ReplayRecord, day.isoformat())
    if queued is None or not queued.request_id:
        return False
    if force and not queued.force:
        return False  # a forced request is more than the plain one queued
    return timedelta(0) <= now - stamp_time(queued.queued_at) <= timedelta(seconds=QUEUED_FOR_S)


def _count_forced(services: Services, caller: str, days: int, now: datetime) -> None:
    key = "quota:" + hashlib.sha256(caller.encode()).hexdigest()[:16]
    window = now.replace(second=0, microsecond=0).isoformat()
    refused: list[str] = []

    def count(current: QuotaRecord | None) -> QuotaRecord | None:
        refused.clear()
        used = current.count if current and current.window == window else 0
        if used + days > FORCED_DAYS_PER_MINUTE:
            refused.append(str(used))
            return None
        return replace(current or QuotaRecord(), window=window, count=used + days)

    update_record(services.ledger, QuotaRecord, key, count)
    if refused:
        retry_after = max(1, 60 - now.second)
        raise TooManyForcedDays(
            f"this key queued {refused[0]} forced days this minute; at most {FORCED_DAYS_PER_MINUTE}"
            f" a minute (this request asks for {days} more): try again in {retry_after} s",
            retry_after,
        )
