"""Client for the Product Usage API: one page per call, with retries that know the API's moods.

Small pieces, each one idea (as in dlt's REST client): `retry_after_seconds` reads the
server's wish, `wait_for` picks the pause, `RateLimiter` paces the requests (and slows down
when the server says 429), `UsageApiClient.fetch_page` asks for one page and classifies the
answer, and the fetch service walks the pages by `has_next_page`.
"""

from __future__ import annotations

import json
import logging
import math
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, date, datetime
from email.utils import parsedate_to_datetime
from http import HTTPStatus
from typing import Any

import requests
from requests.adapters import HTTPAdapter
from tenacity import (
    RetryCallState,
    Retrying,
    retry_if_exception_type,
    stop_after_attempt,
    wait_exponential_jitter,
)

log = logging.getLogger(__name__)

PERMANENT_STATUSES = frozenset({400, 401, 403, 404})
TRANSIENT_STATUSES = frozenset({429, 500, 502, 503, 504})
MAX_RETRY_AFTER_S = 300.0  # a server asking for more than this is treated as asking for this


class UsageApiError(RuntimeError):
    """A permanent failure: retrying will not help. The message names the status, never the key."""


class TransientApiError(RuntimeError):
    def __init__(self, message: str, retry_after_s: float | None = None) -> None:
        super().__init__(message)
        self.retry_after_s = retry_after_s


@dataclass(frozen=True)
class Page:
    number: int
    body: bytes  # exactly as received; landed in blob storage as is
    records: list[Any]
    has_next_page: bool
    total_pages: int | None


