"""The composition root: which adapter plugs into which port, built once per process from settings.

Azure and the local host both call `get_services()`; only the adapters differ. Every adapter
is imported inside the function that builds it, so a Function App on Azure loads the Azure
SDKs it uses and nothing else: no DuckDB, no in-process bus, no module of `shared/local/`.
"""

from __future__ import annotations

import dataclasses
import logging
import os
import threading
from collections.abc import Callable, Collection, Mapping
from typing import Any

from shared.config import Settings, SettingsError, settings_of, unresolved_key_vault_references
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
# Built from the valid settings while some other setting is bad, with the environment it was
# read from: rebuilt when that changes.
_partial: tuple[tuple[str | None, ...], Services] | None = None
_alerts_bus: MessageBus | None = None
_lock = threading.Lock()
log = logging.getLogger(__name__)

# What the alert function reads besides storage (where it remembers what it sent): its sink.
ALERT_SETTINGS = settings_of("alerts", "alert_sink")


def get_services(needs: Collection[str] | None = None) -> Services:
    """The services of this process, built on first use from the environment (Azure) or
    installed by the local host.

    Settings are checked here, when a function runs, never when the app is imported (contract
    section 8). `needs`: the variables the caller's work is built from (`settings_of(...)`);
    None: every setting. When one of them is invalid this raises `SettingsError` naming every
    invalid one of them, in one line, and keeps nothing, so every invocation that needs them
    fails the same way until they are fixed. An invalid setting outside `needs` does not stop
    the caller: the services are built from the valid settings, and the pieces built from an
    invalid one refuse to work (the usage API client and the alert sink raise its error)
    rather than run on a default nobody chose.
    """
    global _current, _partial
    with _lock:
        if _current is not None:
            return _current
        settings, problems = Settings.read_env()
        if not problems:
            _log_unresolved()
            _current = build_services(settings)
            return _current
        mine = [problem for name, problem in problems.items() if needs is None or name in needs]
        if mine:
            raise SettingsError("; ".join(str(problem) for problem in mine))
        key = tuple(os.environ.get(name) for name in Settings.variables())
        if _partial is None or _partial[0] != key:
            _log_unresolved()
            _partial = (key, _refusing(build_services(settings), problems))
        return _partial[1]


def get_alert_services() -> Services:
    """What the alert function runs on: the services, built from the valid settings when some
    other setting is invalid, with the alert sink's own settings checked. A bad setting
    elsewhere must not silence the alerts that report it."""
    return get_services(ALERT_SETTINGS)


def _refusing(services: Services, problems: Mapping[str, SettingsError]) -> Services:
    """`services` whose usage API client and alert sink raise the first invalid setting they
    are built from, instead of being built on its default."""

    def refusing(piece: str, build: Callable[[Settings], Any]) -> Callable[[Settings], Any]:
        bad = [problems[name] for name in settings_of(piece) if name in problems]
        if not bad:
            return build

        def refuse(settings: Settings) -> Any:
            raise SettingsError("; ".join(str(problem) for problem in bad))

        return refuse

    return dataclasses.replace(
        services,
        usage_api=refusing("usage_api", services.usage_api),
        alert_sink=refusing("alert_sink", services.alert_sink),
    )


def _log_unresolved() -> None:
    for name in unresolved_key_vault_references():
        log.error(
            "setting %s is an unresolved Key Vault reference (the secret is not set, or the app's identity"
            " cannot read it); treating it as unset",
            name,
        )


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
    global _current, _partial
    with _lock:
        _current, _partial = services, None


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
        try:
            return adapter.from_connection_string(settings.data_storage_connection)
        except ValueError as exc:  # the SDK's words for a string that is not a connection string
            raise SettingsError(
                f"setting DATA_STORAGE_CONNECTION is not a storage connection string (not shown: a"
                f" secret): {exc}"
            ) from None
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
