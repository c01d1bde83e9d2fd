"""A failed request says what the API said (issue 23 item 5, contract section 1): its status,
its URL without the key or any user-info, and up to 300 characters of its answer, in the run's
error line, the log, the alert and `status`'s table. A redirect to another host is named."""

from __future__ import annotations

import json
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler
from pathlib import Path

import pytest

from tests.support import read_alerts

DAY = "2026-10-01"
EXPLANATION = "page_size must be between 1 and 100"
Cli = Callable[..., tuple[int, str, str]]


class _Refuses(BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        body = json.dumps({"error": EXPLANATION}).encode()
        self.send_response(400)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: object) -> None:
        pass


class _Redirects(BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        port = self.server.server_address[1]
        self.send_response(302)
        self.send_header("Location", f"http://localhost:{port}/v2/usage?date={DAY}")
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, format: str, *args: object) -> None:
        pass


def test_a_400_shows_the_apis_explanation_everywhere(
    cli: Cli, local_env: Path, monkeypatch: pytest.MonkeyPatch, serve_http: Callable[..., str]
) -> None:
    api = serve_http(_Refuses)
    monkeypatch.setenv("USAGE_API_BASE_URL", f"http://svc:s3cretpassw0rd@{api}")

    code, _out, err = cli("run", "--date", DAY)

    assert code == 1
    assert "HTTP 400" in err and EXPLANATION in err, err
    assert f"usage API http://***@{api} answered HTTP 400" in err, err  # the setting, shown redacted
    assert f"(GET http://{api}/v2/usage?date={DAY}&page=1" in err, err  # asked without user-info
    assert "s3cretpassw0rd" not in err
    assert EXPLANATION in (local_env / "pipeline.log").read_text()
    [alert] = [a for a in read_alerts(local_env) if a["kind"] == "fetch_failed"]
    assert EXPLANATION in alert["message"]
    code, out, _err = cli("status")
    assert code == 0
    assert f"{DAY}: fetch failed: " in out and EXPLANATION in out, out
    row = next(line for line in out.splitlines() if line.startswith(DAY))
    assert "fetch failed" in row and " 1 " in row, row  # ERR counts the failed fetch


def test_a_redirect_to_another_host_is_named_in_the_run_line(
    cli: Cli, monkeypatch: pytest.MonkeyPatch, serve_http: Callable[..., str]
) -> None:
    monkeypatch.setenv("USAGE_API_BASE_URL", f"http://{serve_http(_Redirects)}")

    code, _out, err = cli("run", "--date", DAY)

    assert code == 1
    assert "the API redirected to localhost" in err and "not followed with the key" in err, err
    assert "HTTP 401" not in err, err  # not "401": a random port may hold those digits
