"""The adapter contract suites' fixtures: every implementation of a port that can run here.

The tests only use the port (`shared.ports.BlobStore`, `RunLedger`); the implementations come
from the factory registries below through the parametrized `blob_store` and `ledger` fixtures.
A factory is a context manager taking the test's `tmp_path`. It must yield an *empty* store and
clean up after itself (on Azurite: delete the containers / table it created, or give the adapter
a per-test name prefix). Params whose name starts with "azurite" get the `azurite` marker;
Azurite is started (or reused) before such a test builds its store, and with CI=true a missing
emulator fails the test instead of skipping it (tests/azurite.py).

Names used here are valid on Azure too: containers are lowercase with hyphens, ledger keys
contain no `/ \\ # ?`.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager
from pathlib import Path
from typing import Any

import pytest

from shared.adapters.blob_azure import AzureBlobStore
from shared.adapters.blob_folder import FolderBlobStore
from shared.adapters.ledger_sqlite import SqliteLedger
from shared.adapters.ledger_table import TableLedger
from shared.ports import BlobStore, RunLedger
from tests.azurite import (
    azurite,  # noqa: F401  (registers the session fixture here)
    blob_service,
    connection_string,
    delete_all_containers,
)

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


# The `azurite` factories run while the session's Azurite is up: tests/adapters/conftest.py
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


def impl(request: pytest.FixtureRequest, fixture: str) -> str:
    """Which implementation a parametrized fixture gave this test."""
    return request.node.callspec.params[fixture]


@pytest.fixture(autouse=True)
def _azurite_for_marked_tests(request: pytest.FixtureRequest) -> None:
    """Start (or reuse) Azurite before a test marked `azurite` builds its store: autouse
    fixtures run before the test's other fixtures of the same scope."""
    if request.node.get_closest_marker("azurite") is not None:
        request.getfixturevalue("azurite")
