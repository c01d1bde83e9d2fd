"""Asking for days to be fetched: one `fetch-requests` message per day (HTTP replay, timer, CLI).

Requests are coalesced: a day whose fetch is queued and not started yet (as forced, when this
request is forced) is not queued again; the answer says which days were. One caller (a function
key) queues at most FORCED_DAYS_PER_MINUTE forced days a minute: a forced fetch re-reads every
page of the day from the API.
"""

from __future__ import annotations

import hashlib
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import date, datetime, timedelta
from typing import Any

from shared.domain import names
from shared.domain.ledger_records import QuotaRecord, ReplayRecord
from shared.ports import OutgoingMessage, Services
from shared.services.ledger import put_record, read_record, update_record

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
    todo = [d for d in days if d not in set(already)]
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
    return Enqueued(request_id, todo, already)


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


def _queued(services: Services, day: date, force: bool, now: datetime) -> bool:
    queued = read_record(services.ledger, ReplayRecord, day.isoformat())
    if queued is None or not queued.request_id:
        return False
    if force and not queued.force:
        return False  # a forced request is more than the plain one queued
    try:
        queued_at = datetime.fromisoformat(queued.queued_at)
    except ValueError:
        return False
    return timedelta(0) <= now - queued_at <= timedelta(seconds=QUEUED_FOR_S)


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
