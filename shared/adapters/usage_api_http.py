"""Client for the Product Usage API: one page per call, with retries that know the API's moods.

Small pieces, each one idea (as in dlt's REST client): `retry_after_seconds` reads the
server's wish, `RateLimiter` (usage_api_pacing) paces the requests and slows down when the
server says 429, `UsageApiClient.fetch_page` asks for one page and classifies the answer with
the one rule in `shared.domain.http_status`, and the fetch service walks the pages by
`has_next_page`.
"""

from __future__ import annotations

import logging
import math
import os
import re
import threading
import time
from collections.abc import Callable
from datetime import UTC, date, datetime
from email.utils import parsedate_to_datetime
from typing import Any
from urllib.parse import urlencode, urljoin, urlsplit, urlunsplit

import requests
import urllib3
from requests.adapters import HTTPAdapter
from tenacity import RetryCallState, Retrying, retry_if_exception_type, wait_exponential_jitter
from urllib3.exceptions import NameResolutionError, NewConnectionError

from shared.adapters.usage_api_pacing import RateLimiter, shared_limiter
from shared.config import Settings
from shared.domain import http_status
from shared.domain.text_limits import flattened, shortened
from shared.domain.usage_page import MalformedPage, Page, TruncatedPage, parse_page
from shared.observability.redact import public_url, redactor
from shared.ports import ApiAsksToWait, ApiUnreachable, TransientApiError, UsageApiError

_STOP_STEP_S = 0.1  # the longest a stop noted by another thread waits to be seen
log = logging.getLogger(__name__)
# One line when a wait the API asked for starts (the CLI prints these on stderr): a fetch that
# waits on the API is not silence.
wait_log = logging.getLogger(f"{__name__}.wait")

MAX_RETRY_AFTER_S = 300.0  # a server asking for more than this is treated as asking for this
ANSWER_CHARS = 300  # how much of a failed answer a message quotes (contract section 1)
MAX_REDIRECTS = 5  # redirects followed within the API's own host


def retry_after_seconds(
    value: str | None, now: datetime | None = None, cap: float = MAX_RETRY_AFTER_S
) -> float | None:
    """`Retry-After` as delta-seconds or as an HTTP-date, at most `cap`; None when absent or
    unreadable."""
    if not value:
        return None
    value = value.strip()
    if value.isascii() and value.isdigit():  # "²".isdigit() is True too
        return min(float(value), cap)
    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    delta = (when - (now or datetime.now(UTC))).total_seconds()
    return min(max(delta, 0.0), cap)


