"""No secret, nor any piece of one of 8 characters, in any output (issue 21 items 8 and 9).

An API (or a proxy in front of it) that answers 200 with a body echoing the request, the
Authorization header first and a truncated key after it, is fed through every command and
route: `run`, `backfill`, `status` (table and --json), `reconcile`, `report`, `health`, and
`serve`'s GET /api/status, /api/reconcile, /api/health and POST /api/replay. Then every output
is searched for every 8-character piece of the key, of the password in USAGE_API_BASE_URL, of
the basic credentials requests derives from it and of the webhook's secret path: stdout,
stderr, HTTP bodies, the webhook's payloads and every file in LOCAL_DATA_DIR (the ledger's
bytes, pipeline.log, alerts.jsonl, report.html, the bus journal).
"""

from __future__ import annotations

import base64
import json
import time
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler
from pathlib import Path

import pytest
import requests

from shared.config import Settings
from shared.local.pipeline import LocalPipeline
from shared.local.server import LocalServer
from tests.support import GOLDEN

KEY = "sk-live-4f9a2c7e1b3d8a6f0c2"  # 27 characters
TRUNCATED = KEY[:18]  # what a proxy that cuts the header shows
USER, PASSWORD = "svc", "s3cretpassw0rd"
BASIC = base64.b64encode(f"{USER}:{PASSWORD}".encode()).decode()  # what requests sends for it
HOOK_TOKEN = "XQ9fT3kLm2Zp8Rw4Yb6N"
DAY, OTHER_DAY, SERVE_DAY = "2026-10-01", "2026-09-30", "2026-09-29"

Cli = Callable[..., tuple[int, str, str]]


class _Echo(BaseHTTPRequestHandler):
    """200, text/plain, the request's headers (Authorization first), then a truncated key."""

    def do_GET(self) -> None:
        lines = [f"Authorization: {self.headers.get('Authorization')}"]
        lines += [f"{k}: {v}" for k, v in self.headers.items() if k.lower() != "authorization"]
        lines += [f"X-Api-Key-Seen: {TRUNCATED}", f"GET {self.path}"]
        body = "\r\n".join(lines).encode()
        self.send_response(200)
        self.send_header("Content-Type", "text/plain")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: object) -> None:
        pass


class _Hook(BaseHTTPRequestHandler):
    """A webhook receiver: keeps every body it is sent."""

    received: list[bytes] = []

    def do_POST(self) -> None:
        self.received.append(self.rfile.read(int(self.headers.get("Content-Length") or 0)))
        self.send_response(200)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, format: str, *args: object) -> None:
        pass


def pieces(*secrets: str) -> set[str]:
    return {s[i : i + 8] for s in secrets for i in range(len(s) - 7)}


def leaks(outputs: dict[str, bytes], forbidden: set[str]) -> list[str]:
    found = []
    for where, data in outputs.items():
        for piece in sorted(forbidden):
            if piece.encode() in data:
                found.append(f"{where}: {piece!r}")
                break
    return found


@pytest.mark.parametrize("with_password", [False, True], ids=["key-echoed", "password-url-and-webhook"])
def test_no_piece_of_a_secret_reaches_any_output(
    with_password: bool,
    cli: Cli,
    local_env: Path,
    monkeypatch: pytest.MonkeyPatch,
    serve_http: Callable[[type[BaseHTTPRequestHandler]], str],
) -> None:
    api = serve_http(_Echo)
    base_url = f"http://{USER}:{PASSWORD}@{api}" if with_password else f"http://{api}"
    monkeypatch.setenv("USAGE_API_BASE_URL", base_url)
    monkeypatch.setenv("USAGE_API_KEY", KEY)
    monkeypatch.setenv("USAGE_API_MAX_ATTEMPTS", "2")
    _Hook.received = []
    if with_password:
        monkeypatch.setenv("ALERT_WEBHOOK_URL", f"http://{serve_http(_Hook)}/hooks/T0123456/{HOOK_TOKEN}")
    outputs: dict[str, bytes] = {}

    def command(*args: str) -> int:
        code, out, err = cli(*args)
        outputs[f"{' '.join(args)} stdout"] = out.encode()
        outputs[f"{' '.join(args)} stderr"] = err.encode()
        return code

    crm = next(p for p in GOLDEN.crm_files() if p.name == f"companies_{DAY}.csv")
    assert command("crm-drop", str(crm)) == 0
    assert command("run", "--date", DAY) == 1
    run_error = outputs[f"run --date {DAY} stderr"].decode()
    assert "not JSON" in run_error and "Authorization" in run_error, run_error  # the answer is quoted
    assert command("backfill", "--from", OTHER_DAY, "--to", DAY) == 1
    for args in (("status",), ("status", "--json"), ("status", "--date", DAY)):
        assert command(*args) == 0
    command("reconcile", "--date", DAY)
    assert command("report") == 0
    assert command("health") == 1

    pipe = LocalPipeline(Settings.from_env())
    server = LocalServer(pipe, port=0).start()
    try:
        root = server.base_url
        answer = requests.post(f"{root}/api/replay", json={"date": SERVE_DAY, "force": True}, timeout=30)
        outputs["POST /api/replay"] = answer.content
        assert answer.status_code == 202, answer.text
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:  # the fetch runs in the background
            state = requests.get(f"{root}/api/status", params={"date": SERVE_DAY}, timeout=30).json()
            if (state.get("fetch") or {}).get("status") == "failed":
                break
            time.sleep(0.2)
        assert state["fetch"]["status"] == "failed", state
        for path, params in [
            ("status", {}),
            ("status", {"date": SERVE_DAY}),
            ("status", {"date": DAY}),
            ("reconcile", {"date": DAY}),
            ("health", {}),
        ]:
            answer = requests.get(f"{root}/api/{path}", params=params, timeout=60)
            outputs[f"GET /api/{path} {params}"] = answer.content
    finally:
        server.stop()
        pipe.close()

    for path in local_env.rglob("*"):
        if path.is_file():
            outputs[str(path.relative_to(local_env))] = path.read_bytes()
    for number, body in enumerate(_Hook.received):
        outputs[f"webhook payload {number}"] = body
    assert "ledger.sqlite3" in outputs and "pipeline.log" in outputs and "report.html" in outputs
    if with_password:
        assert _Hook.received, "no alert reached the webhook"
    else:
        assert "alerts.jsonl" in outputs
    forbidden = pieces(KEY, PASSWORD, BASIC, HOOK_TOKEN)
    assert leaks(outputs, forbidden) == []
    # The stored error still says what the API answered, redacted.
    status = json.loads(outputs["status --json stdout"])
    failed = next(d for d in status["days"] if d["date"] == DAY)["fetch"]["error"]
    assert "Authorization" in failed and "***" in failed, failed
