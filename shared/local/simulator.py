"""A local Product Usage API (contract section 1) with injectable faults.

Used by the `demo` command and by tests: it serves whatever a `RecordSource` returns
for a date, page by page, and can misbehave on purpose (429s, resets, truncated
bodies, slow answers, page drift, endless pagination) so the fetcher's reliability
can be tested against a real socket rather than a mocked HTTP library.

Behaviour choices the contract leaves open:

* A day with zero records answers page 1 with `data: []`, `has_next_page: false`
  and `total_pages: 0` (the honest ceil(0 / page_size)); a client must not assume
  there is at least one page.
* Pages beyond the end answer 200 with empty data and `has_next_page: false`.
* A missing `page` means 1 and a missing `page_size` means 500; `date` is required.
* Checks run in this order: unknown path (404), auth (401), parameters (400), the rate
  limit (429), then faults. Faults therefore only ever hit well-formed, authorised, admitted
  requests.
* `latency_s` delays every answer (like a far-away API), without holding any lock: requests are
  served concurrently. `max_in_flight` reports the most requests it ever held at once.
* `rate_limit_rps` is a token bucket (`rate_limit_burst` tokens, default a tenth of a second's
  worth, at least 1): a request finding it empty gets 429 with `Retry-After: 1`, logged with
  fault "rate_limit".
"""

from __future__ import annotations

import contextlib
import hmac
import json
import math
import os
import re
import socket
import struct
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import date
from email.utils import formatdate
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import TracebackType
from typing import Any, Literal, NamedTuple, get_args
from urllib.parse import parse_qs, urlsplit

RecordSource = Callable[[date], Sequence[dict[str, Any]]]
"""All records the API returns for a date, in the order it returns them. The simulator reads
them as they are, page by page, and never changes them."""

USAGE_PATH = "/v2/usage"
DEFAULT_PAGE_SIZE = 500
MAX_PAGE_SIZE = 1000
NO_RESPONSE = 0  # the status logged for a request answered by a connection reset

FaultKind = Literal[
    "status",
    "retry_after_seconds",
    "retry_after_date",
    "reset",
    "truncate",
    "delay",
    "drift_duplicate",
    "endless",
    "overstated_total_pages",
    "ignores_page",
    "trickle",
]
FAULT_KINDS: frozenset[str] = frozenset(get_args(FaultKind))
FAULT_STATUSES = frozenset({400, 401, 403, 404, 500, 502, 503, 504})

_DATE_RE = re.compile(r"\d{4}-\d{2}-\d{2}")
_DIGITS_RE = re.compile(r"\d+")


@dataclass
class Fault:
    """One way to misbehave, for requests matching `date` and `page` (None = any).

    A fault applies to `times` matching requests and is then spent (-1 = forever).
    The simulator keeps the remaining counts itself, so a Fault can be reused.
    """

    kind: FaultKind
    date: str | None = None
    page: int | None = None
    times: int = 1
    status: int = 503
    seconds: float = 0.0
    extra_pages: int = 2  # "overstated_total_pages": how many pages more than it has it announces

    def __post_init__(self) -> None:
        # Fail at construction: a typo in a test's fault list should not silently do nothing.
        if self.kind not in FAULT_KINDS:
            raise ValueError(f"unknown fault kind {self.kind!r}")
        if self.kind == "status" and self.status not in FAULT_STATUSES:
            raise ValueError(f"fault status must be one of {sorted(FAULT_STATUSES)}, got {self.status}")
        if self.times < -1:
            raise ValueError("times must be -1 (forever) or >= 0")
        if self.seconds < 0:
            raise ValueError("seconds must be >= 0")


class RequestRecord(NamedTuple):
    """One request as the simulator saw it. Unparseable parameters are None."""

    date: str | None
    page: int | None
    page_size: int | None
    status: int  # NO_RESPONSE (0) when the connection was reset instead of answered
    fault: str | None  # the fault kind that shaped the answer, if any ("rate_limit": the server's limit)


class _BadRequest(Exception):
    pass


class _TokenBucket:
    """The server's rate limit: admit a request when a token is there, never wait."""

    def __init__(self, rate: float, burst: float, clock: Callable[[], float] = time.monotonic) -> None:
        self.rate = rate
        self.burst = burst
        self._clock = clock
        self._tokens = burst
        self._updated = clock()
        self._lock = threading.Lock()

    def admit(self) -> bool:
        with self._lock:
            now = self._clock()
            self._tokens = min(self.burst, self._tokens + (now - self._updated) * self.rate)
            self._updated = now
            if self._tokens < 1:
                return False
            self._tokens -= 1
            return True


