"""Client for the Product Usage API: one page per call, with retries that know the API's moods.

Small pieces, each one idea (as in dlt's REST client): `retry_after_seconds` reads the
server's wish, `wait_for` picks the pause, `UsageApiClient.fetch_page` asks for one page and
classifies the answer, and the fetch service walks the pages by `has_next_page`.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, date, datetime
from email.utils import parsedate_to_datetime
from http import HTTPStatus
from typing import Any

import requests
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
    ) -> None:
        if not base_url:
            raise UsageApiError("USAGE_API_BASE_URL is not set")
        self.base_url = base_url.rstrip("/")
        self._api_key = api_key
        self.timeout_s = timeout_s
        self.page_size = page_size
        self.max_attempts = max_attempts
        self.session = session or requests.Session()
        self.sleep = sleep
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


def _status_text(status: int) -> str:
    try:
        return HTTPStatus(status).phrase
    except ValueError:
        return ""
