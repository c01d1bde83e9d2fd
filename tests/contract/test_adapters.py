"""Adapter contract tests: one suite per port, run against every implementation of that port.

The tests only use the port (`shared.ports.BlobStore`, `RunLedger`); the implementations come
from the factory registries below through the parametrized `blob_store` and `ledger` fixtures.

Adding an Azure implementation (Blob / Table storage on Azurite) is one registry entry each:

    BLOB_STORES["azurite"] = _azurite_blob_store
    LEDGERS["azurite"] = _azurite_ledger

A factory is a context manager taking the test's `tmp_path`. It must yield an *empty* store and
clean up after itself (on Azurite: delete the containers / table it created, or give the adapter
a per-test name prefix). Params whose name starts with "azurite" get the `azurite` marker, so
`-m "not azurite"` skips them where the emulator is not running.

Names used here are valid on Azure too: containers are lowercase with hyphens, ledger keys
contain no `/ \\ # ?`.

The in-process bus and the Event Grid helpers have no Azure twin that can run here; their
tests are in the last two sections of this file.
"""

from __future__ import annotations

import json
import random
import threading
import uuid
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import AbstractContextManager, contextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

from shared import blob_events, names
from shared.adapters import local_bus
from shared.adapters.azure_blob import AzureBlobStore
from shared.adapters.local_blob import FolderBlobStore, UnsafeBlobName
from shared.adapters.local_bus import InProcessBus
from shared.adapters.publishing_blob import PublishingBlobStore
from shared.adapters.sqlite_ledger import SqliteLedger
from shared.adapters.table_ledger import TableLedger
from shared.blob_events import NotABlobEvent, make_event, parse_event, wanted
from shared.ports import BlobExists, BlobNotFound, BlobStore, ConcurrencyConflict, OutgoingMessage, RunLedger
from tests.azurite import blob_service, connection_string, delete_all_containers

# =========================================================================================
# Implementation registries: add the Azure factories here, the tests stay as they are.
# =========================================================================================

BlobStoreFactory = Callable[[Path], AbstractContextManager[BlobStore]]
LedgerFactory = Callable[[Path], AbstractContextManager[RunLedger]]


@contextmanager
def _folder_blob_store(tmp_path: Path) -> Iterator[BlobStore]:
    yield FolderBlobStore(tmp_path / "blobs")


@contextmanager
def _sqlite_ledger(tmp_path: Path) -> Iterator[RunLedger]:
    yield SqliteLedger(tmp_path / "ledger.sqlite3")


# The `azurite` factories run while the session's Azurite is up: tests/contract/conftest.py
# starts it (tests/azurite.py) for every test marked `azurite`, as these params are.


@contextmanager
def _azurite_blob_store(tmp_path: Path) -> Iterator[BlobStore]:
    # The tests use fixed container names, so the emulator's account is emptied before and after.
    service = blob_service(connection_string())
    delete_all_containers(service)
    try:
        yield AzureBlobStore(service)
    finally:
        delete_all_containers(service)


@contextmanager
def _azurite_ledger(tmp_path: Path) -> Iterator[RunLedger]:
    ledger = TableLedger.from_connection_string(connection_string(), table=f"t{uuid.uuid4().hex[:20]}")
    try:
        yield ledger
    finally:
        ledger.table.delete_table()


BLOB_STORES: dict[str, BlobStoreFactory] = {
    "folder": _folder_blob_store,
    "azurite": _azurite_blob_store,  # Azure Blob adapter on Azurite
}

LEDGERS: dict[str, LedgerFactory] = {
    "sqlite": _sqlite_ledger,
    "azurite": _azurite_ledger,  # Table storage adapter on Azurite
}


def _params(registry: dict[str, Any]) -> list[Any]:
    return [
        pytest.param(name, id=name, marks=pytest.mark.azurite if name.startswith("azurite") else ())
        for name in registry
    ]


@pytest.fixture(params=_params(BLOB_STORES))
def blob_store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[BlobStore]:
    with BLOB_STORES[request.param](tmp_path) as store:
        yield store


