"""The composition root: which adapter plugs into which port, built once per process from settings.

Azure and the local host both call `get_services()`; only the adapters differ. Every adapter
is imported inside the function that builds it, so a Function App on Azure loads the Azure
SDKs it uses and nothing else: no DuckDB, no in-process bus, no module of `shared/local/`.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Callable
from typing import Any

from shared.config import Settings, SettingsError
from shared.domain import blob_events, names
from shared.ports import (
    AlertSink,
    BlobStore,
    MessageBus,
    OutgoingMessage,
    RunLedger,
    Services,
    UsageApi,
    Warehouse,
)

_current: Services | None = None
_for_alerts: Services | None = None
_alerts_bus: MessageBus | None = None
_lock = threading.Lock()

# What the alert function reads besides storage (where it remembers what it sent): its sink.
ALERT_SETTINGS = ("ALERT_WEBHOOK_URL", "ALERT_WEBHOOK_BACKOFF_S", "ALERT_REPEAT_WINDOW_S")


def get_services() -> Services:
    """The services of this process, built on first use from the environment (Azure) or
    installed by the local host.

    Settings are checked here, when a function runs, never when the app is imported: an invalid
    one raises `SettingsError` (one line naming it) and nothing is kept, so every invocation
    that needs the services fails the same way until the setting is fixed, and the others run.
    """
    global _current
    with _lock:
        if _current is None:
            _current = build_services(Settings.from_env())
        return _current


def get_alert_services() -> Services:
    """What the alert function runs on: the services, or, when some other setting is invalid,
    the same built from the valid ones with the alert sink's own settings checked. A bad
    setting elsewhere must not silence the alerts that report it."""
    global _for_alerts
    try:
        return get_services()
    except SettingsError:
        pass
    with _lock:
        if _for_alerts is None:
            settings, problems = Settings.read_env()
            for name in ALERT_SETTINGS:
                if name in problems:
                    raise problems[name]
            _for_alerts = build_services(settings)
        return _for_alerts


def alert_bus() -> MessageBus | None:
    """The bus that carries alerts, built from the settings that are valid, when Service Bus is
    configured (without it there is no alert function to deliver them); None if it cannot be."""
    global _alerts_bus
    with _lock:
        if _alerts_bus is None:
            settings, _ = Settings.read_env()
            if not _uses_service_bus(settings):
                return None
            _alerts_bus = _bus(settings, local_bus=False, durable=False)
        return _alerts_bus


def use_services(services: Services | None) -> None:
    """Install the services the handlers will use (the local host and tests)."""
    global _current, _for_alerts
    with _lock:
        _current, _for_alerts = services, None


def build_services(
    settings: Settings, *, local_bus: bool = False, durable_bus: bool = False, read_only: bool = False
) -> Services:
    """Each port gets its Azure adapter when its settings are present, else the embedded one.

    `local_bus` forces the in-process bus: the local host delivers the messages itself, also
    when blob and table storage are Azure (Azurite). `durable_bus` journals it under
    LOCAL_DATA_DIR, so messages outlive a killed process. `read_only` opens the local ledger
    and warehouse only to read (a command that must change nothing: `reconcile`).
    """
    bus = _bus(settings, local_bus, durable_bus)
    blobs = _blob_store(settings)
    if not _uses_service_bus(settings) or local_bus:
        # No Event Grid without Azure: the store announces finished blobs itself.
        from shared.adapters.blob_publishing import PublishingBlobStore

        blobs = PublishingBlobStore(blobs, _announcer(bus))
    return Services(
        settings=settings,
        blobs=blobs,
        ledger=make_ledger(settings, read_only=read_only),
        bus=bus,
        warehouse=make_warehouse(settings, read_only=read_only),
        usage_api=usage_api_client,
        alert_sink=alert_sink,
    )


def build_local(settings: Settings, *, read_only: bool = False) -> Services:
    """What the local host runs on: the in-process bus, journaled under LOCAL_DATA_DIR so
    messages outlive a crash, and local or Azurite storage. `read_only`: nothing is opened for
    writing (the bus is not journaled: a command that only reads sends nothing)."""
    return build_services(settings, local_bus=True, durable_bus=not read_only, read_only=read_only)


def _uses_service_bus(settings: Settings) -> bool:
    return bool(settings.service_bus_connection or settings.service_bus_namespace)


def _bus(settings: Settings, local_bus: bool, durable: bool) -> MessageBus:
    if not local_bus and _uses_service_bus(settings):
        from shared.adapters.bus_servicebus import ServiceBusBus

        return ServiceBusBus.from_settings(settings)
    from shared.adapters.bus_in_process import InProcessBus
    from shared.adapters.bus_journal import BusJournal

    journal = BusJournal(settings.local_data_dir / "bus.sqlite3") if durable else None
    return InProcessBus(max_delivery_count=settings.max_delivery_count, journal=journal)


def _on_azure_storage(settings: Settings, adapter: Any) -> Any:
    """Blob and Table storage share one account: a connection string, or identity by name."""
    if settings.data_storage_connection:
        return adapter.from_connection_string(settings.data_storage_connection)
    return adapter.from_account_name(settings.data_storage_account_name)


def _blob_store(settings: Settings) -> BlobStore:
    if settings.uses_azure_storage():
        from shared.adapters.blob_azure import AzureBlobStore

        store: BlobStore = _on_azure_storage(settings, AzureBlobStore)
        return store
    from shared.adapters.blob_folder import FolderBlobStore

    return FolderBlobStore(settings.local_data_dir / "blobs")


def make_ledger(settings: Settings, *, read_only: bool = False) -> RunLedger:
    """The run ledger; `read_only` opens the local one without creating or changing anything.
    Whatever is written to it is redacted of the settings' secrets first."""
    ledger: RunLedger
    if settings.uses_azure_storage():
        from shared.adapters.ledger_table import TableLedger

        ledger = _on_azure_storage(settings, TableLedger)
    else:
        from shared.adapters.ledger_sqlite import SqliteLedger

        ledger = SqliteLedger(settings.local_data_dir / "ledger.sqlite3", read_only=read_only)
    if not settings.secrets():
        return ledger
    from shared.adapters.ledger_redacting import RedactingLedger

    return RedactingLedger(ledger, settings.secrets())


