"""The Azure SQL and Service Bus adapters against fakes of pyodbc and the Service Bus client.

Neither service runs here; these tests pin what the adapters send them. The behavioural SQL
suite (tests/adapters/test_warehouse.py) runs against a real SQL Server when one is given.
"""

from __future__ import annotations

import json
import struct
import sys
import types
from datetime import UTC, date, datetime
from typing import Any

import pytest

from shared.adapters import warehouse_mssql
from shared.adapters.bus_servicebus import ServiceBusBus
from shared.adapters.warehouse_mssql import (
    MssqlWarehouse,
    access_token_struct,
    is_transient,
    pick_driver,
    sql_file,
)
from shared.adapters.warehouse_sql import SCHEMA_VERSIONS
from shared.config import Settings
from shared.domain.errors import PermanentError
from shared.ports import BuildParams, Lineage, OutgoingMessage, SchemaVersionMismatch

SCHEMA_VERSION = SCHEMA_VERSIONS["mssql"]  # the Azure SQL schema's


class OdbcError(Exception):
    """Shaped like pyodbc.Error: args are (sqlstate, message)."""


class FakeCursor:
    def __init__(self, connection: FakeConnection) -> None:
        self.connection = connection
        self.description: list[tuple] | None = None
        self._rows: list[tuple] = []
        self.fast_executemany = False

    def execute(self, sql: str, params: list[Any] | None = None) -> FakeCursor:
        self.connection.log.append(("execute", sql, params))
        if self.connection.fail_with is not None:
            error, self.connection.fail_with = self.connection.fail_with, None
            raise error
        answer = self.connection.answers.get(sql, self.connection.answers.get(sql.split("\n", 1)[0]))
        self.description, self._rows = (([("c",)] * len(answer[0])), answer) if answer else (None, [])
        return self

    def executemany(self, sql: str, rows: list[Any]) -> None:
        self.connection.log.append(("executemany", sql, len(rows), self.fast_executemany))

    def setinputsizes(self, sizes: list[tuple]) -> None:
        self.connection.log.append(("setinputsizes", sizes))

    def fetchall(self) -> list[tuple]:
        return self._rows

    def nextset(self) -> bool:
        return False

    def close(self) -> None:
        pass


class FakeConnection:
    def __init__(self, fail_with: Exception | None = None) -> None:
        self.log: list[tuple] = []
        self.fail_with = fail_with
        self.answers: dict[str, list[tuple]] = {}
        self.commits = self.rollbacks = 0
        self.closed = False

    def cursor(self) -> FakeCursor:
        return FakeCursor(self)

    def commit(self) -> None:
        self.commits += 1

    def rollback(self) -> None:
        self.rollbacks += 1

    def close(self) -> None:
        self.closed = True


def warehouse(*connections: FakeConnection, chunk_size: int = 3) -> tuple[MssqlWarehouse, list[float]]:
    pending = list(connections)
    sleeps: list[float] = []
    store = MssqlWarehouse(lambda: pending.pop(0), chunk_size=chunk_size, sleep=sleeps.append)
    return store, sleeps


def test_driver_18_is_preferred_then_17() -> None:
    assert (
        pick_driver(["ODBC Driver 17 for SQL Server", "ODBC Driver 18 for SQL Server"])
        == "ODBC Driver 18 for SQL Server"
    )
    assert pick_driver(["SQLite3", "ODBC Driver 17 for SQL Server"]) == "ODBC Driver 17 for SQL Server"
    with pytest.raises(RuntimeError, match="installed: SQLite3"):
        pick_driver(["SQLite3"])


def test_access_token_is_length_prefixed_utf16() -> None:
    packed = access_token_struct("abc")
    assert packed == struct.pack("<I", 6) + "abc".encode("utf-16-le")


@pytest.mark.parametrize(
    ("error", "transient"),
    [
        (
            OdbcError(
                "42000", "[Microsoft][ODBC Driver 18] Database 'x' is not currently available. (40613)"
            ),
            True,
        ),
        (OdbcError("40001", "Transaction was deadlocked ... victim (1205)"), True),
        (OdbcError("08S01", "Communication link failure"), True),
        (OdbcError("42000", "The service is currently busy. (40501)"), True),
        (OdbcError("23000", "Violation of PRIMARY KEY constraint (2627)"), False),
        (OdbcError("42S02", "Invalid object name 'stg.x'. (208)"), False),
    ],
)
def test_transient_errors_are_recognised(error: Exception, transient: bool) -> None:
    assert is_transient(error) is transient


