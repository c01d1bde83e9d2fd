"""Fixtures every layer's tests share: the golden case, an API simulator, local services and a
local pipeline in a temp folder, local HTTP servers and child processes.

Only fixtures live here (pytest loads this file itself); what tests import, constants and
helpers, is in tests/support.py.
"""

from __future__ import annotations

import signal
import socket
import threading
from collections.abc import Callable, Iterator, Mapping
from datetime import date
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
from hypothesis import settings as hypothesis_settings

from shared.bootstrap import build_local
from shared.config import Settings
from shared.local.simulator import RecordSource, UsageApiSimulator
from shared.ports import Services
from tests.processes import Children

# A suite started in the background of a shell without job control (`make test &` in a script)
# inherits SIGINT ignored, and every child it starts would too: the Ctrl-C tests would then
# test nothing. The suite runs as a terminal would start it.
if signal.getsignal(signal.SIGINT) is signal.SIG_IGN:
    signal.signal(signal.SIGINT, signal.default_int_handler)
from tests.support import API_KEY, DAY, GOLDEN, GoldenCase, make_records, utc_day_that_lasts

# Hypothesis fails an example that takes over 200 ms (its default deadline), and calls the test
# flaky when the rerun is quicker: on a busy machine that measures the machine, not the code.
hypothesis_settings.register_profile("suite", deadline=None)
hypothesis_settings.load_profile("suite")


@pytest.fixture
def golden() -> GoldenCase:
    return GOLDEN


@pytest.fixture
def utc_today() -> date:
    """Today's UTC date for a test comparing it with what the code reads from the clock: it is
    still today when the test ends (started just before midnight, the test waits for it)."""
    return utc_day_that_lasts()


# --- the Product Usage API ----------------------------------------------------------------


@pytest.fixture
def start_api() -> Iterator[Callable[..., UsageApiSimulator]]:
    """Start a simulator; every one started is stopped at the end. `records` is a dict by ISO
    date, a number of records on DAY (`make_records`), or a record source of its own."""
    started: list[UsageApiSimulator] = []

    def start(
        records: Mapping[str, list[dict[str, Any]]] | int | RecordSource, **kwargs: Any
    ) -> UsageApiSimulator:
        kwargs.setdefault("api_key", API_KEY)
        source: RecordSource
        if isinstance(records, int):
            source = lambda d, n=records: make_records(n) if d == DAY else []  # noqa: E731
        elif isinstance(records, Mapping):
            source = lambda d, by_day=records: list(by_day.get(d.isoformat(), []))  # noqa: E731
        else:
            source = records
        sim = UsageApiSimulator(source, **kwargs).start()
        started.append(sim)
        return sim

    yield start
    for sim in started:
        sim.stop()


@pytest.fixture
def api_records() -> dict[str, list[dict[str, Any]]]:
    """What the `api` simulator serves, by ISO date: the golden world; tests may change it."""
    return GOLDEN.records()


@pytest.fixture
def api(
    api_records: dict[str, list[dict[str, Any]]], start_api: Callable[..., UsageApiSimulator]
) -> UsageApiSimulator:
    return start_api(lambda d: list(api_records.get(d.isoformat(), [])))


# --- services and the local pipeline ------------------------------------------------------


@pytest.fixture
def make_services(tmp_path: Path, request: pytest.FixtureRequest) -> Iterator[Callable[..., Services]]:
    """Local services (folder blobs, SQLite ledger, in-process bus, DuckDB) in a temp folder,
    pointed at a simulator. A test module sets `SERVICE_SETTINGS` (a dict of Settings fields)
    for its own defaults; a call's overrides win over both."""
    built: list[Services] = []
    module_settings = getattr(request.module, "SERVICE_SETTINGS", {})

    def make(api: UsageApiSimulator, **overrides: Any) -> Services:
        fields: dict[str, Any] = {
            "usage_api_base_url": api.base_url,
            "usage_api_key": API_KEY,
            "usage_api_page_size": 10,
            "usage_api_timeout_s": 2.0,
            "usage_api_max_attempts": 3,
            "usage_api_backoff_base_s": 0.001,
            "usage_api_backoff_max_s": 0.005,
            "local_data_dir": tmp_path / f"local-{len(built)}",
            **module_settings,
            **overrides,
        }
        services = build_local(Settings(**fields))
        built.append(services)
        return services

    yield make
    for services in built:
        services.warehouse.close()


@pytest.fixture
def local_env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, api: UsageApiSimulator) -> Path:
    """Settings for a local run against the `api` simulator; returns LOCAL_DATA_DIR."""
    data_dir = tmp_path / "local"
    for name, value in {
        "USAGE_API_BASE_URL": api.base_url,
        "USAGE_API_KEY": API_KEY,
        "USAGE_API_PAGE_SIZE": "10",
        "USAGE_API_BACKOFF_BASE_S": "0.01",
        "USAGE_API_BACKOFF_MAX_S": "0.05",
        "USAGE_API_TIMEOUT_S": "5",
        "LOCAL_DATA_DIR": str(data_dir),
    }.items():
        monkeypatch.setenv(name, value)
    monkeypatch.delenv("ALERT_WEBHOOK_URL", raising=False)
    return data_dir


@pytest.fixture
def pipeline(local_env: Path) -> Iterator[Any]:
    """The local host on the embedded adapters, running function_app's handlers, against `api`."""
    from shared.local.pipeline import LocalPipeline

    pipe = LocalPipeline(Settings.from_env())
    yield pipe
    pipe.close()


@pytest.fixture
def cli(local_env: Path, capsys: pytest.CaptureFixture[str]) -> Callable[..., tuple[int, str, str]]:
    """Run `python -m shared.cli ...` in-process; returns (exit status, stdout, stderr)."""
    from shared.local.cli import main

    def run(*args: str) -> tuple[int, str, str]:
        code = main(list(args))
        out, err = capsys.readouterr()
        return code, out, err

    return run


@pytest.fixture
def serve_http() -> Iterator[Callable[[type[BaseHTTPRequestHandler]], str]]:
    """Start a local HTTP server on `handler` with `serve_http(handler)`; returns its
    "127.0.0.1:<port>". Every one started is shut down at teardown."""
    servers: list[ThreadingHTTPServer] = []

    def start(handler: type[BaseHTTPRequestHandler]) -> str:
        server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
        threading.Thread(target=server.serve_forever, daemon=True).start()
        servers.append(server)
        return f"127.0.0.1:{server.server_address[1]}"

    yield start
    for server in servers:
        server.shutdown()
        server.server_close()


@pytest.fixture
def refused_port() -> Iterator[int]:
    """A port of 127.0.0.1 that refuses connections for the whole test: bound, never listening.
    A port found free and given back could be taken by another process before the test connects."""
    with socket.socket() as held:
        held.bind(("127.0.0.1", 0))
        yield int(held.getsockname()[1])


@pytest.fixture
def children() -> Iterator[Children]:
    """Start processes with `children.start([...])`; any still running at teardown is SIGKILLed."""
    started = Children()
    yield started
    started.kill_all()