class FetchStopped(BaseException):
    """Raised in a page worker whose client was stopped: not an API error, never retried nor
    caught as one; the thread that stopped the client raises the KeyboardInterrupt itself."""


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
        unreachable_s: float = 60.0,
        session: requests.Session | None = None,
        sleep: Callable[[float], None] | None = None,
        clock: Callable[[], float] = time.monotonic,
        limiter: RateLimiter | None = None,
        pool_size: int = 10,
        max_wait_s: float = MAX_RETRY_AFTER_S,
    ) -> None:
        """`limiter` paces every attempt (None: no client-side pacing). `pool_size` is the most
        connections kept to the API, at least the number of threads sharing this client.
        `unreachable_s` bounds how long a page that gets no answer at all is tried."""
        if not base_url:
            raise UsageApiError("USAGE_API_BASE_URL is not set")
        self.base_url = base_url.rstrip("/")
        self._api_key = api_key
        # What messages name: the URL without its user-info. An answer may echo the request,
        # so what is quoted of it is redacted of the key and the URL's password, and of every
        # piece of them.
        self.shown_url = public_url(self.base_url)
        self._request_root = _without_user_info(self.base_url)
        self._redact = redactor(tuple(s for s in (api_key, self.base_url) if s))
        self.timeout_s = timeout_s
        self.page_size = page_size
        self.max_attempts = max_attempts
        self.max_wait_s = max_wait_s  # a longer Retry-After is not waited for: ApiAsksToWait
        self.unreachable_s = unreachable_s
        self.clock = clock
        self.session = session or _pooled_session(pool_size, self.base_url)
        self._headers = {
            **self.session.headers,
            "Authorization": f"Bearer {api_key}",
            "Accept": "application/json",
        }
        self._page_request = _page_request_template(self._request_root, self._headers)
        # Set by `stop`: every wait and backoff ends at once. Pages fetched by a thread pool sleep
        # in the workers, where a Ctrl-C never arrives; time.sleep would hold the stop for as
        # long as the API asked (Retry-After), and the process exit with it.
        self._stopping = threading.Event()
        self.sleep = sleep or self._sleep_unless_stopped
        self.limiter = limiter
        self._lock = threading.Lock()  # fetch workers share one client
        self.attempts = 0  # every HTTP request made, retries included
        # Seconds spent on failed requests and on this client's own backoff (not on a wait the
        # API asked for): what the fetch's retry budget counts. Past `retry_budget_s`, no page
        # is tried again.
        self.retry_s = 0.0
        self.retry_budget_s = math.inf
        # Seconds the fetch has waited because the API asked (Retry-After), overlapping waits of
        # concurrent pages counted once: past max_wait_s in total the fetch is rescheduled.
        self.waited_s = 0.0
        self._waiting_until = -math.inf  # clock() at which the current wait ends
        self._backoff = wait_exponential_jitter(
            multiplier=backoff_base_s, max=backoff_max_s, jitter=backoff_base_s
        )

    def stop(self) -> None:
        """End every wait and backoff of this client now, and start no other request: the
        fetch was stopped (Ctrl-C, SIGTERM). The pages waiting raise FetchStopped."""
        self._stopping.set()

    def _sleep_unless_stopped(self, seconds: float) -> None:
        # In steps: a Ctrl-C the kernel gives to another thread (a heartbeat's) runs Python's
        # handler only when the main thread next runs Python, and one long wait there would
        # hold the stop for as long as the API asked (seen: 100 s of Retry-After).
        ends = time.monotonic() + seconds
        while (left := ends - time.monotonic()) > 0:
            if self._stopping.wait(min(left, _STOP_STEP_S)):
                raise FetchStopped("the fetch was stopped")

    def _wait(self, state: RetryCallState) -> float:
        error = state.outcome.exception() if state.outcome else None
        if isinstance(error, TransientApiError) and error.retry_after_s is not None:
            return error.retry_after_s
        return float(self._backoff(state))

    def fetch_page(self, day: date, number: int) -> Page:
        started = self.clock()

        def unreachable_for() -> float | None:
            """Seconds this page has been tried without an answer, or None once it had one."""
            return None if reached[0] else self.clock() - started

        def stop(state: RetryCallState) -> bool:
            spent = unreachable_for()
            return (
                state.attempt_number >= self.max_attempts
                or (spent is not None and spent >= self.unreachable_s)
                or self.retry_s >= self.retry_budget_s
            )

        def wait(state: RetryCallState) -> float:
            pause = self._wait(state)
            spent = unreachable_for()  # no answer yet: stay within the budget
            pause = pause if spent is None else max(0.0, min(pause, self.unreachable_s - spent))
            error = state.outcome.exception() if state.outcome else None
            if not (isinstance(error, TransientApiError) and error.retry_after_s is not None):
                pause = max(0.0, min(pause, self.retry_budget_s - self.retry_s))
                with self._lock:
                    self.retry_s += pause  # our own backoff; the API's Retry-After is not counted
            return pause

        def attempt() -> Page:
            if self._stopping.is_set():
                raise FetchStopped("the fetch was stopped")
            began = self.clock()
            try:
                return self._request_page(day, number)
            except TransientApiError as exc:
                with self._lock:
                    self.retry_s += self.clock() - began
                reached[0] = reached[0] or not isinstance(exc, _NoAnswer)
                raise

        reached = [False]
        try:
            return attempt()  # most pages answer at once: no retry machinery is built for them
        except TransientApiError as first:
            failed = first
        retrying = Retrying(
            stop=stop,
            wait=wait,
            retry=retry_if_exception_type(TransientApiError),
            sleep=self.sleep,
            reraise=True,
            before_sleep=lambda s: self._before_retry(s, day, number),
        )
        try:
            # The first attempt, made above, is the retrying's first: its pause, count and stop
            # are decided as if the retrying had made it.
            return retrying(_failed_once_then(failed, attempt))
        except _NoAnswer as exc:
            if reached[0]:  # it answered before: an ordinary transient failure
                raise TransientApiError(
                    f"usage API {self.shown_url} {day} page {number}: still failing: {exc}"
                ) from None
            tried, attempts = self.clock() - started, retrying.statistics.get("attempt_number", 1)
            raise ApiUnreachable(
                f"usage API {self.shown_url} cannot be reached: {exc.cause}"
                f" ({attempts} attempt{'s' if attempts != 1 else ''} over {tried:.0f} s)",
                page=number,
            ) from None
        except TransientApiError as exc:
            # The requests really made for this page and the time they took (the bound is
            # USAGE_API_MAX_ATTEMPTS, but the unreachable budget may end it sooner).
            tried, attempts = self.clock() - started, retrying.statistics.get("attempt_number", 1)
            raise TransientApiError(
                f"usage API {self.shown_url} {day} page {number}: still failing after"
                f" {attempts} request{'s' if attempts != 1 else ''} over {tried:.0f} s: {exc}"
            ) from None

    def _before_retry(self, state: RetryCallState, day: date, number: int) -> None:
        """Just before a pause between two attempts of a page (never after the last one)."""
        error = state.outcome.exception() if state.outcome else None
        if isinstance(error, TransientApiError) and error.retry_after_s is not None:
            self._reserve_wait(day, number, error.retry_after_s)
        log.warning(
            "usage API %s, %s %s; retry %d of %d in %.1f s",
            self.shown_url,
            day,
            error if error is not None else "?",
            state.attempt_number,
            self.max_attempts - 1,
            state.upcoming_sleep,
        )

    def _reserve_wait(self, day: date, number: int, asked_s: float) -> None:
        """Count a wait the API asked for in the fetch's wait total, or raise ApiAsksToWait when
        it would take the total past max_wait_s: many short Retry-Afters must not hold a fetch
        for hours. Waits of concurrent pages that overlap count once, and are told once."""
        with self._lock:
            now = self.clock()
            ends = now + asked_s
            added = max(0.0, ends - max(now, self._waiting_until))
            if self.waited_s + added > self.max_wait_s:
                raise ApiAsksToWait(
                    f"usage API {self.shown_url} asked for date {day} page {number} to wait"
                    f" {asked_s:.0f} s more (Retry-After) after {self.waited_s:.0f} s of waits:"
                    f" more than USAGE_API_MAX_WAIT_S ({self.max_wait_s:g} s) in total",
                    wait_s=asked_s,
                    page=number,
                    retry_after=f"{asked_s:.0f}",
                    waited_s=self.waited_s,
                )
            starts = now >= self._waiting_until
            self.waited_s += added
            self._waiting_until = max(self._waiting_until, ends)
        if starts:
            wait_log.warning(
                "usage API %s asked to wait %.0f s (Retry-After, %s page %d); %.0f s of waits so far"
                " of at most %g s (USAGE_API_MAX_WAIT_S)",
                self.shown_url,
                asked_s,
                day,
                number,
                self.waited_s,
                self.max_wait_s,
            )

    def _request_page(self, day: date, number: int) -> Page:
        ticket = self.limiter.acquire() if self.limiter else 0  # every attempt, retries included
        with self._lock:
            self.attempts += 1
        request = self._prepared(day, number)
        try:
            response = self._send(request)
        except requests.RequestException as exc:
            cause = _no_answer_cause(exc, min(10.0, self.timeout_s), self.timeout_s)
            if cause is not None:
                raise _NoAnswer(number, cause) from None
            if isinstance(exc, requests.Timeout):
                raise TransientApiError(f"page {number}: timed out after {self.timeout_s:g} s") from None
            # Reset mid-answer, chunked body cut off: the API was there.
            raise TransientApiError(f"page {number}: connection broken ({exc.__class__.__name__})") from None
        body = self._read_body(response, number)
        status = response.status_code
        if self.limiter and status == 429:
            self.limiter.on_throttled(ticket)  # slow down; the Retry-After wait still comes on top
        elif self.limiter and status == 200:
            self.limiter.on_success()
        if status == 200:
            if not _looks_like_json(body, response.headers.get("Content-Type", "")):
                # A portal, a proxy or a wrong URL answering a web page: asking again gets the same.
                # It may echo the request (the key first): what is quoted is redacted.
                raise UsageApiError(
                    f"usage API {self.shown_url} answered 200 with a page that is not JSON"
                    f" ({response.headers.get('Content-Type') or 'no content type'}: {self._quote(body)});"
                    " check USAGE_API_BASE_URL"
                )
            try:
                return parse_page(number, body)
            except TruncatedPage as exc:  # a cut-off answer: ask again
                raise TransientApiError(str(exc)) from None
            except MalformedPage as exc:  # the same answer next time
                raise UsageApiError(str(exc)) from None
        if response.is_redirect:
            # Only a redirect to another host reaches here (see _send): the key is not sent there.
            raise UsageApiError(
                f"usage API {self.shown_url}: the API redirected to {_host_of(response.url)}"
                f" (HTTP {status} to {self._where(response.url)}) for date {day} page {number};"
                " not followed with the key: check USAGE_API_BASE_URL"
            )
        reason = http_status.phrase(status)
        said = f": {self._quote(body)}" if body.strip() else ""
        if http_status.is_transient(status):
            header = response.headers.get("Retry-After")
            asked = retry_after_seconds(header, cap=math.inf)
            if asked is not None and asked > self.max_wait_s:
                raise ApiAsksToWait(
                    f"usage API {self.shown_url} answered HTTP {status} {reason} for date {day} page {number}"
                    f" asking to wait {asked:.0f} s (Retry-After), longer than USAGE_API_MAX_WAIT_S"
                    f" ({self.max_wait_s:g} s)",
                    wait_s=asked,
                    page=number,
                    retry_after=(header or "").strip()[:80],
                )
            raise TransientApiError(
                f"page {number}: HTTP {status} {reason}{said}",
                retry_after_s=None if asked is None else min(asked, self.max_wait_s),
            )
        raise UsageApiError(
            f"usage API {self.shown_url} answered HTTP {status} {reason} for date {day} page {number}"
            f" (GET {public_url(request.url or '')}){said}"
        )

    def _prepared(self, day: date, number: int) -> requests.PreparedRequest:
        """The request for one page. `prepare` parses and re-quotes the whole URL (a tenth of a
        page's CPU), so the page's query is appended to a copy of the template prepared once:
        the same URL, as the template's has no query of its own (else each is prepared)."""
        params = {"date": day.isoformat(), "page": str(number), "page_size": str(self.page_size)}
        template = self._page_request
        if template is None:
            request = requests.PreparedRequest()
            request.prepare(
                method="GET", url=f"{self._request_root}/v2/usage", params=params, headers=self._headers
            )
            return request
        request = template.copy()
        request.url = f"{template.url}?{urlencode(params)}"
        return request

    def _send(self, request: requests.PreparedRequest) -> requests.Response:
        """The answer, redirects within the API's own host followed. A redirect to another host
        is returned as it is: the key is never sent anywhere but to the API."""
        timeout = (min(10.0, self.timeout_s), self.timeout_s)
        for _ in range(MAX_REDIRECTS + 1):
            # send() rather than get(): get() merges the session and the environment into every
            # request, which cost more than parsing the page; both are merged once, here.
            response = self.session.send(request, timeout=timeout, stream=True, allow_redirects=False)
            target = response.headers.get("Location") if response.is_redirect else None
            if target is None:
                return response
            target = urljoin(request.url or "", target)
            if not _same_host(request.url or "", target):
                response.url = target  # where it wanted the key to go, for the message
                return response
            response.close()
            request = request.copy()
            request.prepare_url(target, None)
        return response

    def _quote(self, body: bytes) -> str:
        """The start of an answer, to say why it failed, as the API wrote it (not repr-quoted:
        `can't` stays `can't`, a JSON `\"` stays one backslash): at most ANSWER_CHARS characters
        on one line, control characters removed, and no secret nor any piece of one."""
        text = body[: ANSWER_CHARS * 4].decode("utf-8", "replace")
        return shortened(self._redact(flattened(text)), ANSWER_CHARS)

    def _where(self, url: str) -> str:
        """A URL to show: no user-info, no query (it may carry a token)."""
        try:
            parts = urlsplit(public_url(url))
        except ValueError:
            return "an unreadable address"
        return self._redact(f"{parts.scheme}://{parts.netloc}{parts.path}")

    def _read_body(self, response: requests.Response, number: int) -> bytes:
        """The whole body within USAGE_API_TIMEOUT_S. The read timeout bounds each wait for the
        next bytes, so a server that trickles a byte every few seconds would never trip it:
        the answer as a whole gets the same time."""
        deadline = self.clock() + self.timeout_s
        read = getattr(response.raw, "read1", None)  # urllib3 2: returns what has arrived
        parts: list[bytes] = []
        try:
            if read is None:
                chunks: Any = response.iter_content(65_536)
            else:
                chunks = iter(lambda: read(65_536, decode_content=True), b"")
            for chunk in chunks:
                parts.append(chunk)
                if self.clock() > deadline:
                    raise TransientApiError(
                        f"page {number}: the answer took longer than {self.timeout_s:g} s"
                    )
        except (requests.RequestException, urllib3.exceptions.HTTPError) as exc:
            response.close()
            if isinstance(exc, (requests.Timeout, urllib3.exceptions.TimeoutError)):
                raise TransientApiError(f"page {number}: timed out after {self.timeout_s:g} s") from None
            raise TransientApiError(f"page {number}: connection broken ({exc.__class__.__name__})") from None
        except BaseException:
            response.close()
            raise
        release = getattr(response.raw, "release_conn", None)
        if release is not None:
            release()  # read to the end: the connection goes back to the pool
        return b"".join(parts)


