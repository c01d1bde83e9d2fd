"""The composition root: which adapters plug into the ports, built once per process from settings.

Azure and the local host both call `get_services()`; only the adapters differ.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime

from shared import blob_events, names
from shared.config import Settings
from shared.ports import BlobStore, MessageBus, OutgoingMessage, RunLedger, Warehouse

log = logging.getLogger(__name__)


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
    global _current
    with _lock:
        if _current is None:
            _current = build_local(Settings.from_env())
        return _current


def use_services(services: Services | None) -> None:
    """Install the services the handlers will use (the local host and tests)."""
    global _current
    with _lock:
        _current = services


def build_local(settings: Settings) -> Services:
    """The embedded default: a folder, SQLite, an in-process bus and DuckDB under LOCAL_DATA_DIR."""
    from shared.adapters.duckdb_warehouse import DuckDbWarehouse
    from shared.adapters.local_blob import FolderBlobStore
    from shared.adapters.local_bus import InProcessBus
    from shared.adapters.publishing_blob import PublishingBlobStore
    from shared.adapters.sqlite_ledger import SqliteLedger

    root = settings.local_data_dir
    root.mkdir(parents=True, exist_ok=True)
    bus = InProcessBus(max_delivery_count=settings.max_delivery_count)

    def publish_blob_created(container: str, name: str, size: int) -> None:
        # What the Event Grid subscription does on Azure, with the same filter.
        if blob_events.wanted(container, name):
            event = blob_events.make_event(container, name, size=size)
            bus.send(names.INGEST_QUEUE, [OutgoingMessage(body=event, message_id=event["id"])])

    warehouse = DuckDbWarehouse(root / "warehouse.duckdb")
    warehouse.apply_schema()
    return Services(
        settings=settings,
        blobs=PublishingBlobStore(FolderBlobStore(root / "blobs"), publish_blob_created),
        ledger=SqliteLedger(root / "ledger.sqlite3"),
        bus=bus,
        warehouse=warehouse,
    )
