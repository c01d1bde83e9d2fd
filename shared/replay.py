"""Replay requests (validate, enqueue fetches) and the per-day status view, for HTTP, timer and CLI."""

from __future__ import annotations

import contextlib
import hashlib
import json
import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from typing import Any

from shared import names
from shared.bootstrap import Services
from shared.ports import OutgoingMessage

MAX_REPLAY_DAYS = 93
KNOWN_OPTIONS = frozenset({"date", "from", "to", "force"})


class BadReplayRequest(ValueError):
    """Answered with HTTP 400 and this one-line message."""


@dataclass(frozen=True)
class ReplayRequest:
    days: list[date]
    force: bool

    @classmethod
    def parse(cls, body: Any, today: date) -> ReplayRequest:
        if not isinstance(body, Mapping):
            raise BadReplayRequest('body must be a JSON object such as {"date": "2026-11-20"}')
        unknown = sorted(set(body) - KNOWN_OPTIONS)
        if unknown:
            raise BadReplayRequest(f"unknown option(s): {', '.join(unknown)}; known: date, from, to, force")
        force = body.get("force", False)
        if not isinstance(force, bool):
            raise BadReplayRequest("force must be true or false")
        if "date" in body:
            if "from" in body or "to" in body:
                raise BadReplayRequest("give either date, or from and to, not both")
            first = last = _day(body["date"], "date")
        elif "from" in body and "to" in body:
            first, last = _day(body["from"], "from"), _day(body["to"], "to")
        else:
            raise BadReplayRequest("give date, or from and to (YYYY-MM-DD)")
        if last < first:
            raise BadReplayRequest(f"to ({last}) is before from ({first})")
        if last > today:
            raise BadReplayRequest(f"{last} is in the future (today is {today} UTC)")
        count = (last - first).days + 1
        if count > MAX_REPLAY_DAYS:
            raise BadReplayRequest(f"range of {count} days is above the limit of {MAX_REPLAY_DAYS}")
        return cls([first + timedelta(days=n) for n in range(count)], force)


def _day(value: Any, name: str) -> date:
    try:
        return (
            date.fromisoformat(str(value))
            if isinstance(value, str) and len(value) == 10
            else _bad(name, value)
        )
    except ValueError:
        return _bad(name, value)


def _bad(name: str, value: Any) -> date:
    raise BadReplayRequest(f"{name} must be a date YYYY-MM-DD, got {str(value)[:40]!r}")


def enqueue_fetches(services: Services, days: list[date], *, force: bool, requested_by: str) -> str:
    """One fetch request per day on `fetch-requests`; returns the request id."""
    request_id = f"req-{services.clock():%Y%m%dT%H%M%S}-{uuid.uuid4().hex[:6]}"
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
            for d in days
        ],
    )
    return request_id


def day_status(services: Services, day: date) -> dict[str, Any]:
    """Everything the ledger knows about one day, for `status` (CLI and HTTP)."""
    key = day.isoformat()
    entries = {p: services.ledger.get(p, key) for p in (names.FETCH, names.USAGE, names.DAYS)}
    view: dict[str, Any] = {"date": key}
    for partition, entry in entries.items():
        view[partition] = _decode(entry.data) if entry else None
    return view


def crm_file_status(services: Services, blob_name: str) -> dict[str, Any] | None:
    """What happened to a dropped CRM file (staged, superseded or rejected)."""
    entry = services.ledger.get(names.FILES, file_key(blob_name))
    return _decode(entry.data) if entry else None


def file_key(blob_name: str) -> str:
    """Ledger key for a blob name: Table storage keys may not contain '/', so hash it."""
    return hashlib.sha256(blob_name.encode()).hexdigest()[:32]


def all_days_status(services: Services) -> list[dict[str, Any]]:
    """Every day the ledger knows, from one query per partition (not three reads per day)."""
    partitions = (names.FETCH, names.USAGE, names.DAYS)
    by_partition = {p: {e.key: e for e in services.ledger.query(p)} for p in partitions}
    keys = sorted(set().union(*by_partition.values()))
    return [
        {"date": k, **{p: _decode(e.data) if (e := by_partition[p].get(k)) else None for p in partitions}}
        for k in keys
    ]


def _decode(data: Mapping[str, Any]) -> dict[str, Any]:
    out = dict(data)
    for k in ("errors", "warnings"):  # lists are stored as JSON text: ledger values are flat
        if isinstance(out.get(k), str):
            with contextlib.suppress(json.JSONDecodeError):
                out[k] = json.loads(out[k])
    return out


def yesterday(now: datetime) -> date:
    return (now - timedelta(days=1)).date()
