"""`python -m shared.cli serve`: the replay and status routes over HTTP, through the real handlers.

Requests go to the HTTP functions registered in function_app.py, exactly as the Functions
host would route `/api/<route>`; a background thread plays the queue triggers, delivering
whatever the requests enqueue. Function keys (`?code=`) are accepted and not checked, as
`func start` does locally.
"""

from __future__ import annotations

import logging
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qsl, urlsplit

log = logging.getLogger(__name__)


class LocalServer:
    def __init__(self, pipeline: Any, host: str = "127.0.0.1", port: int = 7071) -> None:
        self.pipeline = pipeline
        self._stop = threading.Event()
        self._server = ThreadingHTTPServer((host, port), _handler(pipeline))
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
            thread.join(timeout=30)

    def _deliver(self) -> None:
        """The queue triggers: drain whatever is queued, one message at a time, until stopped."""
        bus = self.pipeline.services.bus
        while not self._stop.is_set():
            if bus.idle():
                self._stop.wait(0.1)
                continue
            report = self.pipeline.host.drain()
            for line in report.error_alerts() + report.dead_lettered:
                log.error("%s", line)


def _handler(pipeline: Any) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            self._route("GET")

        def do_POST(self) -> None:
            self._route("POST")

        def _route(self, method: str) -> None:
            url = urlsplit(self.path)
            if not url.path.startswith("/api/"):
                self._send(404, b'{"error": "not found; try /api/replay or /api/status"}')
                return
            length = int(self.headers.get("Content-Length") or 0)
            body = self.rfile.read(length) if length else None
            params = dict(parse_qsl(url.query))
            response = pipeline.host.http(method, url.path[len("/api/") :], body=body, params=params)
            self._send(response.status_code, response.get_body(), response.mimetype or "application/json")

        def _send(self, status: int, body: bytes, content_type: str = "application/json") -> None:
            self.send_response(status)
            self.send_header("Content-Type", content_type)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format: str, *args: Any) -> None:
            log.info("http %s", format % args)

    return Handler
