"""The composition root: which adapters plug into the ports, built once per process from settings.

Azure and the local host both call `get_services()`; only the adapters differ.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from shared import blob_events, names
from shared.adapters.bus_journal import BusJournal
from shared.adapters.local_bus import InProcessBus
from shared.adapters.publishing_blob import PublishingBlobStore
from shared.config import Settings
from shared.ports import BlobStore, MessageBus, OutgoingMessage, RunLedger, Warehouse


@dataclass
class Services:
    settings: Settings
    blobs: BlobStore
    ledger: RunLedger
    bus: MessageBus
    warehouse: Warehouse
    clock: Callable[[], datetime] = field(default=lambda: datetime.now(UTC))


_current: Services | None = None
_lock = threading.Lock()


def get_services() -> Services:
    """The services of this process, built on first use from the environment (Azure) or
    installed by the local host."""
    global _current
    with _lock:
        if _current is None:
            _current = build_services(Settings.from_env())
        return _current


def use_services(services: Services | None) -> None:
    """Install the services the handlers will use (the local host and tests)."""
    global _current
    with _lock:
        _current = services


def build_services(settings: Settings, *, local_bus: bool = False, durable_bus: bool = False) -> Services:
    """Each port gets its Azure adapter when its settings are present, else the embedded one.

    `local_bus` forces the in-process bus: the local host delivers the messages itself, also
    when blob and table storage are Azure (Azurite).
    """
    bus = _bus(settings, local_bus, durable_bus)
    blobs = _blob_store(settings)
    if isinstance(bus, InProcessBus):
        blobs = PublishingBlobStore(blobs, _announcer(bus))  # no Event Grid without Azure
    return Services(
        settings=settings,
        blobs=blobs,
        ledger=_ledger(settings),
        bus=bus,
        warehouse=make_warehouse(settings),
    )


def build_local(settings: Settings) -> Services:
    """What the local host runs on: the in-process bus, journaled under LOCAL_DATA_DIR so
    messages outlive a crash, and local or Azurite storage."""
    return build_services(settings, local_bus=True, durable_bus=True)


def _bus(settings: Settings, local_bus: bool, durable: bool) -> MessageBus:
    if not local_bus and (settings.service_bus_connection or settings.service_bus_namespace):
        from shared.adapters.servicebus_bus import ServiceBusBus

        return ServiceBusBus.from_settings(settings)
    journal = BusJournal(settings.local_data_dir / "bus.sqlite3") if durable else None
    return InProcessBus(max_delivery_count=settings.max_delivery_count, journal=journal)


def _on_azure_storage(settings: Settings, adapter: Any) -> Any:
    """Blob and Table storage share one account: a connection string, or identity by name."""
    if settings.data_storage_connection:
        return adapter.from_connection_string(settings.data_storage_connection)
    return adapter.from_account_name(settings.data_storage_account_name)


def _uses_azure_storage(settings: Settings) -> bool:
    return bool(settings.data_storage_connection or settings.data_storage_account_name)


def _blob_store(settings: Settings) -> BlobStore:
    if _uses_azure_storage(settings):
        from shared.adapters.azure_blob import AzureBlobStore

        return _on_azure_storage(settings, AzureBlobStore)
    from shared.adapters.local_blob import FolderBlobStore

    return FolderBlobStore(settings.local_data_dir / "blobs")


def _ledger(settings: Settings) -> RunLedger:
    if _uses_azure_storage(settings):
        from shared.adapters.table_ledger import TableLedger

        return _on_azure_storage(settings, TableLedger)
    from shared.adapters.sqlite_ledger import SqliteLedger

    return SqliteLedger(settings.local_data_dir / "ledger.sqlite3")


def make_warehouse(settings: Settings) -> Warehouse:
    if settings.sql_connection_string or settings.sql_server:
        from shared.adapters.mssql_warehouse import MssqlWarehouse

        return MssqlWarehouse.from_settings(settings)
    from shared.adapters.duckdb_warehouse import DuckDbWarehouse

    warehouse = DuckDbWarehouse(settings.local_data_dir / "warehouse.duckdb")
    warehouse.apply_schema()
    return warehouse


def _announcer(bus: InProcessBus) -> Callable[[str, str, int], None]:
    def announce(container: str, name: str, size: int) -> None:
        # What the Event Grid subscription does on Azure, with the same filter.
        if blob_events.wanted(container, name):
            event = blob_events.make_event(container, name, size=size)
            bus.send(names.INGEST_QUEUE, [OutgoingMessage(body=event, message_id=event["id"])])

    return announce