def test_parameters_are_bound_in_declare_order_by_name() -> None:
    text, names = sql_file("stage_usage_day")
    assert names and text.count("?") == len(names)
    connection = FakeConnection()
    store, _ = warehouse(connection)
    store._schema_ready = True
    store.replace_usage_day(
        date(2026, 10, 1),
        [("a", 1, 2)],
        Lineage("run-1", "m.json", datetime(2026, 10, 2, tzinfo=UTC)),
        checksum="sum",
        quarantined=3,
        version="v1",
    )
    executed = [entry for entry in connection.log if entry[0] == "execute" and entry[1] == text]
    assert len(executed) == 1
    bound = dict(zip(names, executed[0][2], strict=True))
    assert bound["activity_date"] == date(2026, 10, 1) and bound["quarantined_count"] == 3
    assert bound["run_id"] == "run-1" and bound["loaded_at"] == datetime(2026, 10, 2)  # naive UTC
    assert connection.commits == 1


def test_bulk_loads_use_fast_executemany_in_bounded_chunks() -> None:
    connection = FakeConnection()
    store, _ = warehouse(connection, chunk_size=3)
    store._schema_ready = True
    rows = [(f"c{i}", i, i) for i in range(7)]
    store.replace_usage_day(
        date(2026, 10, 1),
        rows,
        Lineage("r", "m", datetime.now(UTC)),
        checksum="s",
        quarantined=0,
        version="v",
    )
    loads = [entry for entry in connection.log if entry[0] == "executemany"]
    assert [(n, fast) for _, _, n, fast in loads] == [(3, True), (3, True), (1, True)]
    assert all("#incoming_usage" in sql for _, sql, *_ in loads)
    assert ("setinputsizes", [(-9, 400, 0), (4, 0, 0), (4, 0, 0)]) in connection.log


def test_a_transient_error_retries_the_transaction_on_a_fresh_connection() -> None:
    broken = FakeConnection(fail_with=OdbcError("40001", "deadlock victim (1205)"))
    healthy = FakeConnection()
    store, sleeps = warehouse(broken, healthy)
    store._schema_ready = True
    result = store.build_days([date(2026, 10, 1)], BuildParams("run", 10, 30, 7))
    assert result.days == []
    assert broken.closed and broken.rollbacks == 1 and healthy.commits == 1
    assert len(sleeps) == 1


def test_other_errors_are_not_retried() -> None:
    broken = FakeConnection(fail_with=OdbcError("23000", "Violation of PRIMARY KEY constraint (2627)"))
    store, sleeps = warehouse(broken)
    store._schema_ready = True
    with pytest.raises(OdbcError):
        store.build_days([date(2026, 10, 1)], BuildParams("run", 10, 30, 7))
    assert sleeps == [] and broken.rollbacks == 1


def test_retries_are_bounded() -> None:
    connections = [FakeConnection(fail_with=OdbcError("HYT00", "Query timeout expired")) for _ in range(5)]
    store, sleeps = warehouse(*connections)
    store._schema_ready = True
    with pytest.raises(OdbcError):
        store.build_days([date(2026, 10, 1)], BuildParams("run", 10, 30, 7))
    assert len(sleeps) == store.attempts - 1


