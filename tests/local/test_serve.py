"""`serve` over a real socket: every request gets a JSON answer, bad input a 4xx and nothing
queued, and the server holds the data folder only while it works (issue 11)."""

from __future__ import annotations

import json
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import duckdb
import pytest
import requests
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from shared.config import Settings
from shared.local import server as server_module
from shared.local.folder_lock import FolderLock
from shared.local.pipeline import LocalPipeline
from shared.local.server import LocalServer
from tests.support import GOLDEN, REPO


@pytest.fixture
def pipeline_only(local_env: Path) -> Iterator[LocalPipeline]:
    pipe = LocalPipeline(Settings.from_env())
    yield pipe
    pipe.close()


@pytest.fixture
def http_only(pipeline_only: LocalPipeline, monkeypatch: pytest.MonkeyPatch) -> Iterator[LocalServer]:
    """The HTTP side alone: nothing delivers what a request queues, so a test sees exactly what
    each request enqueued (and no fetch runs in the background)."""
    monkeypatch.setattr(server_module, "BODY_TIMEOUT_S", 0.5)
    server = LocalServer(pipeline_only, port=0)
    thread = threading.Thread(target=server._server.serve_forever, daemon=True)
    thread.start()
    yield server
    server._server.shutdown()
    server._server.server_close()


def raw_request(server: LocalServer, data: bytes) -> tuple[int, dict[str, str], bytes]:
    """Send bytes as they are; the status, headers and body of the answer (which must come)."""
    host, port = server._server.server_address[:2]
    with socket.create_connection((str(host), int(port)), timeout=10) as conn:
        conn.sendall(data)
        conn.shutdown(socket.SHUT_WR)
        answer = b""
        while chunk := conn.recv(65536):
            answer += chunk
    assert answer, f"no answer to {data[:120]!r}"
    head, _, body = answer.partition(b"\r\n\r\n")
    status_line, *header_lines = head.decode("latin-1").split("\r\n")
    headers = {k.strip().lower(): v.strip() for k, _, v in (h.partition(":") for h in header_lines)}
    return int(status_line.split()[1]), headers, body


def sent(server: LocalServer) -> int:
    return sum(server.pipeline.services.bus.sent_count.values())


def error_of(body: bytes) -> str:
    payload = json.loads(body)
    assert isinstance(payload, dict) and isinstance(payload.get("error"), str), payload
    return str(payload["error"])


# --- each defect the issue names -----------------------------------------------------------------


def test_a_deeply_nested_body_is_a_400_not_a_dropped_connection(http_only: LocalServer) -> None:
    # Before: RecursionError in json.loads, the connection dropped (a 500 on Azure).
    body = b"[" * 100_000
    status, _headers, answer = raw_request(
        http_only, b"POST /api/replay HTTP/1.1\r\nContent-Length: %d\r\n\r\n%s" % (len(body), body)
    )
    assert status == 400 and "nested too deeply" in error_of(answer)
    assert sent(http_only) == 0


def test_the_function_itself_refuses_a_deeply_nested_body(pipeline_only: LocalPipeline) -> None:
    """The same handler Azure runs, without the local server in front of it."""
    response = pipeline_only.host.http("POST", "replay", body=b"[" * 100_000)
    assert response.status_code == 400 and "nested too deeply" in error_of(response.get_body())


@pytest.mark.parametrize(
    ("request_line", "status", "allow", "words"),
    [
        # Before: 404 as text, and 501 as an HTML page.
        ("GET /api/replay", 405, "POST", "GET is not allowed on /api/replay; use POST"),
        ("PUT /api/replay", 405, "POST", "PUT is not allowed"),
        ("DELETE /api/status", 405, "GET", "DELETE is not allowed on /api/status; use GET"),
        ("BREW /api/status", 405, None, "method 'BREW' is not supported"),
        ("GET /api/nope", 404, None, "no route /api/nope; the routes are"),
        (
            "GET /elsewhere",
            404,
            None,
            "the routes are POST /api/replay, GET /api/status, GET /api/reconcile and GET /api/health",
        ),
    ],
)
def test_wrong_methods_and_routes_get_a_json_error(
    http_only: LocalServer, request_line: str, status: int, allow: str | None, words: str
) -> None:
    got, headers, body = raw_request(http_only, f"{request_line} HTTP/1.1\r\n\r\n".encode())
    assert got == status and headers["content-type"] == "application/json"
    assert words in error_of(body)
    assert headers.get("allow") == allow
    assert sent(http_only) == 0


