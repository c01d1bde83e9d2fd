"""Asking for days to be fetched: one `fetch-requests` message per day (HTTP replay, timer, CLI).

Requests are coalesced: a day whose fetch is queued and not started yet (as forced, when this
request is forced) is not queued again; the answer says which days were. One caller (a function
key) queues at most FORCED_DAYS_PER_MINUTE forced days a minute: a forced fetch re-reads every
page of the day from the API.
"""

from __future__ import annotations

import hashlib
import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from typing import Any

from shared.domain import names
from shared.ports import OutgoingMessage, Services
from shared.services.ledger import update_entry

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
    services: Services, days: list[date], *, force: bool, requested_by: str, caller: str = ""
) -> Enqueued:
    """One fetch request per day not already queued on `fetch-requests`. `caller` is the
    function key (kept only as a hash) whose forced days are counted."""
    now = services.clock()
    request_id = f"req-{now:%Y%m%dT%H%M%S}-{uuid.uuid4().hex[:6]}"
    already = [d for d in days if _queued(services, d, force, now)]
    todo = [d for d in days if d not in set(already)]
    if force and todo:
        _count_forced(services, caller, len(todo), now)
    for d in todo:
        services.ledger.put(
            names.REPLAYS,
            d.isoformat(),
            {"request_id": request_id, "force": force, "queued_at": now.isoformat()},
        )
    services.bus.send(
        names.FETCH_QUEUE,
        [
            OutgoingMessage(
                body={
                    "date": d.isoformat(),
                    "force": force,
                    "request_id": request_id,
                    "requested_by": requested_by,
                },
                message_id=f"fetch-{d.isoformat()}-{request_id}",
                properties={"date": d.isoformat()},
            )
            for d in todo
        ],
    )
    return Enqueued(request_id, todo, already)


def fetch_started(services: Services, day: date, body: Mapping[str, Any]) -> None:
    """The fetch of a queued request starts: a new request for the day is queued again."""
    request_id = str(body.get("request_id") or "")

    def clear(current: Mapping[str, Any] | None) -> dict[str, Any] | None:
        if not current or not request_id or current.get("request_id") != request_id:
            return None
        return {"request_id": "", "force": False, "queued_at": ""}

    update_entry(services.ledger, names.REPLAYS, day.isoformat(), clear)


def _queued(services: Services, day: date, force: bool, now: datetime) -> bool:
    entry = services.ledger.get(names.REPLAYS, day.isoformat())
    if entry is None or not entry.data.get("request_id"):
        return False
    if force and not entry.data.get("force"):
        return False  # a forced request is more than the plain one queued
    try:
        queued_at = datetime.fromisoformat(str(entry.data.get("queued_at")))
    except ValueError:
        return False
    return timedelta(0) <= now - queued_at <= timedelta(seconds=QUEUED_FOR_S)


def _count_forced(services: Services, caller: str, days: int, now: datetime) -> None:
    key = "quota:" + hashlib.sha256(caller.encode()).hexdigest()[:16]
    window = now.replace(second=0, microsecond=0).isoformat()
    refused: list[str] = []

    def count(current: Mapping[str, Any] | None) -> dict[str, Any] | None:
        refused.clear()
        used = int((current or {}).get("count") or 0) if (current or {}).get("window") == window else 0
        if used + days > FORCED_DAYS_PER_MINUTE:
            refused.append(str(used))
            return None
        return {"window": window, "count": used + days}

    update_entry(services.ledger, names.REPLAYS, key, count)
    if refused:
        retry_after = max(1, 60 - now.second)
        raise TooManyForcedDays(
            f"this key queued {refused[0]} forced days this minute; at most {FORCED_DAYS_PER_MINUTE}"
            f" a minute (this request asks for {days} more): try again in {retry_after} s",
            retry_after,
        )