def _failed_once_then(error: TransientApiError, attempt: Callable[[], Page]) -> Callable[[], Page]:
    """`attempt`, whose first call, already made, raised `error`."""
    made = [False]

    def again() -> Page:
        if not made[0]:
            made[0] = True
            raise error
        return attempt()

    return again


def _looks_like_json(body: bytes, content_type: str) -> bool:
    """A page is JSON or a JSON cut off; a body that is markup from its first byte, or says it is
    HTML, is not the API answering (a cut-off page is retried, this is not)."""
    if "html" in content_type.lower():
        return False
    start = body.lstrip()[:1]
    return start in (b"{", b"[", b"")


def _host_of(url: str) -> str:
    try:
        return urlsplit(url).hostname or "an unnamed host"
    except ValueError:
        return "an unreadable address"


def _same_host(url: str, target: str) -> bool:
    """Whether a redirect stays with the API: the same host and port (http to https allowed)."""
    try:
        old, new = urlsplit(url), urlsplit(target)
        ports = {"http": 80, "https": 443}
        same_port = (old.port or ports.get(old.scheme)) == (new.port or ports.get(new.scheme)) or (
            old.scheme == "http"
            and new.scheme == "https"
            and old.port in (None, 80)
            and new.port in (None, 443)
        )
        return old.hostname == new.hostname and same_port and new.scheme in ("http", "https")
    except ValueError:
        return False


