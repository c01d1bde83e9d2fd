"""`python -m shared.cli serve`: the replay, status, reconcile and health routes over HTTP, through the real handlers.

Requests go to the HTTP functions registered in function_app.py, exactly as the Functions
host would route `/api/<route>`; a background thread plays the queue triggers, delivering
whatever the requests enqueue. Function keys (`?code=`) are accepted and not checked, as
`func start` does locally.

Every answer is JSON, also for what the Functions host would refuse before a function runs
(a wrong method, a bad Content-Length, a body too large): an HTTP client always gets an
answer, never a dropped connection or an HTML error page.

`serve` holds LOCAL_DATA_DIR only while it works (folder_lock): from a request that may queue
work until the queues are empty again. In between, DuckDB is closed and the folder's lock
released, so `report`, other commands and read-only queries can run beside it.
"""

from __future__ import annotations

import json
import logging
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qsl, urlsplit

from shared.local.folder_lock import FolderBusy, FolderLock
from shared.services.replay import let_go_of_fetches

log = logging.getLogger(__name__)

MAX_BODY_BYTES = 1024 * 1024  # a replay body is a few dozen bytes
BODY_TIMEOUT_S = 10.0  # a client that sends less than its Content-Length
STOP_WAIT_S = 30  # how long a stop waits for the message being delivered (a build) to finish
ROUTES = "POST /api/replay, GET /api/status, GET /api/reconcile and GET /api/health"


class LocalServer:
    def __init__(
        self, pipeline: Any, host: str = "127.0.0.1", port: int = 7071, lock: FolderLock | None = None
    ) -> None:
        """`lock` is the folder's lock, held by the caller at start (released once the
        queues are first empty); without one the server takes none (tests)."""
        self.pipeline = pipeline
        self.lock = lock
        self._stop = threading.Event()
        self._state = threading.Lock()  # taking or releasing the folder, and queuing under it
        self._server = ThreadingHTTPServer((host, port), _handler(self))
        self._server.daemon_threads = True
        self._threads: list[threading.Thread] = []

    @property
    def base_url(self) -> str:
        host, port = self._server.server_address[:2]
        return f"http://{host!s}:{port}"

    def start(self) -> LocalServer:
        for target in (self._server.serve_forever, self._deliver):
            thread = threading.Thread(target=target, daemon=True)
            thread.start()
            self._threads.append(thread)
        return self

    def stop(self) -> None:
        self._stop.set()
        self._server.shutdown()
        self._server.server_close()
        for thread in self._threads:
            thread.join(timeout=STOP_WAIT_S)
        self._let_go()

    @contextmanager
    def working(self) -> Iterator[None]:
        """Hold the folder for a request that may queue work; FolderBusy if another command has it."""
        with self._state:
            if self.lock is not None and not self.lock.held:
                self.lock.acquire(wait=False)
                self.pipeline.services.bus.resync()  # another command may have worked meanwhile
                # As at a command's start (LocalPipeline): holding the folder, no other process
                # fetches, so a heartbeat in the ledger was left by a command killed meanwhile.
                let_go_of_fetches(self.pipeline.services)
            yield

    def _deliver(self) -> None:
        """The queue triggers: drain whatever is queued, one message at a time, until stopped."""
        bus = self.pipeline.services.bus
        while not self._stop.is_set():
            if bus.idle():
                self._let_go()
                self._stop.wait(0.1)
                continue
            report = self.pipeline.host.drain(should_stop=self._stop.is_set)
            for line in report.error_alerts() + report.dead_lettered:
                log.error("%s", line)

    def _let_go(self) -> None:
        with self._state:
            if self.lock is not None and self.lock.held and self.pipeline.services.bus.idle():
                self.pipeline.services.warehouse.close()
                self.lock.release(all_holds=True)


class _BadRequest(Exception):
    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