def test_connection_string_gets_a_driver_and_identity_uses_a_token(monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[tuple[str, dict]] = []
    fake = types.SimpleNamespace(
        drivers=lambda: ["ODBC Driver 17 for SQL Server"],
        connect=lambda text, **kwargs: calls.append((text, kwargs)) or FakeConnection(),
    )
    monkeypatch.setitem(sys.modules, "pyodbc", fake)
    warehouse_mssql.connection_factory(
        Settings(sql_connection_string="Server=tcp:x;Database=y;Uid=u;Pwd=p")
    )()
    assert calls[-1][0].startswith("Driver={ODBC Driver 17 for SQL Server};Server=tcp:x")

    class Credential:
        def get_token(self, scope: str) -> Any:
            assert scope == "https://database.windows.net/.default"
            return types.SimpleNamespace(token="tok")

    settings = Settings(sql_server="srv.database.windows.net", sql_database="db")
    warehouse_mssql.connection_factory(settings, Credential())()
    text, kwargs = calls[-1]
    assert "Server=tcp:srv.database.windows.net,1433;Database=db;Encrypt=yes" in text
    assert kwargs["attrs_before"] == {1256: access_token_struct("tok")}
    assert "Pwd" not in text and "tok" not in text


class FakeBatch:
    def __init__(self, capacity: int) -> None:
        self.capacity = capacity
        self.messages: list[Any] = []

    def add_message(self, message: Any) -> None:
        if len(self.messages) == self.capacity:
            raise ValueError("batch is full")
        self.messages.append(message)


class FakeSender:
    def __init__(self) -> None:
        self.sent: list[list[Any]] = []

    def create_message_batch(self) -> FakeBatch:
        return FakeBatch(capacity=2)

    def send_messages(self, batch: FakeBatch) -> None:
        self.sent.append(batch.messages)

    def close(self) -> None:
        pass


class FakeReceiver:
    def __init__(self, queue: str, waiting: int, calls: list[tuple[str, int, float | None]]) -> None:
        self.queue, self.waiting, self.calls = queue, waiting, calls

    def __enter__(self) -> FakeReceiver:
        return self

    def __exit__(self, *exc: object) -> None:
        self.calls.append((self.queue, -1, None))  # closed

    def peek_messages(self, max_message_count: int = 1, *, timeout: float | None = None) -> list[str]:
        self.calls.append((self.queue, max_message_count, timeout))
        return ["message"] * min(max_message_count, self.waiting)


class FakeClient:
    def __init__(self, waiting: dict[str, int] | None = None) -> None:
        self.senders: dict[str, FakeSender] = {}
        self.waiting = waiting or {}
        self.peeks: list[tuple[str, int, float | None]] = []

    def get_queue_sender(self, queue: str) -> FakeSender:
        return self.senders.setdefault(queue, FakeSender())

    def get_queue_receiver(self, queue: str, **options: object) -> FakeReceiver:
        return FakeReceiver(queue, self.waiting.get(queue, 0), self.peeks)

    def close(self) -> None:
        self.closed = True

    closed = False

    def __enter__(self) -> FakeClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def test_service_bus_messages_carry_ids_properties_json_and_schedule() -> None:
    client = FakeClient()
    bus = ServiceBusBus(client)
    bus.send(
        "transform",
        [
            OutgoingMessage({"kind": "usage", "date": "2026-10-01"}, "m1", {"kind": "usage"}),
            OutgoingMessage({"kind": "crm", "date": "2026-10-02"}, "m2"),
            OutgoingMessage({"kind": "day", "date": "2026-10-03"}, "m3", delay_s=60),
        ],
    )
    batches = client.senders["transform"].sent
    assert [len(b) for b in batches] == [2, 1]  # a full batch is sent and a new one started
    first, _, delayed = (m for b in batches for m in b)
    assert first.message_id == "m1" and first.content_type == "application/json"
    assert json.loads(str(first)) == {"kind": "usage", "date": "2026-10-01"}
    assert first.application_properties == {"kind": "usage"}
    assert first.scheduled_enqueue_time_utc is None
    assert delayed.scheduled_enqueue_time_utc > datetime.now(UTC)


def test_a_fetch_asked_for_later_is_a_scheduled_service_bus_message() -> None:
    client = FakeClient()
    at = datetime(2026, 12, 8, 4, 20, tzinfo=UTC)
    ServiceBusBus(client).send(
        "fetch-requests", [OutgoingMessage({"date": "2026-10-01"}, "later", scheduled_enqueue_time_utc=at)]
    )
    (message,) = (m for b in client.senders["fetch-requests"].sent for m in b)
    assert message.scheduled_enqueue_time_utc == at


def test_a_serverless_database_resuming_for_a_minute_is_waited_for() -> None:
    """40613: an auto-paused serverless database takes about a minute to resume; the first SQL
    work of the day must outwait it instead of dead-lettering after ~15 s of backoff."""
    resuming = OdbcError("42000", "Database 'x' on server 'y' is not currently available. (40613)")
    connections = [FakeConnection(fail_with=resuming) for _ in range(8)] + [FakeConnection()]
    store, sleeps = warehouse(*connections)
    store._schema_ready = True
    store.build_days([date(2026, 10, 1)], BuildParams("run", 10, 30, 7))
    assert connections[-1].commits == 1
    assert sum(sleeps) >= 60 and max(sleeps) <= 15


def test_a_database_that_stays_unavailable_gives_up_after_the_resume_budget() -> None:
    resuming = OdbcError("42000", "Database 'x' is not currently available. (40613)")
    store, sleeps = warehouse(*[FakeConnection(fail_with=resuming) for _ in range(100)])
    store._schema_ready = True
    with pytest.raises(OdbcError):
        store.build_days([date(2026, 10, 1)], BuildParams("run", 10, 30, 7))
    assert store.resume_budget_s <= sum(sleeps) < store.resume_budget_s + 15


def test_without_pyodbc_only_sql_work_fails(monkeypatch: pytest.MonkeyPatch, tmp_path: Any) -> None:
    """The warehouse is built when the app starts, but pyodbc, the driver and the settings are
    only needed by the first SQL work: the other functions (alerts above all) keep working."""
    from shared.bootstrap import build_services
    from shared.domain.alerts import Alert
    from shared.services.alerts import deliver_alert

    monkeypatch.setitem(sys.modules, "pyodbc", None)  # `import pyodbc` raises ImportError
    services = build_services(Settings(sql_server="srv.database.windows.net", local_data_dir=tmp_path))
    deliver_alert(services, Alert("error", "fetch", "fetch_failed", "an alert still goes out"))
    assert "an alert still goes out" in (tmp_path / "alerts.jsonl").read_text()
    with pytest.raises(RuntimeError, match="cannot load pyodbc for Azure SQL"):
        services.warehouse.apply_schema()


def test_a_missing_driver_is_named_on_first_sql_use(monkeypatch: pytest.MonkeyPatch) -> None:
    fake = types.SimpleNamespace(drivers=lambda: ["SQLite3"], connect=lambda *a, **k: FakeConnection())
    monkeypatch.setitem(sys.modules, "pyodbc", fake)
    connect = warehouse_mssql.connection_factory(Settings(sql_connection_string="Server=x"))  # no error yet
    with pytest.raises(RuntimeError, match=r"no SQL Server ODBC driver found.*SQLite3"):
        connect()


# --- the schema version and the probe (contract section 8) ------------------------------------


def answering(version: int | None, tables: tuple[int, ...] = (1, 0, 1, 0, 1, 1)) -> FakeConnection:
    connection = FakeConnection()
    connection.answers[sql_file("schema_version")[0]] = [(version,)]
    connection.answers[sql_file("probe_tables")[0]] = [tables]
    return connection


def test_the_first_sql_work_reads_the_schema_version_and_never_applies_it() -> None:
    connection = answering(SCHEMA_VERSION)
    store, _ = warehouse(connection)
    store.build_days([date(2026, 10, 1)], BuildParams("run", 10, 30, 7))
    store.build_days([date(2026, 10, 2)], BuildParams("run", 10, 30, 7))
    sent = [entry[1] for entry in connection.log if entry[0] == "execute"]
    assert sent.count(sql_file("schema_version")[0]) == 1  # once per process
    assert sql_file("schema")[0] not in sent


def test_another_schema_version_fails_the_work_in_one_line_until_it_is_applied() -> None:
    connection = answering(None)
    store, sleeps = warehouse(connection)
    with pytest.raises(SchemaVersionMismatch) as refused:
        store.build_days([date(2026, 10, 1)], BuildParams("run", 10, 30, 7))
    assert str(refused.value) == (
        f"the Azure SQL database has no schema version, this app needs schema version {SCHEMA_VERSION}:"
        " apply the schema with `azd provision` (or `python -m shared.cli init-db` as the database's"
        " administrator)"
    )
    assert isinstance(refused.value, PermanentError) and sleeps == []  # settles at once, with an alert
    connection.answers[sql_file("schema_version")[0]] = [(SCHEMA_VERSION,)]  # someone ran init-db
    store.build_days([date(2026, 10, 1)], BuildParams("run", 10, 30, 7))
    assert connection.commits >= 1


def test_init_db_refuses_a_database_a_newer_app_upgraded() -> None:
    connection = answering(SCHEMA_VERSION + 1)
    store, _ = warehouse(connection)
    with pytest.raises(
        SchemaVersionMismatch, match=f"has schema version {SCHEMA_VERSION + 1}, this app needs"
    ):
        store.apply_schema()
    assert sql_file("schema")[0] not in [entry[1] for entry in connection.log]


def test_the_probe_reads_the_version_and_each_table_once() -> None:
    connection = answering(SCHEMA_VERSION)
    store, sleeps = warehouse(connection)
    assert store.probe() == f"schema {SCHEMA_VERSION}, 6 tables read (4 hold rows)"
    sent = [entry[1] for entry in connection.log if entry[0] == "execute"]
    assert sent == [sql_file("schema_version")[0], sql_file("probe_tables")[0]] and sleeps == []


@pytest.mark.parametrize(
    ("error", "line"),
    [
        (
            OdbcError(
                "28000",
                "[28000] [Microsoft][ODBC Driver 18 for SQL Server][SQL Server]Login failed for user"
                " '<token-identified principal>'. (18456) (SQLDriverConnect)",
            ),
            "Azure SQL: login failed: the app's identity has no database user yet (azd provision creates"
            " it) or SQL_CONNECTION_STRING's login is wrong (18456)",
        ),
        (
            OdbcError(
                "42000",
                "[42000] [Microsoft][ODBC Driver 18 for SQL Server][SQL Server]The SELECT"
                " permission was denied on the object 'crm_snapshot'. (229) (SQLExecDirectW)",
            ),
            "Azure SQL: the app's database user may not read a table: grant db_datareader (azd provision"
            " does) (229)",
        ),
        (
            OdbcError(
                "HYT00", "[HYT00] [Microsoft][ODBC Driver 18 for SQL Server]Login timeout expired\n(0)"
            ),
            "Azure SQL: Login timeout expired",
        ),
    ],
)
def test_a_failing_probe_says_what_to_fix_in_one_line(error: Exception, line: str) -> None:
    def connect() -> FakeConnection:
        raise error

    store = MssqlWarehouse(connect, sleep=lambda _: None)
    with pytest.raises(RuntimeError) as failed:
        store.probe()
    assert str(failed.value) == line


def test_a_probe_without_the_driver_names_it(monkeypatch: pytest.MonkeyPatch) -> None:
    fake = types.SimpleNamespace(drivers=lambda: ["SQLite3"], connect=lambda *a, **k: FakeConnection())
    monkeypatch.setitem(sys.modules, "pyodbc", fake)
    store = MssqlWarehouse(warehouse_mssql.connection_factory(Settings(sql_connection_string="Server=x")))
    with pytest.raises(RuntimeError) as failed:
        store.probe()
    assert str(failed.value) == (
        "Azure SQL: no SQL Server ODBC driver found (need 'ODBC Driver 18 for SQL Server' or 17);"
        " installed: SQLite3"
    )


def test_a_probe_of_another_schema_version_names_both_and_the_command() -> None:
    store, _ = warehouse(answering(SCHEMA_VERSION - 1))
    with pytest.raises(
        SchemaVersionMismatch,
        match=rf"schema version {SCHEMA_VERSION - 1}, this app needs schema version {SCHEMA_VERSION}: apply the schema with `azd provision`",
    ):
        store.probe()


def test_service_bus_peek_looks_at_one_message_and_closes_its_receiver() -> None:
    """GET /api/health: a peek (Listen right, nothing locked) on each queue, bounded in time."""
    client = FakeClient({"alerts": 3})
    bus = ServiceBusBus(client)
    assert (bus.peek("transform"), bus.peek("alerts")) == (0, 1)
    assert client.peeks == [
        ("transform", 1, 5),
        ("transform", -1, None),
        ("alerts", 1, 5),
        ("alerts", -1, None),
    ]
    assert client.senders == {}  # nothing sent


def test_service_bus_peek_on_its_own_client_does_not_wait_for_the_senders() -> None:
    """The health check peeks every queue at once; a send in progress must not hold it back."""
    made: list[FakeClient] = []

    def peek_client() -> FakeClient:
        made.append(FakeClient({"alerts": 2}))
        return made[-1]

    bus = ServiceBusBus(FakeClient(), peek_client)
    with bus._lock:  # a sender busy on another thread
        assert bus.peek("alerts") == 1
    [client] = made
    assert client.closed and client.peeks == [("alerts", 1, 5), ("alerts", -1, None)]