class _NoAnswer(TransientApiError):
    """This attempt reached no API at all; `cause` says why in words."""

    def __init__(self, page: int, cause: str) -> None:
        super().__init__(f"page {page}: {cause}")
        self.cause = cause


def _no_answer_cause(
    exc: requests.RequestException, connect_timeout_s: float, timeout_s: float
) -> str | None:
    """Why no API answered (refused, DNS, TLS, no connection or no answer in time), or None if
    one did. A read timeout before the status line is no answer either: an API that takes the
    connection and never answers is as unreachable as one that refuses it."""
    if isinstance(exc, requests.exceptions.SSLError):
        return f"TLS failed ({_tls_reason(exc)})"
    if isinstance(exc, requests.ConnectTimeout):
        return f"no connection within {connect_timeout_s:g} s"
    if isinstance(exc, requests.ReadTimeout):
        return f"connected, but no answer within {timeout_s:g} s"
    if not isinstance(exc, requests.ConnectionError):
        return None
    reason = getattr(exc.args[0], "reason", None) if exc.args else None
    if isinstance(reason, NameResolutionError):
        return "DNS: the host name does not resolve"
    if isinstance(reason, NewConnectionError):
        text = str(reason)
        return text.rsplit("] ", 1)[-1].lower() if "] " in text else "no connection"
    return None