@pytest.mark.parametrize(
    ("length", "body", "status", "words"),
    [
        # Before: the connection dropped.
        ("abc", b"{}", 400, "Content-Length must be a whole number of bytes, got 'abc'"),
        ("-5", b"{}", 400, "Content-Length must be a whole number"),
        (str(2 * 1024 * 1024), b"", 413, "above the limit"),
        ("50", b'{"date": "2026-10-01"}', 400, "body shorter than its Content-Length (22 of 50 bytes)"),
    ],
)
def test_a_bad_content_length_gets_a_json_error(
    http_only: LocalServer, length: str, body: bytes, status: int, words: str
) -> None:
    got, _headers, answer = raw_request(
        http_only, b"POST /api/replay HTTP/1.1\r\nContent-Length: %s\r\n\r\n%s" % (length.encode(), body)
    )
    assert got == status and words in error_of(answer)
    assert sent(http_only) == 0


@pytest.mark.parametrize(
    ("query", "words"),
    [
        # Before: an empty date returned every day, silently.
        ("date=", "date is empty"),
        ("date=20261120", "date must be YYYY-MM-DD"),
        ("date=2026-W47-5", "date must be YYYY-MM-DD"),
    ],
)
def test_status_refuses_an_empty_or_odd_date(http_only: LocalServer, query: str, words: str) -> None:
    got, _headers, body = raw_request(http_only, f"GET /api/status?{query} HTTP/1.1\r\n\r\n".encode())
    assert got == 400 and words in error_of(body)


def test_status_of_every_day_names_the_rules_in_force(http_only: LocalServer) -> None:
    got, _headers, body = raw_request(http_only, b"GET /api/status HTTP/1.1\r\n\r\n")
    assert got == 200 and json.loads(body)["rules_in_force"]["churn_min_rolling_users"] == 10


