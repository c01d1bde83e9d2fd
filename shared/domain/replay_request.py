"""What a replay may ask for (one day or a range, optionally forced: HTTP and the CLI share it), and
the one-day fetch request each replayed day becomes on `fetch-requests`."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import date, timedelta
from typing import Any

from shared.domain.days import parse_day, too_early, unfinished_day
from shared.domain.errors import PermanentError

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
        if refusal := unfinished_day(last, today) or too_early(first):
            raise BadReplayRequest(refusal)
        count = (last - first).days + 1
        if count > MAX_REPLAY_DAYS:
            raise BadReplayRequest(f"range of {count} days is above the limit of {MAX_REPLAY_DAYS}")
        return cls([first + timedelta(days=n) for n in range(count)], force)


class BadFetchRequest(PermanentError, ValueError):
    """A `fetch-requests` message that does not name a day."""

    kind = "bad_fetch_request"


@dataclass(frozen=True)
class FetchRequest:
    day: date
    force: bool = False
    recheck: bool = False  # a lookback re-check (contract section 1), not a request to fetch
    daily: bool = False  # the daily timer's (or `run` without --date): respects the API's wait

    @classmethod
    def from_json(cls, body: Any, today: date) -> FetchRequest:
        """`today` is the UTC day now: a request for it (or later) is refused, whoever sent it."""
        if not isinstance(body, Mapping):
            raise BadFetchRequest(f"not a fetch request: {str(body)[:200]}")
        try:
            day = parse_day(body.get("date"))
        except ValueError:
            raise BadFetchRequest(f"fetch request with a bad date {str(body.get('date'))[:40]!r}") from None
        if refusal := unfinished_day(day, today) or too_early(day):
            raise BadFetchRequest(refusal)
        return cls(day, bool(body.get("force")), body.get("recheck") is True, body.get("daily") is True)


def _day(value: Any, name: str) -> date:
    try:
        return parse_day(value)
    except ValueError:
        raise BadReplayRequest(f"{name} must be a date YYYY-MM-DD, got {str(value)[:40]!r}") from None