class RateLimiter:
    """A token bucket in front of every request, whose rate adapts to 429s (AIMD).

    One per fetch, shared by its worker threads. `rate_rps` 0 means no limit until the server
    says 429; the first 429 then starts limiting at `first_decrease` of the send rate observed
    over the last `window_s` (cut hard: one 429 says nothing about how far over the limit we
    are). Later 429s multiply the rate by `decrease` (0.7, as botocore's adaptive mode: with 0.5
    the sawtooth averages 75 % of the server's limit), never below `floor_share` of the configured
    rate (or of that first observed rate). Each success adds a fixed step back (additive
    increase), up to the configured rate: `recovery` of the rate found too high, so the climb
    back takes about (1 - decrease) / recovery successes whatever the scale. The rate only grows
    while it is what holds the requests back (the last caller had to wait for a token): a limit
    far above what is being sent would otherwise grow without bound and take many 429s to
    bring down again.

    Answers to requests admitted before the last decrease belong to the congestion that caused
    it: they do not lower the rate again (`acquire` returns a generation ticket for that), so a
    burst of 429s from eight in-flight requests is one halving, not eight.

    Waits are reservations: a caller takes a token now (the count may go negative) and sleeps
    until it is due, outside the lock, so waiting threads queue in order and never busy-wait.
    """

    def __init__(
        self,
        rate_rps: float = 0.0,
        *,
        burst: float = 1.0,
        decrease: float = 0.7,
        first_decrease: float = 0.5,
        floor_share: float = 0.1,
        recovery: float = 0.002,
        window_s: float = 1.0,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        if not rate_rps >= 0 or burst < 1 or not 0 < decrease < 1 or not 0 < first_decrease < 1:
            raise ValueError("rate_rps >= 0, burst >= 1 and decreases in (0, 1) are required")
        if math.isinf(rate_rps):
            rate_rps = 0.0  # no fixed limit
        self.configured_rps = rate_rps
        self.burst = burst
        self.decrease = decrease
        self.first_decrease = first_decrease
        self.floor_share = floor_share
        self.recovery = recovery
        self.window_s = window_s
        self._clock = clock
        self._sleep = sleep
        self._lock = threading.Lock()
        self._rate: float | None = rate_rps or None  # None: not limiting (yet)
        self._floor = rate_rps * floor_share
        self._step = rate_rps * recovery
        # At most `burst` requests at once, so the start is not a spike. 1 by default: a server
        # whose own bucket is small then keeps a token of headroom for jitter.
        self._tokens = burst
        self._updated = clock()
        self._generation = 0
        self._binding = False  # the last caller had to wait for its token
        self._sent: deque[float] = deque(maxlen=4096)  # admissions while unlimited: the observed rate
        self.throttled = 0  # 429s reported
        self.decreases = 0  # of which lowered the rate

    @property
    def rate(self) -> float | None:
        """Requests per second allowed now; None while not limiting."""
        with self._lock:
            return self._rate

    def acquire(self) -> int:
        """Wait for a token; returns the generation ticket to hand to `on_throttled`."""
        with self._lock:
            now = self._clock()
            due = now
            if self._rate is not None:
                self._refill(now)
                self._tokens -= 1.0
                if self._tokens < 0:
                    due = now - self._tokens / self._rate
            else:
                self._sent.append(now)
            self._binding = due > now
            ticket = self._generation
        if due > now:
            self._sleep(due - now)
        return ticket

    def on_success(self) -> None:
        with self._lock:
            if self._rate is None or not self._binding:
                return
            ceiling = self.configured_rps or float("inf")
            if self._rate < ceiling:
                self._refill(self._clock())  # tokens earned so far at the old rate
                self._rate = min(ceiling, self._rate + self._step)

    def on_throttled(self, ticket: int) -> bool:
        """The server said 429 to a request admitted with `ticket`. True when the rate was lowered."""
        with self._lock:
            self.throttled += 1
            if ticket != self._generation:
                return False  # same congestion as the last decrease
            now = self._clock()
            if self._rate is None:  # the first 429 while unlimited: start limiting below what we sent
                too_high, factor = self._observed_rate(now), self.first_decrease
                self._floor = too_high * self.floor_share
                self._tokens = 0.0  # over the limit already: no burst now
            else:
                # Not min(rate, observed): the send rate is low right after a 429 for the wrong
                # reason (workers sleeping out Retry-After), and would cut far too deep.
                self._refill(now)
                too_high, factor = self._rate, self.decrease
            self._rate = max(too_high * factor, self._floor)
            self._step = too_high * self.recovery
            self._updated = now
            self._generation += 1
            self.decreases += 1
            return True

    def _refill(self, now: float) -> None:
        if self._rate is not None:
            self._tokens = min(self.burst, self._tokens + (now - self._updated) * self._rate)
        self._updated = now

    def _observed_rate(self, now: float) -> float:
        """Admissions per second over the last `window_s` (at least one: the throttled request)."""
        while self._sent and self._sent[0] < now - self.window_s:
            self._sent.popleft()
        count = max(1, len(self._sent))
        oldest = self._sent[0] if self._sent else now
        return count / max(now - oldest, 1e-3)


def retry_after_seconds(value: str | None, now: datetime | None = None) -> float | None:
    """`Retry-After` as delta-seconds or as an HTTP-date; None when absent or unreadable."""
    if not value:
        return None
    value = value.strip()
    if value.isascii() and value.isdigit():  # "²".isdigit() is True too
        return min(float(value), MAX_RETRY_AFTER_S)
    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    delta = (when - (now or datetime.now(UTC))).total_seconds()
    return min(max(delta, 0.0), MAX_RETRY_AFTER_S)


def parse_page(number: int, body: bytes) -> Page:
    """Read a 200 body. Invalid JSON is transient (a truncated answer); a wrong shape is not."""
    try:
        payload = json.loads(body)
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise TransientApiError(f"page {number}: body is not valid JSON ({exc.__class__.__name__})") from None
    if not isinstance(payload, dict) or not isinstance(payload.get("data"), list):
        raise UsageApiError(f"page {number}: unexpected body, no 'data' list")
    has_next = payload.get("has_next_page")
    if not isinstance(has_next, bool):
        raise UsageApiError(f"page {number}: unexpected body, 'has_next_page' is not true/false")
    total = payload.get("total_pages")
    return Page(
        number=number,
        body=body,
        records=payload["data"],
        has_next_page=has_next,
        total_pages=total if isinstance(total, int) and not isinstance(total, bool) else None,
    )


class UsageApiClient:
    def __init__(
        self,
        base_url: str,
        api_key: str,
        *,
        timeout_s: float = 30.0,
        page_size: int = 500,
        max_attempts: int = 6,
        backoff_base_s: float = 1.0,
        backoff_max_s: float = 60.0,
        session: requests.Session | None = None,
        sleep: Callable[[float], None] = time.sleep,
        limiter: RateLimiter | None = None,
        pool_size: int = 10,
    ) -> None:
        """`limiter` paces every attempt (None: no client-side pacing). `pool_size` is the most
        connections kept to the API, at least the number of threads sharing this client."""
        if not base_url:
            raise UsageApiError("USAGE_API_BASE_URL is not set")
        self.base_url = base_url.rstrip("/")
        self._api_key = api_key
        self.timeout_s = timeout_s
        self.page_size = page_size
        self.max_attempts = max_attempts
        self.session = session or _pooled_session(pool_size)
        self.sleep = sleep
        self.limiter = limiter
        self._lock = threading.Lock()  # fetch workers share one client
        self.attempts = 0  # every HTTP request made, retries included
        self._backoff = wait_exponential_jitter(
            multiplier=backoff_base_s, max=backoff_max_s, jitter=backoff_base_s
        )

    def _wait(self, state: RetryCallState) -> float:
        error = state.outcome.exception() if state.outcome else None
        if isinstance(error, TransientApiError) and error.retry_after_s is not None:
            return error.retry_after_s
        return float(self._backoff(state))

    def fetch_page(self, day: date, number: int) -> Page:
        retrying = Retrying(
            stop=stop_after_attempt(self.max_attempts),
            wait=self._wait,
            retry=retry_if_exception_type(TransientApiError),
            sleep=self.sleep,
            reraise=True,
            before_sleep=lambda s: log.warning(
                "usage API %s page %d: %s; retry %d of %d",
                day,
                number,
                s.outcome.exception() if s.outcome else "?",
                s.attempt_number,
                self.max_attempts - 1,
            ),
        )
        try:
            return retrying(self._request_page, day, number)
        except TransientApiError as exc:
            raise TransientApiError(
                f"usage API {day} page {number}: still failing after {self.max_attempts} attempts: {exc}"
            ) from None

    def _request_page(self, day: date, number: int) -> Page:
        ticket = self.limiter.acquire() if self.limiter else 0  # every attempt, retries included
        with self._lock:
            self.attempts += 1
        try:
            response = self.session.get(
                f"{self.base_url}/v2/usage",
                params={"date": day.isoformat(), "page": number, "page_size": self.page_size},
                headers={"Authorization": f"Bearer {self._api_key}", "Accept": "application/json"},
                timeout=(min(10.0, self.timeout_s), self.timeout_s),
            )
            body = response.content  # reading the body can time out or be cut off too
        except requests.Timeout:
            raise TransientApiError(f"page {number}: timed out after {self.timeout_s:g} s") from None
        except requests.RequestException as exc:  # connection reset, refused, chunked body cut off
            raise TransientApiError(f"page {number}: {exc.__class__.__name__}") from None
        status = response.status_code
        if self.limiter and status == 429:
            self.limiter.on_throttled(ticket)  # slow down; the Retry-After wait still comes on top
        elif self.limiter and status == 200:
            self.limiter.on_success()
        if status == 200:
            return parse_page(number, body)
        reason = _status_text(status)
        if status in TRANSIENT_STATUSES:
            raise TransientApiError(
                f"page {number}: HTTP {status} {reason}",
                retry_after_s=retry_after_seconds(response.headers.get("Retry-After")),
            )
        if status in PERMANENT_STATUSES:
            raise UsageApiError(f"usage API answered HTTP {status} {reason} for date {day} page {number}")
        if 500 <= status < 600:
            raise TransientApiError(f"page {number}: HTTP {status} {reason}")
        raise UsageApiError(f"usage API answered unexpected HTTP {status} for date {day} page {number}")


def _pooled_session(pool_size: int) -> requests.Session:
    """A session whose pool keeps a connection per worker thread (requests' default keeps 10 and
    drops the rest after use). urllib3's pool is thread-safe; we set no per-request session state."""
    session = requests.Session()
    adapter = HTTPAdapter(pool_maxsize=max(10, pool_size))
    session.mount("https://", adapter)
    session.mount("http://", adapter)
    return session


def _status_text(status: int) -> str:
    try:
        return HTTPStatus(status).phrase
    except ValueError:
        return ""