@pytest.fixture(params=_params(LEDGERS))
def ledger(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[RunLedger]:
    with LEDGERS[request.param](tmp_path) as entries:
        yield entries


def _impl(request: pytest.FixtureRequest, fixture: str) -> str:
    """Which implementation a parametrized fixture gave this test."""
    return request.node.callspec.params[fixture]


# =========================================================================================
# BlobStore contract
# =========================================================================================

RAW = names.RAW_CONTAINER
CRM = names.CRM_CONTAINER


@pytest.mark.parametrize(
    "data",
    [
        b"",
        b"hello",
        bytes(range(256)),
        b"\r\n\n\r\x00\x1a",
        random.Random(7).randbytes(300_000),
    ],
    ids=["empty", "ascii", "all-bytes", "newlines-nul", "300k-random"],
)
def test_blob_round_trip(blob_store: BlobStore, data: bytes) -> None:
    blob_store.put(RAW, "round/trip.bin", data)
    assert blob_store.get(RAW, "round/trip.bin") == data
    assert blob_store.info(RAW, "round/trip.bin").size == len(data)


def test_blob_overwrite_replaces(blob_store: BlobStore) -> None:
    blob_store.put(RAW, "x.json", b"a much longer first version")
    blob_store.put(RAW, "x.json", b"2")
    assert blob_store.get(RAW, "x.json") == b"2"
    assert blob_store.info(RAW, "x.json").size == 1
    assert blob_store.list(RAW) == ["x.json"]


def test_blob_put_without_overwrite(blob_store: BlobStore, request: pytest.FixtureRequest) -> None:
    blob_store.put(RAW, "once.json", b"first", overwrite=False)  # absent: creates it
    assert blob_store.get(RAW, "once.json") == b"first"
    with pytest.raises(BlobExists):
        blob_store.put(RAW, "once.json", b"second", overwrite=False)
    assert blob_store.get(RAW, "once.json") == b"first"


# A blob that is missing in each of the ways a name can miss.
MISSING_CASES: dict[str, tuple[list[tuple[str, str]], str]] = {
    # case: (blobs written first as (container, name), name asked for in RAW)
    "never-written": ([], "nope.json"),
    "in-other-container": ([(CRM, "elsewhere.csv")], "elsewhere.csv"),
    "virtual-folder": ([(RAW, "dir/x.json")], "dir"),
    "below-a-blob": ([(RAW, "dir/x.json")], "dir/x.json/y"),
}


@pytest.mark.parametrize("case", list(MISSING_CASES))
def test_blob_get_missing_raises(blob_store: BlobStore, request: pytest.FixtureRequest, case: str) -> None:
    written, name = MISSING_CASES[case]
    for container, blob in written:
        blob_store.put(container, blob, b"x")
    with pytest.raises(BlobNotFound):
        blob_store.get(RAW, name)


@pytest.mark.parametrize("case", list(MISSING_CASES))
def test_blob_info_missing_raises(blob_store: BlobStore, request: pytest.FixtureRequest, case: str) -> None:
    written, name = MISSING_CASES[case]
    for container, blob in written:
        blob_store.put(container, blob, b"x")
    with pytest.raises(BlobNotFound):
        blob_store.info(RAW, name)


@pytest.mark.parametrize("case", list(MISSING_CASES))
def test_blob_exists(blob_store: BlobStore, case: str) -> None:
    written, name = MISSING_CASES[case]
    for container, blob in written:
        blob_store.put(container, blob, b"x")
    assert blob_store.exists(RAW, name) is False
    blob_store.put(RAW, "there.json", b"")
    assert blob_store.exists(RAW, "there.json") is True
    assert blob_store.exists(CRM, "there.json") is False


def test_blob_info(blob_store: BlobStore) -> None:
    before = datetime.now(UTC)
    blob_store.put(CRM, "drops/companies.csv", b"id,name\n1,a\n")
    after = datetime.now(UTC)
    info = blob_store.info(CRM, "drops/companies.csv")
    assert (info.container, info.name, info.size) == (CRM, "drops/companies.csv", 12)
    assert info.created_at.tzinfo is not None
    assert info.created_at.utcoffset() == timedelta(0)
    slack = timedelta(seconds=30)  # coarse file system clocks, emulator clock skew
    assert before - slack <= info.created_at <= after + slack


def test_blob_list_with_prefix(blob_store: BlobStore) -> None:
    raw = [
        "usage/2024-05-02/run-1/manifest.json",
        "top.json",
        "usage/2024-05-01/run-1/page-00001.json",
        "usagex/other.json",
        "usage/2024-05-01/run-1/manifest.json",
    ]
    for name in raw:
        blob_store.put(RAW, name, b"{}")
    blob_store.put("other", "usage/2024-05-01/run-1/foreign.json", b"{}")
    blob_store.put(CRM, "usage/not-mine.csv", b"")

    assert blob_store.list(RAW) == sorted(raw)
    assert blob_store.list(RAW, "usage/") == [
        "usage/2024-05-01/run-1/manifest.json",
        "usage/2024-05-01/run-1/page-00001.json",
        "usage/2024-05-02/run-1/manifest.json",
    ]
    assert blob_store.list(RAW, "usage/2024-05-01/") == [
        "usage/2024-05-01/run-1/manifest.json",
        "usage/2024-05-01/run-1/page-00001.json",
    ]
    assert blob_store.list(RAW, "usage") == sorted(n for n in raw if n.startswith("usage"))
    assert blob_store.list(RAW, "usage/2024-05-0") == blob_store.list(RAW, "usage/")
    assert blob_store.list(RAW, "nothing/") == []
    assert blob_store.list("empty-container") == []
    assert blob_store.list("other") == ["usage/2024-05-01/run-1/foreign.json"]


NESTED_NAMES = [
    "a/b/c/d/e/f.json",
    "ünï/cødé/日本語.csv",
    "emoji/😀 party.bin",
    "spaces in/a name with spaces.txt",
    "dots/file.name.with.dots",
    "dash-and_underscore/x=1&y=2.json",
    ".hidden/.profile",
]


def test_blob_nested_and_unicode_names(blob_store: BlobStore) -> None:
    for i, name in enumerate(NESTED_NAMES):
        blob_store.put(RAW, name, name.encode() * (i + 1))
    for i, name in enumerate(NESTED_NAMES):
        assert blob_store.exists(RAW, name)
        assert blob_store.get(RAW, name) == name.encode() * (i + 1)
        assert blob_store.info(RAW, name).name == name
    assert blob_store.list(RAW) == sorted(NESTED_NAMES)
    assert blob_store.list(RAW, "ünï/") == ["ünï/cødé/日本語.csv"]


def test_blob_name_like_a_temp_file_is_listed(blob_store: BlobStore, request: pytest.FixtureRequest) -> None:
    blob_store.put(RAW, "reports/.tmp-report.csv", b"x")
    assert blob_store.exists(RAW, "reports/.tmp-report.csv")
    assert blob_store.list(RAW) == ["reports/.tmp-report.csv"]


UNSAFE_NAMES = ["../x", "/abs", "a/../../b", "a/../b", "..", "a\\b", "..\\x", "a\x00b", ""]
UNSAFE_CONTAINERS = ["", ".", "..", "a/b"]


@pytest.mark.parametrize("name", UNSAFE_NAMES, ids=repr)
def test_blob_unsafe_names_refused(
    blob_store: BlobStore, request: pytest.FixtureRequest, tmp_path: Path, name: str
) -> None:
    before = sorted(tmp_path.rglob("*"))
    with pytest.raises(UnsafeBlobName):
        blob_store.put(RAW, name, b"evil")
    with pytest.raises(UnsafeBlobName):
        blob_store.get(RAW, name)
    with pytest.raises(UnsafeBlobName):
        blob_store.info(RAW, name)
    with pytest.raises(UnsafeBlobName):
        blob_store.exists(RAW, name)
    assert sorted(tmp_path.rglob("*")) == before  # nothing written anywhere


@pytest.mark.parametrize("name", [".", "./a", "a/./b", "a//b", "a/"], ids=repr)
def test_blob_names_are_not_aliased(blob_store: BlobStore, request: pytest.FixtureRequest, name: str) -> None:
    """A name is either refused or stored under exactly that name."""
    try:
        blob_store.put(RAW, name, b"data")
    except (UnsafeBlobName, ValueError):
        assert blob_store.list(RAW) == []
        return
    assert blob_store.list(RAW) == [name]
    assert blob_store.get(RAW, name) == b"data"
    blob_store.put(RAW, "after.json", b"{}")  # the container still works
    assert blob_store.list(RAW) == sorted([name, "after.json"])


@pytest.mark.parametrize("container", UNSAFE_CONTAINERS, ids=repr)
def test_blob_unsafe_containers_refused(
    blob_store: BlobStore, request: pytest.FixtureRequest, tmp_path: Path, container: str
) -> None:
    before = sorted(tmp_path.rglob("*"))
    with pytest.raises(UnsafeBlobName):
        blob_store.put(container, "x.json", b"evil")
    with pytest.raises(UnsafeBlobName):
        blob_store.get(container, "x.json")
    with pytest.raises(UnsafeBlobName):
        blob_store.info(container, "x.json")
    with pytest.raises(UnsafeBlobName):
        blob_store.exists(container, "x.json")
    assert sorted(tmp_path.rglob("*")) == before


@pytest.mark.parametrize("container", UNSAFE_CONTAINERS, ids=repr)
def test_blob_list_refuses_unsafe_containers(
    blob_store: BlobStore, request: pytest.FixtureRequest, tmp_path: Path, container: str
) -> None:
    (tmp_path / "outside.txt").write_text("not a blob")
    blob_store.put(RAW, "inside.json", b"{}")
    with pytest.raises(UnsafeBlobName):
        blob_store.list(container)


def test_publishing_store_announces_each_finished_blob(blob_store: BlobStore) -> None:
    """The local stand-in for Event Grid: one call per successful put, after the blob is readable."""
    calls: list[tuple[str, str, int, bytes]] = []

    def hook(container: str, name: str, size: int) -> None:
        calls.append((container, name, size, store.get(container, name)))

    store = PublishingBlobStore(blob_store, hook)
    store.put(RAW, "usage/2024-05-01/run-1/manifest.json", b"{}")
    store.put(CRM, "ünï/drop.csv", b"id\n1\n")
    store.put(RAW, "empty", b"")
    store.put(RAW, "empty", b"now 12 bytes")  # an overwrite is a new BlobCreated too
    assert calls == [
        (RAW, "usage/2024-05-01/run-1/manifest.json", 2, b"{}"),
        (CRM, "ünï/drop.csv", 5, b"id\n1\n"),
        (RAW, "empty", 0, b""),
        (RAW, "empty", 12, b"now 12 bytes"),
    ]
    with pytest.raises(BlobExists):
        store.put(RAW, "empty", b"x", overwrite=False)
    assert len(calls) == 4  # failed puts announce nothing


# =========================================================================================
# RunLedger contract
# =========================================================================================


def test_ledger_get_missing(ledger: RunLedger) -> None:
    assert ledger.get("fetch", "2024-05-01") is None
    ledger.put("fetch", "2024-05-02", {"state": "done"})
    ledger.put("usage", "2024-05-01", {"state": "done"})
    assert ledger.get("fetch", "2024-05-01") is None  # other key, other partition


def test_ledger_put_then_get(ledger: RunLedger) -> None:
    written = ledger.put("fetch", "2024-05-01", {"state": "running", "pages": 3})
    got = ledger.get("fetch", "2024-05-01")
    assert got is not None
    assert (got.partition, got.key) == ("fetch", "2024-05-01")
    assert dict(got.data) == {"state": "running", "pages": 3}
    assert isinstance(got.etag, str) and got.etag
    assert got.etag == written.etag
    assert dict(written.data) == {"state": "running", "pages": 3}


def test_ledger_put_without_etag_overwrites_whole_entry(ledger: RunLedger) -> None:
    first = ledger.put("fetch", "k1", {"state": "running", "pages": 3})
    second = ledger.put("fetch", "k1", {"state": "done"})
    got = ledger.get("fetch", "k1")
    assert got is not None
    assert dict(got.data) == {"state": "done"}  # replaced, not merged
    assert got.etag == second.etag != first.etag


def test_ledger_put_with_current_etag(ledger: RunLedger) -> None:
    first = ledger.put("fetch", "k1", {"n": 1})
    second = ledger.put("fetch", "k1", {"n": 2}, etag=first.etag)
    assert second.etag != first.etag
    got = ledger.get("fetch", "k1")
    assert got is not None and dict(got.data) == {"n": 2} and got.etag == second.etag
    third = ledger.put("fetch", "k1", {"n": 3}, etag=second.etag)
    assert third.etag not in (first.etag, second.etag)


def test_ledger_put_with_stale_etag_conflicts(ledger: RunLedger) -> None:
    first = ledger.put("fetch", "k1", {"n": 1})
    second = ledger.put("fetch", "k1", {"n": 2}, etag=first.etag)
    with pytest.raises(ConcurrencyConflict):
        ledger.put("fetch", "k1", {"n": 99}, etag=first.etag)
    got = ledger.get("fetch", "k1")
    assert got is not None and dict(got.data) == {"n": 2} and got.etag == second.etag


def test_ledger_put_with_etag_on_missing_entry_conflicts(ledger: RunLedger) -> None:
    other = ledger.put("fetch", "k1", {"n": 1})
    with pytest.raises(ConcurrencyConflict):
        ledger.put("fetch", "k2", {"n": 1}, etag=other.etag)
    assert ledger.get("fetch", "k2") is None


def test_ledger_create_only_if_absent(ledger: RunLedger) -> None:
    created = ledger.put("alerts", "fp-1", {"count": 1}, etag="")
    with pytest.raises(ConcurrencyConflict):
        ledger.put("alerts", "fp-1", {"count": 2}, etag="")
    got = ledger.get("alerts", "fp-1")
    assert got is not None and dict(got.data) == {"count": 1} and got.etag == created.etag


def test_ledger_query_partition_sorted(ledger: RunLedger) -> None:
    keys = ["2024-05-03", "2024-05-01", "2024-05-10", "2024-05-02", "2024-04-30"]
    for i, key in enumerate(keys):
        ledger.put("days", key, {"i": i})
    ledger.put("days-x", "2024-05-01", {"i": -1})
    ledger.put("day", "2024-05-01", {"i": -2})
    ledger.put("usage", "2024-05-01", {"i": -3})

    entries = ledger.query("days")
    assert [e.key for e in entries] == sorted(keys)
    assert all(e.partition == "days" for e in entries)
    assert {e.key: e.data["i"] for e in entries} == {k: i for i, k in enumerate(keys)}
    for entry in entries:
        got = ledger.get("days", entry.key)
        assert got is not None and got.etag == entry.etag
    assert ledger.query("nothing") == []
    assert [e.key for e in ledger.query("day")] == ["2024-05-01"]


TYPED_VALUES: dict[str, Any] = {
    "text": "done",
    "empty_text": "",
    "unicode": "ünï 日本 😀",
    "digits_text": "0042",
    "int": 42,
    "zero": 0,
    "negative": -7,
    "big_int": 2**40,
    "float": 1.5,
    "whole_float": 2.0,
    "tiny_float": 1e-9,
    "true": True,
    "false": False,
    "none": None,
}


def test_ledger_values_keep_their_types(ledger: RunLedger) -> None:
    written = ledger.put("fetch", "typed", TYPED_VALUES)
    got = ledger.get("fetch", "typed")
    (queried,) = ledger.query("fetch")
    for entry in (written, got, queried):
        assert entry is not None
        assert dict(entry.data) == TYPED_VALUES
        for field_name, value in TYPED_VALUES.items():
            assert type(entry.data[field_name]) is type(value), field_name


def test_ledger_concurrent_read_modify_write(ledger: RunLedger) -> None:
    ledger.put("counters", "c", {"n": 0})
    threads, increments = 8, 25
    start = threading.Barrier(threads)

    def worker() -> int:
        conflicts = 0
        start.wait()
        for _ in range(increments):
            while True:
                entry = ledger.get("counters", "c")
                assert entry is not None
                try:
                    ledger.put("counters", "c", {"n": entry.data["n"] + 1}, etag=entry.etag)
                    break
                except ConcurrencyConflict:
                    conflicts += 1
        return conflicts

    with ThreadPoolExecutor(threads) as pool:
        futures = [pool.submit(worker) for _ in range(threads)]
        [f.result(timeout=60) for f in futures]  # re-raises any worker error
    final = ledger.get("counters", "c")
    assert final is not None and final.data["n"] == threads * increments


# =========================================================================================
# InProcessBus: the local stand-in for Azure Service Bus (no twin that runs here)
#
# The Service Bus behaviour it mimics, as the handlers rely on it:
# * peek-lock, at-least-once: a received message is locked; `complete` removes it,
#   `abandon` unlocks it and it is delivered again with DeliveryCount + 1;
# * MaxDeliveryCount: when a delivery that reaches the limit is abandoned, the message
#   moves to the queue's dead-letter sub-queue with DeadLetterReason
#   "MaxDeliveryCountExceeded"; the queues are created with `forwardDeadLetteredMessagesTo`
#   = `alerts`, so a copy lands on `alerts` (whose own dead letters are terminal);
# * duplicate detection: a MessageId seen on the same queue within the window is dropped;
# * no ordering promise: receivers must cope with any order (`receive(rng=...)`).
# =========================================================================================

Q = names.FETCH_QUEUE
ALERTS = names.ALERTS_QUEUE


def _msg(message_id: str, **properties: str | int | bool) -> OutgoingMessage:
    return OutgoingMessage(
        body={"id": message_id, "day": "2024-05-01"}, message_id=message_id, properties=properties
    )


@pytest.fixture
def bus() -> InProcessBus:
    return InProcessBus(max_delivery_count=3)


def test_bus_send_receive(bus: InProcessBus) -> None:
    bus.send(Q, [_msg("m1", Kind="fetch")])
    envelope = bus.receive(Q)
    assert envelope is not None
    assert envelope.message_id == "m1"
    assert envelope.json() == {"id": "m1", "day": "2024-05-01"}
    assert envelope.properties == {"Kind": "fetch"}
    assert envelope.delivery_count == 1
    assert envelope.queue == Q
    assert bus.receive(Q) is None  # locked: not delivered twice at once
    assert bus.receive(names.TRANSFORM_QUEUE) is None


def test_bus_complete_removes(bus: InProcessBus) -> None:
    bus.send(Q, [_msg("m1")])
    envelope = bus.receive(Q)
    assert envelope is not None
    bus.complete(envelope)
    assert bus.depth(Q) == 0
    assert bus.receive(Q) is None
    assert bus.dead_letters == {}


def test_bus_abandon_redelivers(bus: InProcessBus) -> None:
    bus.send(Q, [_msg("m1")])
    first = bus.receive(Q)
    assert first is not None
    assert bus.abandon(first, "transient") is False
    again = bus.receive(Q)
    assert again is not None
    assert again.message_id == "m1" and again.delivery_count == 2
    assert again.json() == {"id": "m1", "day": "2024-05-01"}


def test_bus_max_deliveries_dead_letters_and_forwards_to_alerts(bus: InProcessBus) -> None:
    bus.send(Q, [_msg("m1", Kind="fetch")])
    for attempt in range(1, bus.max_delivery_count + 1):
        envelope = bus.receive(Q)
        assert envelope is not None and envelope.delivery_count == attempt
        dead = bus.abandon(envelope, f"boom on attempt {attempt}")
        assert dead is (attempt == bus.max_delivery_count)
    assert bus.receive(Q) is None
    assert [e.message_id for e in bus.dead_letters[Q]] == ["m1"]
    assert bus.dead_letters[Q][0].dead_letter_reason == "MaxDeliveryCountExceeded"

    alert = bus.receive(ALERTS)
    assert alert is not None
    assert alert.message_id == "m1"
    assert alert.json() == {"id": "m1", "day": "2024-05-01"}
    assert alert.delivery_count == 1
    assert alert.dead_letter_reason == "MaxDeliveryCountExceeded"
    assert alert.dead_letter_error_description is not None
    assert "boom on attempt 3" in alert.dead_letter_error_description
    assert alert.dead_letter_source == Q
    assert alert.properties["Kind"] == "fetch"
    assert alert.properties["DeadLetterReason"] == "MaxDeliveryCountExceeded"
    assert "boom on attempt 3" in str(alert.properties["DeadLetterErrorDescription"])
    assert bus.receive(ALERTS) is None


def test_bus_alerts_dead_letters_are_terminal(bus: InProcessBus) -> None:
    bus.send(Q, [_msg("m1")])
    for _ in range(bus.max_delivery_count):  # dead-letter it on Q: forwarded to alerts
        envelope = bus.receive(Q)
        assert envelope is not None
        bus.abandon(envelope, "boom")
    for _ in range(bus.max_delivery_count):  # the alert handler fails too
        alert = bus.receive(ALERTS)
        assert alert is not None
        bus.abandon(alert, "alert webhook down")
    assert bus.receive(ALERTS) is None  # not forwarded to itself again
    assert [e.message_id for e in bus.dead_letters[ALERTS]] == ["m1"]
    assert all(not pending for pending in bus.queues.values())
    assert bus.idle()


def test_bus_duplicate_detection_within_window(bus: InProcessBus) -> None:
    bus.send(Q, [_msg("m1"), _msg("m1")])  # same batch
    bus.send(Q, [_msg("m1")])  # later send
    assert bus.depth(Q) == 1
    bus.send(names.TRANSFORM_QUEUE, [_msg("m1")])  # another queue: its own ids
    assert bus.depth(names.TRANSFORM_QUEUE) == 1


def test_bus_duplicate_detection_window_zero() -> None:
    bus = InProcessBus(duplicate_window_s=0)
    bus.send(Q, [_msg("m1")])
    bus.send(Q, [_msg("m1")])
    assert bus.depth(Q) == 2


def test_bus_duplicate_detection_window_expires(monkeypatch: pytest.MonkeyPatch) -> None:
    now = [1000.0]
    monkeypatch.setattr(local_bus, "time", SimpleNamespace(monotonic=lambda: now[0]))
    bus = InProcessBus(duplicate_window_s=600)
    bus.send(Q, [_msg("m1")])
    now[0] += 599.0
    bus.send(Q, [_msg("m1")])
    assert bus.depth(Q) == 1
    now[0] += 1.5  # 600.5 s after the first send
    bus.send(Q, [_msg("m1")])
    assert bus.depth(Q) == 2


def test_bus_idle(bus: InProcessBus) -> None:
    assert bus.idle()
    bus.send(Q, [_msg("m1")])
    assert not bus.idle()  # pending
    envelope = bus.receive(Q)
    assert envelope is not None
    assert not bus.idle()  # locked, queue empty
    bus.complete(envelope)
    assert bus.idle()


def test_bus_receive_with_rng_delivers_all_in_any_order(bus: InProcessBus) -> None:
    ids = [f"m{i:02d}" for i in range(30)]
    bus.send(Q, [_msg(i) for i in ids])
    rng = random.Random(1234)
    order: list[str] = []
    while (envelope := bus.receive(Q, rng)) is not None:
        assert envelope.delivery_count == 1
        order.append(envelope.message_id)
        bus.complete(envelope)
    assert sorted(order) == ids  # each exactly once
    assert order != ids  # not simply FIFO
    assert bus.idle()


def test_bus_receive_without_rng_is_fifo(bus: InProcessBus) -> None:
    ids = [f"m{i:02d}" for i in range(10)]
    bus.send(Q, [_msg(i) for i in ids])
    order = []
    while (envelope := bus.receive(Q)) is not None:
        order.append(envelope.message_id)
    assert order == ids


def test_bus_thread_safe_send(bus: InProcessBus) -> None:
    threads, per_thread = 4, 250
    start = threading.Barrier(threads)

    def sender(t: int) -> None:
        start.wait()
        for i in range(per_thread):
            bus.send(Q, [_msg(f"t{t}-{i}")])

    with ThreadPoolExecutor(threads) as pool:
        [f.result(timeout=60) for f in [pool.submit(sender, t) for t in range(threads)]]
    assert bus.depth(Q) == threads * per_thread
    received = set()
    while (envelope := bus.receive(Q)) is not None:
        received.add(envelope.message_id)
        bus.complete(envelope)
    assert received == {f"t{t}-{i}" for t in range(threads) for i in range(per_thread)}
    assert bus.idle()


# =========================================================================================
# blob_events: Event Grid Microsoft.Storage.BlobCreated, as published locally and on Azure
# =========================================================================================

MANIFEST = names.manifest_blob(datetime(2024, 5, 1).date(), "run-1")
PAGE = names.page_blob(datetime(2024, 5, 1).date(), "run-1", 1)


def test_event_round_trip() -> None:
    when = datetime(2024, 5, 1, 10, 20, 30, 123456, tzinfo=UTC)
    event = make_event(RAW, MANIFEST, size=321, event_time=when, etag="0xABC")
    json.dumps(event)  # a message body: must be JSON
    parsed = parse_event(event)
    assert parsed is not None
    assert (parsed.container, parsed.name, parsed.size) == (RAW, MANIFEST, 321)
    assert parsed.api == "PutBlob"
    assert parsed.etag == "0xABC"
    assert parsed.event_time == when


def test_event_round_trip_unicode_name() -> None:
    parsed = parse_event(make_event(CRM, "ünï/drop 1.csv", size=0))
    assert parsed is not None
    assert (parsed.container, parsed.name, parsed.size) == (CRM, "ünï/drop 1.csv", 0)


@pytest.mark.parametrize("api", sorted(blob_events.FINISHING_APIS))
def test_event_finishing_apis_parse(api: str) -> None:
    parsed = parse_event(make_event(RAW, MANIFEST, size=5, api=api))
    assert parsed is not None and parsed.api == api and parsed.name == MANIFEST


@pytest.mark.parametrize("api", ["CreateFile", "PutBlock", "AppendBlock", "PutPage", "", "putblob"])
def test_event_unfinished_apis_ignored(api: str) -> None:
    assert parse_event(make_event(RAW, MANIFEST, size=5, api=api)) is None


@pytest.mark.parametrize(
    "event_type",
    [
        "Microsoft.Storage.BlobDeleted",
        "Microsoft.Storage.BlobTierChanged",
        "Microsoft.Storage.DirectoryCreated",
        None,
    ],
)
def test_event_other_types_ignored(event_type: str | None) -> None:
    event = make_event(RAW, MANIFEST, size=5)
    event["eventType"] = event_type
    assert parse_event(event) is None


def test_event_cloudevents_schema() -> None:
    event = make_event(RAW, MANIFEST, size=5)
    event["type"] = event.pop("eventType")
    event["time"] = event.pop("eventTime")
    parsed = parse_event(event)
    assert parsed is not None and parsed.name == MANIFEST


def test_event_batch_of_one_accepted_others_refused() -> None:
    event = make_event(RAW, MANIFEST, size=5)
    parsed = parse_event([event])
    assert parsed is not None and parsed.name == MANIFEST
    with pytest.raises(NotABlobEvent):
        parse_event([event, make_event(RAW, PAGE, size=5)])
    with pytest.raises(NotABlobEvent):
        parse_event([])


@pytest.mark.parametrize("body", ["a string", 42, None, ["not a dict"]], ids=repr)
def test_event_not_an_object_refused(body: Any) -> None:
    with pytest.raises(NotABlobEvent):
        parse_event(body)


@pytest.mark.parametrize(
    "subject",
    [
        "",
        "garbage",
        "/blobServices/default/containers/raw",
        "/blobServices/default/containers/raw/usage/x.json",
        "/blobServices/default/containers//blobs/x.json",
        "/blobServices/default/containers/raw/blobs/",
        "/fileServices/default/shares/raw/files/x.json",
    ],
)
def test_event_malformed_subject_refused(subject: str) -> None:
    event = make_event(RAW, MANIFEST, size=5)
    event["subject"] = subject
    with pytest.raises(NotABlobEvent):
        parse_event(event)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("2024-05-01T10:20:30.1234567Z", datetime(2024, 5, 1, 10, 20, 30, 123456, tzinfo=UTC)),
        ("2024-05-01T10:20:30.5Z", datetime(2024, 5, 1, 10, 20, 30, 500000, tzinfo=UTC)),
        ("2024-05-01T10:20:30Z", datetime(2024, 5, 1, 10, 20, 30, tzinfo=UTC)),
    ],
)
def test_event_time_utc(text: str, expected: datetime) -> None:
    event = make_event(RAW, MANIFEST, size=5)
    event["eventTime"] = text
    parsed = parse_event(event)
    assert parsed is not None
    assert parsed.event_time == expected
    assert parsed.event_time.utcoffset() == timedelta(0)