def make_warehouse(settings: Settings, *, read_only: bool = False) -> Warehouse:
    """The warehouse; `read_only` opens the local one to read, as it is (Azure SQL: as usual)."""
    if settings.sql_connection_string or settings.sql_server:
        from shared.adapters.warehouse_mssql import MssqlWarehouse

        return MssqlWarehouse.from_settings(settings)
    from shared.adapters.warehouse_duckdb import DuckDbWarehouse

    return DuckDbWarehouse(  # schema checked on first use, and applied to a file it made
        settings.local_warehouse_file,
        memory_mb=settings.local_warehouse_memory_mb,
        read_only=read_only,
    )


def usage_api_client(settings: Settings) -> UsageApi:
    """A Product Usage API client for one day's fetch, from the settings in force."""
    from shared.adapters.usage_api_http import client_for

    return client_for(settings)


def alert_sink(settings: Settings) -> AlertSink:
    """Where alerts go: the webhook when one is set; else, on Azure, the log (Application
    Insights); else, locally, LOCAL_DATA_DIR/alerts.jsonl."""
    if settings.alert_webhook_url:
        from shared.adapters.alert_webhook import WebhookAlertSink

        return WebhookAlertSink(
            settings.alert_webhook_url, settings.secrets(), backoff_s=settings.alert_webhook_backoff_s
        )
    if os.environ.get("WEBSITE_SITE_NAME"):  # set by App Service on every Function App
        from shared.adapters.alert_log import LogAlertSink

        return LogAlertSink()
    from shared.adapters.alert_file import JsonLinesAlertSink

    return JsonLinesAlertSink(settings.local_data_dir / "alerts.jsonl", settings.secrets())


def _announcer(bus: MessageBus) -> Callable[[str, str, int], None]:
    def announce(container: str, name: str, size: int) -> None:
        # What the Event Grid subscription does on Azure, with the same filter.
        if blob_events.wanted(container, name):
            event = blob_events.make_event(container, name, size=size)
            bus.send(names.INGEST_QUEUE, [OutgoingMessage(body=event, message_id=event["id"])])

    return announce