def test_a_replay_without_an_api_url_is_refused_and_queues_nothing(
    local_env: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Before: 202, then every fetch failed in the background.
    monkeypatch.delenv("USAGE_API_BASE_URL")
    pipe = LocalPipeline(Settings.from_env())
    try:
        response = pipe.host.http("POST", "replay", body={"date": "2026-10-01"})
        assert response.status_code == 503
        assert error_of(response.get_body()) == "USAGE_API_BASE_URL is not set; nothing was queued"
        assert pipe.services.bus.idle() and sum(pipe.services.bus.sent_count.values()) == 0
    finally:
        pipe.close()


# --- the folder is held only while serve works ----------------------------------------------------


def test_serve_lets_go_of_the_warehouse_between_requests(local_env: Path) -> None:
    # Before: serve held DuckDB for its life, so `report`, `status` and read-only queries failed.
    local_env.mkdir(parents=True)
    lock = FolderLock(local_env, "serve --port 0")
    lock.acquire()
    pipe = LocalPipeline(Settings.from_env())
    server = LocalServer(pipe, port=0, lock=lock).start()
    try:
        crm = GOLDEN.crm_files()[0]
        with server.working():  # what a request does before it queues anything
            pipe.services.blobs.put("crm-drop", crm.name, crm.read_bytes())
        accepted = requests.post(f"{server.base_url}/api/replay", json={"date": "2026-10-01"}, timeout=10)
        assert accepted.status_code == 202, accepted.text
        view = _wait_until_built(server.base_url, "2026-10-01")
        assert view["days"]["rows"] == 43
        while lock.held:  # the background host lets go once its queues are empty
            time.sleep(0.02)
        # Another process, as a user's second terminal is.
        report = subprocess.run(
            [sys.executable, "-m", "shared.cli", "report"],
            cwd=REPO,
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert report.returncode == 0 and report.stderr == "", report.stderr
        with duckdb.connect(str(local_env / "warehouse.duckdb"), read_only=True) as con:
            assert con.execute("SELECT COUNT(*) FROM analytics.company_daily_activity").fetchone() == (43,)
        # And it takes the folder again for the next request.
        again = requests.post(f"{server.base_url}/api/replay", json={"date": "2026-10-02"}, timeout=10)
        assert again.status_code == 202
        assert _wait_until_built(server.base_url, "2026-10-02")["days"]["status"] == "built"
    finally:
        server.stop()
        pipe.close()


def test_a_replay_while_another_command_holds_the_folder_is_a_503_naming_it(local_env: Path) -> None:
    local_env.mkdir(parents=True)
    pipe = LocalPipeline(Settings.from_env())
    server = LocalServer(pipe, port=0, lock=FolderLock(local_env, "serve")).start()
    other = FolderLock(local_env, "backfill --from 2026-10-01 --to 2026-10-10")
    other.acquire()
    try:
        refused = requests.post(f"{server.base_url}/api/replay", json={"date": "2026-10-01"}, timeout=10)
        assert refused.status_code == 503
        assert refused.json()["error"].startswith("`backfill --from 2026-10-01 --to 2026-10-10` (pid ")
        assert sum(pipe.services.bus.sent_count.values()) == 0
        assert requests.get(f"{server.base_url}/api/status", timeout=10).status_code == 200  # reads go on
    finally:
        other.release()
        server.stop()
        pipe.close()


def _wait_until_built(base_url: str, day: str) -> dict[str, Any]:
    """Poll status until the day is built (the test's own wait; the assertion is on the state)."""
    deadline = time.monotonic() + 60
    while True:
        view: dict[str, Any] = requests.get(f"{base_url}/api/status", params={"date": day}, timeout=10).json()
        if (view.get("days") or {}).get("status") == "built" or time.monotonic() > deadline:
            return view
        time.sleep(0.05)


# --- a fuzz of the routes ---------------------------------------------------------------------------

METHODS = st.sampled_from(["GET", "POST", "PUT", "DELETE", "PATCH", "OPTIONS", "BREW", "get", "P0ST"])
PATHS = st.one_of(
    st.sampled_from(
        ["/api/replay", "/api/status", "/api/", "/", "/api/replay/x", "/api/status?date=", "/%00"]
    ),
    st.builds(lambda q: "/api/status?" + q, st.text(alphabet="date=&%0123456789-W", max_size=30)),
    st.text(alphabet=st.characters(min_codepoint=33, max_codepoint=126), max_size=40).map(
        lambda t: "/api/" + t
    ),
)
JSON_VALUES = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=12),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=6), inner, max_size=4),
    max_leaves=12,
)
NEAR_REPLAYS = st.fixed_dictionaries(
    {},
    optional={
        "date": st.sampled_from(["2026-10-01", "20261001", "2999-01-01", "", "2026-02-30"]) | st.integers(),
        "from": st.sampled_from(["2026-10-01", "2026-09-01", "x"]),
        "to": st.sampled_from(["2026-10-03", "2025-01-01", "2026-10-01"]),
        "force": st.sampled_from([True, False, "yes", 1, None]),
        "dry_run": st.booleans(),
    },
)
BODIES = st.one_of(
    st.binary(max_size=200),
    JSON_VALUES.map(lambda v: json.dumps(v).encode()),
    NEAR_REPLAYS.map(lambda v: json.dumps(v).encode()),
    st.integers(1, 5000).map(lambda n: b"[" * n),
)
LENGTHS = st.one_of(
    st.just("exact"), st.just(None), st.sampled_from(["abc", "-1", "", "1e3", "99999999", "0"])
)


@settings(
    max_examples=150,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(method=METHODS, path=PATHS, body=BODIES, length=LENGTHS, extra=st.booleans())
def test_any_request_gets_an_answer_and_bad_input_a_4xx_with_nothing_queued(
    http_only: LocalServer, method: str, path: str, body: bytes, length: str | None, extra: bool
) -> None:
    headers = [f"{method} {path} HTTP/1.1", "Host: localhost"]
    if length == "exact":
        headers.append(f"Content-Length: {len(body)}")
    elif length is not None:
        headers.append(f"Content-Length: {length}")
    if extra:
        headers.append("Content-Type: text/plain; charset=latin-1")
    before = sent(http_only)
    status, response_headers, answer = raw_request(
        http_only, ("\r\n".join(headers) + "\r\n\r\n").encode() + body
    )
    assert status < 500, (method, path, length, body[:80], answer[:200])
    if status == 202:
        accepted = json.loads(answer)
        assert sent(http_only) - before == len(accepted["dates"])  # one fetch request per day
        return
    assert sent(http_only) == before, "refused, yet something was queued"
    if status >= 400 and method.upper() != "HEAD":
        assert response_headers["content-type"] == "application/json"
        error_of(answer)