def _handler(server: LocalServer) -> type[BaseHTTPRequestHandler]:
    pipeline = server.pipeline

    class Handler(BaseHTTPRequestHandler):
        timeout = BODY_TIMEOUT_S  # socket timeout: a short body ends in a 400, not a hung thread

        def do_GET(self) -> None:
            self._route("GET")

        def do_POST(self) -> None:
            self._route("POST")

        def do_PUT(self) -> None:
            self._route("PUT")

        def do_DELETE(self) -> None:
            self._route("DELETE")

        def do_PATCH(self) -> None:
            self._route("PATCH")

        def do_OPTIONS(self) -> None:
            self._route("OPTIONS")

        def do_HEAD(self) -> None:
            self._route("HEAD")

        def send_error(self, code: int, message: str | None = None, explain: str | None = None) -> None:
            # What http.server answers itself (a malformed request line, an unknown method): JSON
            # too, and an unknown method is the client's mistake like any other wrong method.
            self.close_connection = True
            if code == 501:
                code, message = (
                    405,
                    f"method {str(self.command)[:20]!r} is not supported; the routes are {ROUTES}",
                )
            self._send(code, _error(message or self.responses.get(code, ("error",))[0]))

        def _route(self, method: str) -> None:
            try:
                url = urlsplit(self.path)
                if not url.path.startswith("/api/"):
                    raise _BadRequest(404, f"not found; the routes are {ROUTES}")
                body = self._body()
                params = dict(parse_qsl(url.query, keep_blank_values=True))
                route = url.path[len("/api/") :]
                # status reads the ledger alone; reconcile and health open the warehouse too
                if method in ("GET", "HEAD") and route not in ("reconcile", "health"):
                    response = pipeline.host.http(method, route, body=body, params=params)
                else:
                    try:
                        with server.working():
                            response = pipeline.host.http(method, route, body=body, params=params)
                    except FolderBusy as exc:
                        raise _BadRequest(503, str(exc)) from None
                # The headers a client acts on: Allow (405) and Retry-After (429, 503).
                headers = {k: v for k, v in response.headers.items() if k.lower() in ("allow", "retry-after")}
                self._send(response.status_code, response.get_body(), response.mimetype, headers)
            except _BadRequest as exc:
                self._send(exc.status, _error(str(exc)))
            except Exception as exc:  # never a dropped connection
                log.exception("serve: %s %s failed", method, self.path[:200])
                self._send(500, _error(f"internal error: {exc.__class__.__name__} (see pipeline.log)"))

        def _body(self) -> bytes | None:
            if self.headers.get("Transfer-Encoding"):
                self.close_connection = True
                raise _BadRequest(411, "send the body with a Content-Length, not chunked")
            raw = self.headers.get("Content-Length")
            if raw is None or raw.strip() == "":
                return None
            if not raw.strip().isdigit() or not raw.strip().isascii():
                self.close_connection = True  # what follows cannot be framed
                raise _BadRequest(400, f"Content-Length must be a whole number of bytes, got {raw[:40]!r}")
            length = int(raw)
            if length > MAX_BODY_BYTES:
                self.close_connection = True  # the body is not read
                raise _BadRequest(413, f"body of {length} bytes is above the limit of {MAX_BODY_BYTES}")
            try:
                body = self.rfile.read(length) if length else b""
            except TimeoutError:
                body = b""
            if len(body) < length:
                self.close_connection = True
                raise _BadRequest(
                    400, f"body shorter than its Content-Length ({len(body)} of {length} bytes)"
                )
            return body

        def _send(
            self,
            status: int,
            body: bytes,
            content_type: str | None = "application/json",
            headers: dict[str, str] | None = None,
        ) -> None:
            try:
                self.send_response(status)
                self.send_header("Content-Type", content_type or "application/json")
                self.send_header("Content-Length", str(len(body)))
                for name, value in (headers or {}).items():
                    self.send_header(name, value)
                if self.close_connection:
                    self.send_header("Connection", "close")
                self.end_headers()
                if self.command != "HEAD":
                    self.wfile.write(body)
            except OSError:  # the client went away first: nothing left to tell it
                self.close_connection = True

        def log_message(self, format: str, *args: Any) -> None:
            log.info("http %s", format % args)

    return Handler


def _error(message: str) -> bytes:
    return json.dumps({"error": message}).encode()