_SSL_REASON = re.compile(r"\[SSL: [A-Z0-9_]+\] ([^(\]\[]+?)\s*(?:\(_ssl|$)")


def _tls_reason(exc: BaseException) -> str:
    """The words of an ssl error, without the layers urllib3 and requests wrap around them:
    "[SSL: WRONG_VERSION_NUMBER] wrong version number (_ssl.c:1006)" -> "wrong version number"."""
    text = str(exc)
    found = _SSL_REASON.search(text)
    if found:
        return found.group(1).strip()
    return text.rsplit(": ", 1)[-1].strip(" )\"'[]") or exc.__class__.__name__


def _pooled_session(pool_size: int, base_url: str) -> requests.Session:
    """A session whose pool keeps a connection per worker thread (requests' default keeps 10 and
    drops the rest after use). urllib3's pool is thread-safe; we set no per-request session state.

    The environment (HTTP(S)_PROXY and NO_PROXY for the API's host, REQUESTS_CA_BUNDLE) is read
    once here instead of on every request, as requests does while trust_env is on."""
    session = requests.Session()
    adapter = HTTPAdapter(pool_maxsize=max(10, pool_size))
    session.mount("https://", adapter)
    session.mount("http://", adapter)
    session.proxies = requests.utils.get_environ_proxies(base_url)
    bundle = os.environ.get("REQUESTS_CA_BUNDLE") or os.environ.get("CURL_CA_BUNDLE")
    if bundle:
        session.verify = bundle
    session.trust_env = False
    return session


