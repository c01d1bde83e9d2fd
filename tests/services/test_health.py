"""The health service over fakes: every check failing in turn gives 503 and a detail that says
what to fix; a hanging piece is reported within its own timeout; no secret ever comes out
(issue 20, contract section 8)."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any

import pytest

from shared.config import Settings
from shared.domain import names
from shared.domain.alerts import Alert
from shared.domain.health import CHECKS, MAX_DETAIL
from shared.domain.usage_page import Page
from shared.ports import (
    ApiAsksToWait,
    ApiUnreachable,
    BlobNotFound,
    LedgerEntry,
    SchemaVersionMismatch,
    Services,
    TransientApiError,
    UsageApiError,
    WarehouseProbeFailed,
    WarehouseUnavailable,
)
from shared.services import health as health_service
from shared.services.health import check_health

NOW = datetime(2026, 11, 21, 3, 0, tzinfo=UTC)


class Boom(RuntimeError):
    pass


@dataclass
class FakeBlobs:
    blobs: dict[tuple[str, str], bytes] = field(default_factory=dict)
    fail: dict[str, Exception] = field(default_factory=dict)
    written: list[tuple[str, str]] = field(default_factory=list)
    corrupt: bool = False

    def _maybe(self, step: str) -> None:
        if step in self.fail:
            raise self.fail[step]

    def put(self, container: str, name: str, data: Any, **_: Any) -> None:
        self._maybe("put")
        self.written.append((container, name))
        self.blobs[(container, name)] = data

    def get(self, container: str, name: str) -> bytes:
        self._maybe("get")
        return b"other" if self.corrupt else self.blobs[(container, name)]

    def delete(self, container: str, name: str) -> None:
        self._maybe("delete")
        if self.blobs.pop((container, name), None) is None:
            raise BlobNotFound(name)


@dataclass
class FakeLedger:
    entries: dict[tuple[str, str], Mapping[str, Any]] = field(default_factory=dict)
    fail: Exception | None = None
    lose_writes: bool = False

    def get(self, partition: str, key: str) -> LedgerEntry | None:
        data = self.entries.get((partition, key))
        return None if data is None else LedgerEntry(partition, key, data, "e")

    def put(
        self, partition: str, key: str, data: Mapping[str, Any], *, etag: str | None = None
    ) -> LedgerEntry:
        if self.fail:
            raise self.fail
        if not self.lose_writes:
            self.entries[(partition, key)] = data
        return LedgerEntry(partition, key, data, "e")


@dataclass
class FakeBus:
    waiting: set[str] = field(default_factory=set)
    fail_on: str = ""
    peeked: list[str] = field(default_factory=list)
    sent: list[str] = field(default_factory=list)

    def send(self, queue: str, messages: Any) -> None:
        self.sent.append(queue)

    def peek(self, queue: str) -> int:
        self.peeked.append(queue)
        if queue == self.fail_on:
            raise Boom("Unauthorized access. 'Listen' claim(s) are required to perform this operation.")
        return int(queue in self.waiting)

    def close(self) -> None:
        pass


@dataclass
class FakeWarehouse:
    dialect: str = "duckdb"
    fail: Exception | None = None
    hang_s: float = 0.0
    released: threading.Event = field(default_factory=threading.Event)  # ends a hang early

    def probe(self) -> str:
        if self.hang_s:
            self.released.wait(self.hang_s)
        if self.fail:
            raise self.fail
        return "duckdb: analytics.company_daily_activity readable, 0 rows"

    def close(self) -> None:
        pass


@dataclass
class FakeApi:
    page_size: int
    fail: Exception | None = None
    attempts: int = 0
    retry_s: float = 0.0
    retry_budget_s: float = float("inf")
    asked: list[tuple[date, int]] = field(default_factory=list)

    def fetch_page(self, day: date, number: int) -> Page:
        self.asked.append((day, number))
        if self.fail:
            raise self.fail
        return Page(number, b"{}", [{"company_id": "c-1"}], has_next_page=True, total_pages=40)


@dataclass
class FakeSink:
    target: str = "file alerts.jsonl"
    fail: Exception | None = None
    delivered: list[Alert] = field(default_factory=list)

    def deliver(self, alert: Alert) -> None:
        if self.fail:
            raise self.fail
        self.delivered.append(alert)


@dataclass
class World:
    settings: Settings
    blobs: FakeBlobs = field(default_factory=FakeBlobs)
    ledger: FakeLedger = field(default_factory=FakeLedger)
    bus: FakeBus = field(default_factory=FakeBus)
    warehouse: FakeWarehouse = field(default_factory=FakeWarehouse)
    api_fail: Exception | None = None
    sink: FakeSink = field(default_factory=FakeSink)
    api_settings: list[Settings] = field(default_factory=list)
    apis: list[FakeApi] = field(default_factory=list)

    def services(self) -> Services:
        def usage_api(settings: Settings) -> Any:
            self.api_settings.append(settings)
            self.apis.append(FakeApi(settings.usage_api_page_size, self.api_fail))
            return self.apis[-1]

        return Services(
            settings=self.settings,
            blobs=self.blobs,  # type: ignore[arg-type]
            ledger=self.ledger,
            bus=self.bus,
            warehouse=self.warehouse,  # type: ignore[arg-type]
            usage_api=usage_api,
            alert_sink=lambda s: self.sink,
            clock=lambda: NOW,
        )

    def check(self, **options: Any) -> Any:
        options.setdefault("environ", {})
        return check_health(self.services, **options)


@pytest.fixture
def world(tmp_path: Path) -> World:
    return World(
        Settings(
            usage_api_base_url="https://api.example.com", usage_api_key="k-1234", local_data_dir=tmp_path
        )
    )


def by_name(result: Any) -> dict[str, Any]:
    return {c.name: c for c in result.checks}


def test_everything_passing(world: World) -> None:
    world.bus.waiting = {names.ALERTS_QUEUE}
    result = world.check()
    assert result.http_status == 200 and result.status == "ok"
    assert [c.name for c in result.checks] == list(CHECKS)
    checks = by_name(result)
    assert all(c.ok and isinstance(c.ms, int) and c.ms >= 0 for c in result.checks)
    # The probe blob went to the health container, under health/, and is gone again.
    [(container, name)] = world.blobs.written
    assert container == names.HEALTH_CONTAINER and name.startswith("health/") and not world.blobs.blobs
    assert set(world.ledger.entries) == {(names.HEALTH, "probe")}
    assert world.bus.peeked == list(names.QUEUES) and world.bus.sent == []
    assert "messages waiting on alerts" in checks["bus"].detail
    # One request: page 1 of yesterday, one record a page, one attempt.
    [api] = world.apis
    assert api.asked == [(date(2026, 11, 20), 1)]
    [probe] = world.api_settings
    assert (probe.usage_api_page_size, probe.usage_api_max_attempts) == (1, 1)
    assert "accepted the key" in checks["usage_api"].detail
    assert world.sink.delivered == []  # no test alert unless asked
    assert "send_test_alert=true" in checks["alert_sink"].detail


def test_a_test_alert_only_when_asked(world: World) -> None:
    result = world.check(send_test_alert=True)
    assert result.ok and "test alert sent to file alerts.jsonl" in by_name(result)["alert_sink"].detail
    [alert] = world.sink.delivered
    assert alert.kind == "health_test_alert" and alert.severity == "warning"


FAILURES: dict[str, tuple[Callable[[World], None], str, str]] = {
    # case: (break the world, the failing check, words its detail must hold)
    "blob-write": (
        lambda w: w.blobs.fail.update(put=PermissionError(13, "Permission denied")),
        "blob_store",
        "cannot write the probe blob health/probe-",
    ),
    "blob-read-back-differs": (lambda w: setattr(w.blobs, "corrupt", True), "blob_store", "different bytes"),
    "blob-read": (lambda w: w.blobs.fail.update(get=Boom("timeout")), "blob_store", "cannot read back"),
    "blob-delete": (
        lambda w: w.blobs.fail.update(delete=Boom("403 This request is not authorized")),
        "blob_store",
        "cannot delete",
    ),
    "ledger-write": (
        lambda w: setattr(w.ledger, "fail", Boom("database is locked")),
        "ledger",
        "cannot write the probe entry",
    ),
    "ledger-lost": (lambda w: setattr(w.ledger, "lose_writes", True), "ledger", "cannot be read back"),
    "bus": (
        lambda w: setattr(w.bus, "fail_on", names.TRANSFORM_QUEUE),
        "bus",
        "queue transform cannot be peeked",
    ),
    "warehouse-unreadable": (
        lambda w: setattr(w.warehouse, "fail", Boom("not a valid DuckDB database file")),
        "warehouse",
        "cannot be read (Boom: not a valid DuckDB database file); move it aside",
    ),
    "warehouse-azure-sql": (
        lambda w: (
            setattr(w.warehouse, "dialect", "mssql"),
            setattr(w.warehouse, "fail", Boom("Login failed")),
        ),
        "warehouse",
        "ODBC Driver 18",
    ),
    "warehouse-held": (
        lambda w: setattr(
            w.warehouse, "fail", WarehouseUnavailable("w.duckdb is open in another program (PID 7)")
        ),
        "warehouse",
        "open in another program (PID 7)",
    ),
    "api-key-refused": (
        lambda w: setattr(
            w, "api_fail", UsageApiError("usage API x answered HTTP 401 Unauthorized for date d page 1")
        ),
        "usage_api",
        "the API refused the key: check USAGE_API_KEY",
    ),
    "api-wrong-url": (
        lambda w: setattr(
            w, "api_fail", UsageApiError("usage API x answered HTTP 404 Not Found for date d page 1")
        ),
        "usage_api",
        "without /v2/usage",
    ),
    "api-down": (
        lambda w: setattr(
            w, "api_fail", ApiUnreachable("usage API x cannot be reached: connection refused", page=1)
        ),
        "usage_api",
        "connection refused; check USAGE_API_BASE_URL and that the API is up",
    ),
    "api-failing": (
        lambda w: setattr(w, "api_fail", TransientApiError("page 1: HTTP 503 Service Unavailable")),
        "usage_api",
        "answered but failed",
    ),
    "api-asks-to-wait": (
        lambda w: setattr(
            w,
            "api_fail",
            ApiAsksToWait("usage API x answered HTTP 429", wait_s=5400, page=1, retry_after="5400"),
        ),
        "usage_api",
        "asks to wait 1 h 30 min (Retry-After: 5400)",
    ),
}


@pytest.mark.parametrize("case", list(FAILURES))
def test_each_check_failing_in_turn_gives_503_and_its_fix(world: World, case: str) -> None:
    breaks, name, words = FAILURES[case]
    breaks(world)
    result = world.check()
    assert (result.http_status, result.status, result.exit_code) == (503, "failing", 1)
    [failing] = result.failing()
    assert failing.name == name and words in failing.detail, failing.detail
    assert "\n" not in failing.detail and len(failing.detail) <= MAX_DETAIL
    assert not world.blobs.blobs or case == "blob-delete"  # no probe left behind if it can be helped


def test_no_api_url_or_key_is_said_without_asking(world: World, tmp_path: Path) -> None:
    world.settings = Settings(local_data_dir=tmp_path)
    [failing] = world.check().failing()
    assert failing.name == "usage_api" and "USAGE_API_BASE_URL is not set" in failing.detail
    assert world.apis == []
    world.settings = Settings(usage_api_base_url="https://api.example.com", local_data_dir=tmp_path)
    [failing] = world.check().failing()
    assert "USAGE_API_KEY is not set" in failing.detail


def test_a_failing_test_alert(world: World) -> None:
    world.sink.fail = RuntimeError("alert webhook failed after 4 attempts: ConnectionError")
    assert world.check().ok  # nothing is sent unless asked
    [failing] = world.check(send_test_alert=True).failing()
    assert failing.name == "alert_sink" and "the test alert to file alerts.jsonl failed" in failing.detail


def test_a_bad_setting_fails_settings_and_only_the_checks_it_concerns(world: World) -> None:
    """Issue 20 review: a bad setting used to leave every other check "not checked"."""
    environ = {"USAGE_API_TIMEOUT_S": "abc", "CHURN_MIN_ROLLING_USERS": "many"}
    result = world.check(environ=environ)
    assert result.http_status == 503
    checks = by_name(result)
    assert "USAGE_API_TIMEOUT_S" in checks["settings"].detail
    assert "CHURN_MIN_ROLLING_USERS" in checks["settings"].detail  # every bad one, not the first
    assert checks["usage_api"].detail == "not checked: USAGE_API_TIMEOUT_S not valid (see the settings check)"
    assert world.apis == []
    assert all(checks[n].ok for n in ("blob_store", "ledger", "bus", "warehouse", "alert_sink"))


def test_a_bad_fetch_schedule_fails_settings(world: World) -> None:
    """Issue 20 review: a schedule the host cannot read disables the daily fetch silently."""
    for bad in ("0 30 2 * *", "0 30 25 * * *", "daily", ""):
        checks = by_name(world.check(environ={"FETCH_SCHEDULE": bad}))
        assert not checks["settings"].ok and "FETCH_SCHEDULE" in checks["settings"].detail, bad
        assert "the daily fetch never runs" in checks["settings"].detail
        assert all(checks[n].ok for n in CHECKS[1:])
    assert world.check(environ={"FETCH_SCHEDULE": "0 30 2 * * *"}).ok


def test_services_that_cannot_be_built_fail_settings(world: World) -> None:
    def load() -> Services:
        raise ValueError("Connection string is either blank or malformed.")

    [settings, *_] = check_health(load, environ={}).checks
    assert (
        not settings.ok and "cannot build its services" in settings.detail and "malformed" in settings.detail
    )


KV = "@Microsoft.KeyVault(SecretUri=https://kv.vault.azure.net/secrets/{}/)"


def test_an_unresolved_api_key_fails_only_usage_api_and_says_how_to_set_it(world: World) -> None:
    """Issue 20 review: a first `azd up` without the key failed `settings` and nothing else was checked."""
    world.settings = Settings(
        usage_api_base_url="https://api.example.com", local_data_dir=world.settings.local_data_dir
    )
    [failing] = world.check(environ={"USAGE_API_KEY": KV.format("usage-api-key")}).failing()
    assert failing.name == "usage_api"
    assert failing.detail.startswith("USAGE_API_KEY is an unresolved Key Vault reference")
    assert "az keyvault secret set" in failing.detail and "az functionapp restart" in failing.detail
    assert not failing.detail.endswith("...")
    assert world.apis == []


def test_an_unresolved_webhook_is_a_note_under_alert_sink(world: World) -> None:
    result = world.check(environ={"ALERT_WEBHOOK_URL": KV.format("alert-webhook-url")})
    assert result.ok
    assert (
        "; note: ALERT_WEBHOOK_URL is an unresolved Key Vault reference"
        in by_name(result)["alert_sink"].detail
    )


def test_another_unresolved_secret_fails_settings_and_says_to_restart(world: World) -> None:
    checks = by_name(world.check(environ={"SQL_CONNECTION_STRING": KV.format("sql")}))
    assert not checks["settings"].ok and "SQL_CONNECTION_STRING" in checks["settings"].detail
    assert "az functionapp restart" in checks["settings"].detail


SQL_FIX_LINE = (
    "Azure SQL: no SQL Server ODBC driver found (need 'ODBC Driver 18 for SQL Server' or 17); installed: none"
)


@pytest.mark.parametrize(
    "error",
    [
        WarehouseProbeFailed(SQL_FIX_LINE),
        WarehouseProbeFailed(
            "Azure SQL: the server's firewall refuses this address (allow Azure services) (40615)"
        ),
        SchemaVersionMismatch(
            "the Azure SQL database has schema version 0, this app needs schema version 1: apply the schema"
            " with `azd provision` (or `python -m shared.cli init-db` as the database's administrator)"
        ),
    ],
)
def test_a_warehouse_failure_is_the_probes_own_line(world: World, error: Exception) -> None:
    """Issue 20 review: every Azure SQL failure read the same generic fix, the cause cut off."""
    world.warehouse.dialect = "mssql"
    world.warehouse.fail = error
    [failing] = world.check().failing()
    assert failing.name == "warehouse" and failing.detail == str(error)


def test_a_local_schema_mismatch_says_init_db_not_move_it_aside(world: World) -> None:
    line = (
        "the local warehouse w.duckdb has schema version 2, this app needs schema version 1: the schema is"
        " newer than this app: run (or deploy) the newer version of the app that applied it"
    )
    world.warehouse.fail = SchemaVersionMismatch(line)
    [failing] = world.check().failing()
    assert failing.detail == line and "move it aside" not in failing.detail


def test_an_unknown_azure_sql_error_gives_its_cause_before_the_advice(world: World) -> None:
    world.warehouse.dialect = "mssql"
    world.warehouse.fail = Boom("something nobody foresaw")
    [failing] = world.check().failing()
    assert failing.detail.startswith("Boom: something nobody foresaw; check SQL_SERVER")


def test_the_queues_are_peeked_at_once(world: World) -> None:
    """Issue 20 review: four peeks one after another, each allowed 10 s, in a 10 s check."""
    started = threading.Barrier(len(names.QUEUES), timeout=5)
    peek = world.bus.peek

    def slow_peek(queue: str) -> int:
        started.wait()  # every peek has begun before any returns: they run at once
        return peek(queue)

    world.bus.peek = slow_peek  # type: ignore[method-assign]
    assert by_name(world.check())["bus"].ok


def test_an_api_that_cannot_be_reached_names_the_url_once(world: World) -> None:
    world.api_fail = ApiUnreachable(
        "usage API x cannot be reached: connection refused; check USAGE_API_BASE_URL", page=1
    )
    [failing] = world.check().failing()
    assert failing.detail.count("check USAGE_API_BASE_URL") == 1


def test_a_hanging_piece_is_reported_within_its_timeout(world: World) -> None:
    # A hang far beyond the bound: a busy machine's own delays never come near either (a 3 s
    # hang and a 2 s bound left 1.7 s to the check's own threads).
    world.warehouse.hang_s = 120.0
    started = time.monotonic()
    try:
        result = world.check(timeouts={**health_service.TIMEOUTS_S, "warehouse": 0.3})
        assert time.monotonic() - started < 30  # not the 120 s the warehouse takes
    finally:
        world.warehouse.released.set()
    [failing] = result.failing()
    assert failing.name == "warehouse" and failing.detail.startswith("no answer within 0.3 s")
    assert failing.ms == 300
    assert by_name(result)["usage_api"].ok  # the others were not held back


def test_threads_left_hanging_are_bounded(world: World, monkeypatch: pytest.MonkeyPatch) -> None:
    """A piece that hangs on every request cannot pile up threads: past the bound, checks are
    not started and say why."""
    monkeypatch.setattr(health_service, "MAX_RUNNING", 8)
    monkeypatch.setattr(health_service, "_slots", threading.BoundedSemaphore(8))
    release = threading.Event()
    # Hung until the test ends: a 10 s hang could end while a busy machine made the 10 requests.
    world.warehouse.probe = lambda: (release.wait(120), "late")[1]  # type: ignore[method-assign]
    try:
        fast = {**health_service.TIMEOUTS_S, "warehouse": 0.1}
        results = [world.check(timeouts=fast) for _ in range(10)]
        hung = [t for t in threading.enumerate() if t.name == "health-warehouse"]
        # One per request that timed out, and no more (a request whose other checks held the
        # last slots may have had none left for the warehouse).
        assert 6 <= len(hung) <= 8
        assert [c.name for c in results[0].failing()] == ["warehouse"]
        busy = [
            c
            for c in results[-1].failing()
            if c.detail.startswith("not checked: all 8 check threads are busy")
        ]
        assert busy and results[-1].http_status == 503
    finally:
        release.set()


# --- never a secret ---------------------------------------------------------------------------

SECRETS = {
    "usage_api_key": "sk-planted-api-key-0042",
    "alert_webhook_url": "https://hooks.example.com/services/T9/B9/webhook-secret-path?sig=webhook-secret-query",
    "sql_connection_string": "Driver={ODBC Driver 18 for SQL Server};Server=tcp:s;Uid=app;Pwd=sql-secret-password;",
    "data_storage_connection": "DefaultEndpointsProtocol=https;AccountName=a;AccountKey=storage-secret-key==;",
    "service_bus_connection": "Endpoint=sb://ns/;SharedAccessKeyName=app;SharedAccessKey=bus-secret-key=",
    "usage_api_base_url": "https://apiuser:url-userinfo-secret@api.example.com",
}
PLANTED = [
    "sk-planted-api-key-0042",
    "webhook-secret-path",
    "webhook-secret-query",
    "/services/T9/B9",
    "sql-secret-password",
    "storage-secret-key",
    "bus-secret-key",
    "url-userinfo-secret",
]


@pytest.fixture
def leaky(tmp_path: Path) -> World:
    """Settings full of secrets, and pieces whose errors repeat them (the worst an SDK could do)."""
    world = World(Settings(local_data_dir=tmp_path, **SECRETS))  # type: ignore[arg-type]
    leak = " ".join(
        [
            SECRETS["usage_api_key"],
            SECRETS["alert_webhook_url"],
            "POST /services/T9/B9/webhook-secret-path?sig=webhook-secret-query",
            SECRETS["sql_connection_string"],
            SECRETS["data_storage_connection"],
            SECRETS["service_bus_connection"],
            SECRETS["usage_api_base_url"],
            "Authorization: Bearer sk-planted-api-key-0042",
        ]
    )
    world.blobs.fail["put"] = Boom(leak)
    world.ledger.fail = Boom(leak)
    world.bus.fail_on = names.FETCH_QUEUE
    world.bus.peek = lambda queue: (_ for _ in ()).throw(Boom(leak))  # type: ignore[method-assign]
    world.warehouse.fail = Boom(leak)
    world.api_fail = UsageApiError(f"usage API {SECRETS['usage_api_base_url']} answered HTTP 401 {leak}")
    world.sink.fail = Boom(leak)
    return world


def test_no_secret_in_the_json_of_failing_checks(leaky: World) -> None:
    result = leaky.check(send_test_alert=True)
    assert {c.name for c in result.failing()} == set(CHECKS) - {"settings"}
    text = json.dumps(result.to_json())
    for secret in PLANTED:
        assert secret not in text, f"{secret!r} leaked: {text}"


def test_no_secret_in_the_json_of_passing_checks(tmp_path: Path) -> None:
    world = World(Settings(local_data_dir=tmp_path, **SECRETS))  # type: ignore[arg-type]
    world.sink.target = "webhook https://hooks.example.com"
    result = world.check(send_test_alert=True)
    assert result.ok, result.failing()
    text = json.dumps(result.to_json())
    for secret in PLANTED:
        assert secret not in text, f"{secret!r} leaked: {text}"
    assert "https://***@api.example.com accepted the key" in text


def test_no_secret_when_the_settings_do_not_load() -> None:
    environ = {"USAGE_API_KEY": "sk-planted-api-key-0042", "ALERT_WEBHOOK_URL": SECRETS["alert_webhook_url"]}

    def load() -> Services:
        raise ValueError(f"bad: {environ['USAGE_API_KEY']} {SECRETS['alert_webhook_url']}")

    text = json.dumps(check_health(load, environ=environ).to_json())
    for secret in PLANTED[:4]:
        assert secret not in text


@pytest.fixture(autouse=True)
def _no_threads_left_behind() -> Iterator[None]:
    yield
    deadline = time.monotonic() + 5
    while any(t.name.startswith("health-") for t in threading.enumerate()) and time.monotonic() < deadline:
        time.sleep(0.05)