@pytest.mark.parametrize(
    "text",
    [
        "2024-05-01T12:20:30+02:00",
        "2024-05-01T12:20:30.123+02:00",
        "2024-05-01T12:20:30.123456+02:00",
        "2024-05-01T12:20:30.1234567+02:00",
    ],
)
def test_event_time_with_offset(text: str) -> None:
    event = make_event(RAW, MANIFEST, size=5)
    event["eventTime"] = text
    parsed = parse_event(event)
    assert parsed is not None
    expected = datetime(2024, 5, 1, 10, 20, 30, tzinfo=UTC)
    assert abs(parsed.event_time - expected) < timedelta(seconds=1)


@pytest.mark.parametrize(
    ("container", "name"),
    [
        (RAW, MANIFEST),
        (RAW, names.manifest_blob(datetime(2023, 12, 31).date(), "20231231T235959Z-abc")),
        (CRM, "companies_2024-05-01.csv"),
        (CRM, "sub/folder/any file.txt"),
        (CRM, "manifest.json"),
    ],
)
def test_wanted_accepts(container: str, name: str) -> None:
    assert wanted(container, name)


@pytest.mark.parametrize(
    ("container", "name"),
    [
        (RAW, PAGE),
        (RAW, MANIFEST + ".tmp"),
        (RAW, "usage/2024-05-01/run-1/not-a-manifest.json"),
        (RAW, "other/2024-05-01/run-1/manifest.json"),
        (RAW, "manifest.json"),
        (names.QUARANTINE_CONTAINER, MANIFEST),
        (names.QUARANTINE_CONTAINER, "companies_2024-05-01.csv"),
        ("raw2", MANIFEST),
        ("other", "companies_2024-05-01.csv"),
        (CRM, "folder/"),
    ],
)
def test_wanted_refuses(container: str, name: str) -> None:
    assert not wanted(container, name)