def _page_request_template(root: str, headers: dict[str, Any]) -> requests.PreparedRequest | None:
    """The page request without its query, prepared once; None when the URL cannot take a query
    appended as it is (it has one, or a fragment): then each request is prepared whole."""
    template = requests.PreparedRequest()
    try:
        # Without user-info: requests would turn it into Basic auth in place of the key.
        template.prepare(method="GET", url=f"{root}/v2/usage", headers=headers)
    except Exception:  # a key or URL requests refuses: the first request raises it, as before
        return None
    url = template.url or ""
    return template if url.startswith(("http://", "https://")) and not set(url) & {"?", "#"} else None


def client_for(settings: Settings) -> UsageApiClient:
    """A client for one day's fetch. Its rate limiter is the process's one for this API
    (`shared_limiter`): every fetch of a lookback or backfill, and every worker of each,
    together stay within USAGE_API_MAX_RPS."""
    return UsageApiClient(
        settings.usage_api_base_url,
        settings.usage_api_key,
        timeout_s=settings.usage_api_timeout_s,
        page_size=settings.usage_api_page_size,
        max_attempts=settings.usage_api_max_attempts,
        backoff_base_s=settings.usage_api_backoff_base_s,
        backoff_max_s=settings.usage_api_backoff_max_s,
        unreachable_s=settings.usage_api_unreachable_s,
        limiter=shared_limiter(settings.usage_api_base_url, settings.usage_api_max_rps),
        pool_size=settings.usage_api_concurrency,
        max_wait_s=settings.usage_api_max_wait_s,
    )


def _without_user_info(url: str) -> str:
    """`url` without `user:password@`: the API is asked with its key (contract section 1)."""
    parts = urlsplit(url)
    host = parts.netloc.rpartition("@")[2]
    return urlunsplit((parts.scheme, host, parts.path, parts.query, parts.fragment))