class UsageApiSimulator:
    """Serves `GET /v2/usage` on a local port from a daemon thread.

    Use as a context manager (`with UsageApiSimulator(src) as api: api.base_url`)
    or call `start()` / `stop()`.
    """

    def __init__(
        self,
        records: RecordSource,
        *,
        api_key: str | None = "demo-key",
        include_total_pages: bool = True,
        faults: Sequence[Fault] = (),
        host: str = "127.0.0.1",
        port: int = 0,
        latency_s: float = 0.0,
        rate_limit_rps: float | None = None,
        rate_limit_burst: float | None = None,
    ) -> None:
        if latency_s < 0:
            raise ValueError("latency_s must be >= 0")
        if rate_limit_rps is not None and rate_limit_rps <= 0:
            raise ValueError("rate_limit_rps must be > 0 (None: no limit)")
        self._records = records
        self.latency_s = latency_s
        self._bucket = (
            _TokenBucket(rate_limit_rps, rate_limit_burst or max(1.0, rate_limit_rps / 10))
            if rate_limit_rps
            else None
        )
        self._in_flight = 0
        self._max_in_flight = 0
        self.api_key = api_key
        self.include_total_pages = include_total_pages
        self.faults: tuple[Fault, ...] = tuple(faults)
        self._remaining = [fault.times for fault in self.faults]
        self._host = host
        self._port = port
        self._lock = threading.Lock()
        self._log: list[RequestRecord] = []
        self._times: list[float] = []  # time.monotonic() of each entry of _log, as recorded
        self._server: _Server | None = None
        self._thread: threading.Thread | None = None
        # Set on stop() so "delay" faults wake up instead of holding a thread for `seconds`.
        self._stopping = threading.Event()

    # ----------------------------------------------------------------- lifecycle

    def start(self) -> UsageApiSimulator:
        if self._server is not None:
            raise RuntimeError("simulator already started")
        self._stopping.clear()
        server = _Server((self._host, self._port), _Handler, self)
        self._server = server
        self._thread = threading.Thread(
            target=server.serve_forever, kwargs={"poll_interval": 0.01}, name="usage-api-sim", daemon=True
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        server, self._server = self._server, None
        if server is None:
            return
        self._stopping.set()
        server.shutdown()
        server.server_close()
        # Keep-alive connections outlive serve_forever; cut them so a pooled client
        # connection cannot keep talking to a stopped simulator.
        server.close_open_connections()
        if self._thread is not None:
            self._thread.join(timeout=5)
            self._thread = None

    def __enter__(self) -> UsageApiSimulator:
        # Tolerate `with UsageApiSimulator(...).start() as api:` as well.
        return self if self._server is not None else self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    @property
    def base_url(self) -> str:
        if self._server is None:
            raise RuntimeError("simulator not started")
        host, port = self._server.server_address[:2]
        host_text = host.decode() if isinstance(host, bytes) else str(host)
        if ":" in host_text:
            host_text = f"[{host_text}]"
        return f"http://{host_text}:{port}"

    # ----------------------------------------------------------------- inspection

    @property
    def requests_seen(self) -> list[RequestRecord]:
        """A snapshot (copy) of the request log, oldest first."""
        with self._lock:
            return list(self._log)

    @property
    def request_times(self) -> list[float]:
        """When (time.monotonic()) each request of `requests_seen` was recorded, oldest first."""
        with self._lock:
            return list(self._times)

    def count(self, *, status: int | None = None, date: str | None = None, page: int | None = None) -> int:
        """How many logged requests match all given filters."""
        with self._lock:
            return sum(
                1
                for r in self._log
                if (status is None or r.status == status)
                and (date is None or r.date == date)
                and (page is None or r.page == page)
            )

    @property
    def max_in_flight(self) -> int:
        """The most requests being handled at the same moment, since start."""
        with self._lock:
            return self._max_in_flight

    def faults_remaining(self) -> list[int]:
        """Remaining uses per fault, in order (-1 = forever, 0 = spent)."""
        with self._lock:
            return list(self._remaining)

    # ----------------------------------------------------------------- internals

    def _record(self, entry: RequestRecord) -> None:
        with self._lock:
            self._log.append(entry)
            self._times.append(time.monotonic())

    def _enter(self) -> None:
        with self._lock:
            self._in_flight += 1
            self._max_in_flight = max(self._max_in_flight, self._in_flight)

    def _leave(self) -> None:
        with self._lock:
            self._in_flight -= 1

    def _admit(self) -> bool:
        return self._bucket is None or self._bucket.admit()

    def _take_fault(self, day: str, page: int, page_size: int, total: int) -> Fault | None:
        """The first matching, unspent fault; consumes one use of it."""
        with self._lock:
            for index, fault in enumerate(self.faults):
                remaining = self._remaining[index]
                if remaining == 0:
                    continue
                if fault.date is not None and fault.date != day:
                    continue
                if fault.page is not None and fault.page != page:
                    continue
                # Drift needs a previous page to borrow a record from; elsewhere it would be a no-op
                # that silently burns a use, so it does not match there.
                if fault.kind == "drift_duplicate" and not 0 <= (page - 1) * page_size - 1 < total:
                    continue
                if remaining > 0:
                    self._remaining[index] = remaining - 1
                return fault
        return None

    def _check_auth(self, header: str | None) -> bool:
        if self.api_key is None:
            return True
        if not header:
            return False
        scheme, _, token = header.partition(" ")
        # compare_digest: no reason for even a test server to leak the key through timing.
        expected = self.api_key.encode()
        return scheme.lower() == "bearer" and hmac.compare_digest(token.strip().encode(), expected)


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    # Bind fresh each time; the port is normally ephemeral anyway.
    allow_reuse_address = True

    def __init__(
        self, address: tuple[str, int], handler: type[BaseHTTPRequestHandler], sim: UsageApiSimulator
    ) -> None:
        if ":" in address[0]:
            self.address_family = socket.AF_INET6
        self.simulator = sim
        self._connections: set[socket.socket] = set()
        self._connections_lock = threading.Lock()
        super().__init__(address, handler)

    def track(self, conn: socket.socket, *, open_: bool) -> None:
        with self._connections_lock:
            if open_:
                self._connections.add(conn)
            else:
                self._connections.discard(conn)

    def close_open_connections(self) -> None:
        with self._connections_lock:
            conns = list(self._connections)
            self._connections.clear()
        for conn in conns:
            with contextlib.suppress(OSError):  # already gone
                conn.shutdown(socket.SHUT_RDWR)

    def handle_error(self, request: Any, client_address: Any) -> None:
        # Clients time out and hang up mid-answer on purpose here; no tracebacks on stderr.
        pass


class _Handler(BaseHTTPRequestHandler):
    # HTTP/1.1 keep-alive like a real API, so clients' connection pools get exercised.
    protocol_version = "HTTP/1.1"
    # Idle keep-alive connections give up after this, so handler threads do not pile up.
    timeout = 10
    server: _Server

    def setup(self) -> None:
        super().setup()
        # Headers and body go out in two writes; without NODELAY, Nagle + delayed ACK adds ~40 ms each.
        with contextlib.suppress(OSError):
            self.connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.server.track(self.connection, open_=True)

    def finish(self) -> None:
        try:
            super().finish()
        finally:
            self.server.track(self.connection, open_=False)

    def log_message(self, format: str, *args: Any) -> None:
        pass  # quiet: tests and the demo have their own output

    def do_GET(self) -> None:
        sim = self.server.simulator
        sim._enter()
        try:
            # Outside every lock, so concurrent requests wait side by side; stop() cuts it short.
            if sim.latency_s and sim._stopping.wait(sim.latency_s):
                self.close_connection = True
                return
            self._answer(sim)
        finally:
            sim._leave()

    def _answer(self, sim: UsageApiSimulator) -> None:
        asked = self._admitted(sim)
        if asked is None:
            return
        iso = asked.day.isoformat()
        fault = sim._take_fault(iso, asked.page, asked.page_size, len(asked.records))
        # Log before any I/O, so a client that just got (or timed out on) an answer sees it counted.
        sim._record(
            RequestRecord(iso, asked.page, asked.page_size, _status_for(fault), fault.kind if fault else None)
        )
        if fault is None:
            self._send_json(200, self._page_of(asked, sim))
        elif answer := _FAULT_ANSWERS.get(fault.kind):
            answer(self, sim, fault, asked)

    def _admitted(self, sim: UsageApiSimulator) -> _Asked | None:
        """The page asked for, with the day's records; None once a refusal is answered (an
        unknown path, no key, a bad parameter, the rate limit, a failing record source)."""
        url = urlsplit(self.path)
        if url.path.rstrip("/") != USAGE_PATH:
            sim._record(RequestRecord(None, None, None, 404, None))
            self._send_json(404, {"error": f"no such path: {url.path}"})
            return None

        query = parse_qs(url.query, keep_blank_values=True)
        raw_date = _first(query, "date")
        page = _int_or_none(_first(query, "page"))
        page_size = _int_or_none(_first(query, "page_size"))

        if not sim._check_auth(self.headers.get("Authorization")):
            sim._record(RequestRecord(raw_date, page, page_size, 401, None))
            self._send_json(401, {"error": "missing or invalid bearer token"}, {"WWW-Authenticate": "Bearer"})
            return None

        try:
            day, page, page_size = _validate(query)
        except _BadRequest as bad:
            sim._record(RequestRecord(raw_date, page, page_size, 400, None))
            self._send_json(400, {"error": str(bad)})
            return None

        if not sim._admit():
            sim._record(RequestRecord(day.isoformat(), page, page_size, 429, "rate_limit"))
            self._send_json(429, {"error": "rate limit exceeded"}, {"Retry-After": "1"})
            return None

        try:
            # Served as the source holds it: a page is a slice, the day is never copied (a copy
            # of 500,000 records per request made the simulator, not the client, the bottleneck).
            answer = sim._records(day)
            records = answer if isinstance(answer, Sequence) else list(answer)
        except Exception as exc:
            sim._record(RequestRecord(raw_date, page, page_size, 500, None))
            self._send_json(500, {"error": f"record source failed: {type(exc).__name__}"})
            return None
        return _Asked(day, page, page_size, records)

    def _page_of(self, asked: _Asked, sim: UsageApiSimulator) -> dict[str, Any]:
        return self._page_body(asked.records, asked.page, asked.page_size, sim.include_total_pages)

    # One answer per fault kind, looked up in _FAULT_ANSWERS.

    def _status_fault(self, sim: UsageApiSimulator, fault: Fault, asked: _Asked) -> None:
        self._send_json(fault.status, {"error": "injected fault", "status": fault.status})

    def _retry_after_seconds(self, sim: UsageApiSimulator, fault: Fault, asked: _Asked) -> None:
        retry = str(math.ceil(fault.seconds))
        self._send_json(429, {"error": "too many requests"}, {"Retry-After": retry})

    def _retry_after_date(self, sim: UsageApiSimulator, fault: Fault, asked: _Asked) -> None:
        # Round up: an HTTP-date has 1 s resolution and must not promise less than `seconds`.
        retry = formatdate(math.ceil(time.time() + fault.seconds), usegmt=True)
        self._send_json(429, {"error": "too many requests"}, {"Retry-After": retry})

    def _reset_fault(self, sim: UsageApiSimulator, fault: Fault, asked: _Asked) -> None:
        self._reset()

    def _truncate(self, sim: UsageApiSimulator, fault: Fault, asked: _Asked) -> None:
        body = _dumps(self._page_of(asked, sim))
        self._send_bytes(200, body[: len(body) // 2])

    def _delay(self, sim: UsageApiSimulator, fault: Fault, asked: _Asked) -> None:
        if sim._stopping.wait(fault.seconds):
            self.close_connection = True
            return
        self._send_json(200, self._page_of(asked, sim))

    def _drift_duplicate(self, sim: UsageApiSimulator, fault: Fault, asked: _Asked) -> None:
        drifted = self._page_of(asked, sim)
        drifted["data"].insert(0, asked.records[(asked.page - 1) * asked.page_size - 1])
        self._send_json(200, drifted)

    def _overstated_total_pages(self, sim: UsageApiSimulator, fault: Fault, asked: _Asked) -> None:
        overstated = self._page_body(asked.records, asked.page, asked.page_size, include_total_pages=True)
        overstated["total_pages"] += fault.extra_pages
        self._send_json(200, overstated)

    def _trickle_fault(self, sim: UsageApiSimulator, fault: Fault, asked: _Asked) -> None:
        # The page, a few bytes every `seconds`: never a read timeout.
        self._trickle(_dumps(self._page_of(asked, sim)), fault.seconds, sim)

    def _ignores_page(self, sim: UsageApiSimulator, fault: Fault, asked: _Asked) -> None:
        # Page 1, whatever was asked for, always "more to come".
        first = self._page_body(asked.records, 1, asked.page_size, include_total_pages=False)
        first["has_next_page"] = True
        self._send_json(200, first)

    def _endless(self, sim: UsageApiSimulator, fault: Fault, asked: _Asked) -> None:
        endless = self._page_body(asked.records, asked.page, asked.page_size, include_total_pages=False)
        endless["has_next_page"] = True
        self._send_json(200, endless)

    @staticmethod
    def _page_body(
        records: Sequence[dict[str, Any]], page: int, page_size: int, include_total_pages: bool
    ) -> dict[str, Any]:
        total_pages = math.ceil(len(records) / page_size)
        start = (page - 1) * page_size
        body: dict[str, Any] = {
            "data": list(records[start : start + page_size]),
            "page": page,
            "page_size": page_size,
            "has_next_page": page < total_pages,
        }
        if include_total_pages:
            body["total_pages"] = total_pages
        return body

    def _send_json(self, status: int, payload: Any, headers: dict[str, str] | None = None) -> None:
        self._send_bytes(status, _dumps(payload), headers)

    def _send_bytes(self, status: int, body: bytes, headers: dict[str, str] | None = None) -> None:
        try:
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            for name, value in (headers or {}).items():
                self.send_header(name, value)
            self.end_headers()
            self.wfile.write(body)
        except OSError:
            # The client gave up (e.g. after a read timeout); nothing left to answer.
            self.close_connection = True

    def _trickle(self, body: bytes, pause_s: float, sim: UsageApiSimulator) -> None:
        try:
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.flush()
            for start in range(0, len(body), 16):
                if sim._stopping.wait(pause_s):
                    break
                self.wfile.write(body[start : start + 16])
                self.wfile.flush()
        except OSError:
            pass  # the client gave up on the answer
        self.close_connection = True

    def _reset(self) -> None:
        """Abortive close: SO_LINGER 0 makes close() send RST instead of FIN."""
        self.close_connection = True
        conn = self.connection
        self.server.track(conn, open_=False)
        with contextlib.suppress(OSError):
            conn.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            # detach + os.close: socket.close() would wait for rfile/wfile to drop their refs.
            os.close(conn.detach())


class _Asked(NamedTuple):
    """A page a request may have: its day, page and size, and the day's records."""

    day: date
    page: int
    page_size: int
    records: Sequence[dict[str, Any]]


_FAULT_ANSWERS: dict[str, Callable[[_Handler, UsageApiSimulator, Fault, _Asked], None]] = {
    "status": _Handler._status_fault,
    "retry_after_seconds": _Handler._retry_after_seconds,
    "retry_after_date": _Handler._retry_after_date,
    "reset": _Handler._reset_fault,
    "truncate": _Handler._truncate,
    "delay": _Handler._delay,
    "drift_duplicate": _Handler._drift_duplicate,
    "overstated_total_pages": _Handler._overstated_total_pages,
    "trickle": _Handler._trickle_fault,
    "ignores_page": _Handler._ignores_page,
    "endless": _Handler._endless,
}


def _status_for(fault: Fault | None) -> int:
    if fault is None:
        return 200
    if fault.kind == "status":
        return fault.status
    if fault.kind in ("retry_after_seconds", "retry_after_date"):
        return 429
    if fault.kind == "reset":
        return NO_RESPONSE
    return 200


def _first(query: dict[str, list[str]], name: str) -> str | None:
    values = query.get(name)
    return values[0] if values else None


def _int_or_none(text: str | None) -> int | None:
    # Digits only: int() would also accept "+3", " 3" and "3_0".
    return int(text) if text is not None and _DIGITS_RE.fullmatch(text) else None


def _validate(query: dict[str, list[str]]) -> tuple[date, int, int]:
    raw_date = _first(query, "date")
    if raw_date is None or raw_date == "":
        raise _BadRequest("missing required parameter: date")
    # fromisoformat alone would also take "20261120"; the contract says YYYY-MM-DD.
    if not _DATE_RE.fullmatch(raw_date):
        raise _BadRequest("date must be YYYY-MM-DD")
    try:
        day = date.fromisoformat(raw_date)
    except ValueError:
        raise _BadRequest("date must be a valid calendar date") from None

    page = _parse_positive(_first(query, "page"), "page", default=1)
    page_size = _parse_positive(_first(query, "page_size"), "page_size", default=DEFAULT_PAGE_SIZE)
    if page_size > MAX_PAGE_SIZE:
        raise _BadRequest(f"page_size must be at most {MAX_PAGE_SIZE}")
    return day, page, page_size


def _parse_positive(text: str | None, name: str, *, default: int) -> int:
    if text is None:
        return default
    value = _int_or_none(text)
    if value is None or value < 1:
        raise _BadRequest(f"{name} must be a whole number >= 1")
    return value


def _dumps(payload: Any) -> bytes:
    # default=str: record sources may hand back date objects; send them as ISO strings.
    return json.dumps(payload, default=str, separators=(",", ":")).encode("utf-8")
