"""Settings: environment variables with the same names as the Function App's app settings."""

from __future__ import annotations

import logging
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path


def _int(env: Mapping[str, str], name: str, default: int) -> int:
    raw = env.get(name, "").strip()
    if not raw:
        return default
    try:
        return int(raw)
    except ValueError:
        raise ValueError(f"setting {name} must be a whole number, got {raw!r}") from None


def _float(env: Mapping[str, str], name: str, default: float) -> float:
    raw = env.get(name, "").strip()
    if not raw:
        return default
    try:
        return float(raw)
    except ValueError:
        raise ValueError(f"setting {name} must be a number, got {raw!r}") from None


def _secret(env: Mapping[str, str], name: str) -> str:
    """A secret setting. An unresolved Key Vault reference (the secret was never set, or the
    identity cannot read it) reaches the app as its literal text: treat it as unset, loudly."""
    value = env.get(name, "").strip()
    if value.startswith("@Microsoft.KeyVault("):
        logging.getLogger(__name__).error(
            "setting %s is an unresolved Key Vault reference; treating it as unset", name
        )
        return ""
    return value


@dataclass(frozen=True)
class Settings:
    usage_api_base_url: str = ""
    # repr=False: settings get logged and printed; the key must never be.
    usage_api_key: str = field(default="", repr=False)
    usage_api_timeout_s: float = 30.0
    usage_api_page_size: int = 500
    usage_api_max_pages: int = 1000
    usage_api_max_attempts: int = 6
    usage_api_backoff_base_s: float = 1.0
    usage_api_backoff_max_s: float = 60.0
    usage_api_concurrency: int = 8  # pages fetched at once when the API reports total_pages
    usage_api_max_rps: float = 0.0  # client-side request rate cap; 0: none until the API says 429
    local_data_dir: Path = Path(".local")
    churn_min_rolling_users: int = 10
    churn_max_contact_age_days: int = 30
    crm_max_snapshot_age_days: int = 7
    alert_webhook_url: str = field(default="", repr=False)
    alert_webhook_backoff_s: float = 0.5
    alert_repeat_window_s: float = 3600.0  # the same alert is delivered once per window
    max_delivery_count: int = 5
    # Azure. Unset locally; each one set switches its port to the Azure adapter.
    data_storage_connection: str = field(default="", repr=False)  # a connection string (Azurite, dev)
    data_storage_account_name: str = ""  # identity-based: https://<name>.blob/.table.core.windows.net
    service_bus_connection: str = field(default="", repr=False)  # a connection string (dev)
    service_bus_namespace: str = ""  # identity-based: <name>.servicebus.windows.net
    sql_connection_string: str = field(default="", repr=False)  # full ODBC string (SQL auth), or
    sql_server: str = ""  # identity-based: <server>.database.windows.net ...
    sql_database: str = ""  # ... and the database name

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> Settings:
        env = os.environ if env is None else env
        return cls(
            usage_api_base_url=env.get("USAGE_API_BASE_URL", "").strip().rstrip("/"),
            usage_api_key=_secret(env, "USAGE_API_KEY"),
            usage_api_timeout_s=_float(env, "USAGE_API_TIMEOUT_S", 30.0),
            usage_api_page_size=min(1000, max(1, _int(env, "USAGE_API_PAGE_SIZE", 500))),
            usage_api_max_pages=_int(env, "USAGE_API_MAX_PAGES", 1000),
            usage_api_max_attempts=max(1, _int(env, "USAGE_API_MAX_ATTEMPTS", 6)),
            usage_api_backoff_base_s=_float(env, "USAGE_API_BACKOFF_BASE_S", 1.0),
            usage_api_backoff_max_s=_float(env, "USAGE_API_BACKOFF_MAX_S", 60.0),
            usage_api_concurrency=max(1, _int(env, "USAGE_API_CONCURRENCY", 8)),
            usage_api_max_rps=max(0.0, _float(env, "USAGE_API_MAX_RPS", 0.0)),
            local_data_dir=Path(env.get("LOCAL_DATA_DIR", "").strip() or ".local"),
            churn_min_rolling_users=_int(env, "CHURN_MIN_ROLLING_USERS", 10),
            churn_max_contact_age_days=_int(env, "CHURN_MAX_CONTACT_AGE_DAYS", 30),
            crm_max_snapshot_age_days=_int(env, "CRM_MAX_SNAPSHOT_AGE_DAYS", 7),
            alert_webhook_url=_secret(env, "ALERT_WEBHOOK_URL"),
            alert_webhook_backoff_s=_float(env, "ALERT_WEBHOOK_BACKOFF_S", 0.5),
            alert_repeat_window_s=_float(env, "ALERT_REPEAT_WINDOW_S", 3600.0),
            max_delivery_count=max(1, _int(env, "MAX_DELIVERY_COUNT", 5)),
            data_storage_connection=env.get("DATA_STORAGE_CONNECTION", "").strip(),
            data_storage_account_name=env.get("DATA_STORAGE_ACCOUNT_NAME", "").strip(),
            service_bus_connection=env.get("ServiceBusConnection", "").strip(),
            service_bus_namespace=env.get("ServiceBusConnection__fullyQualifiedNamespace", "").strip(),
            sql_connection_string=_secret(env, "SQL_CONNECTION_STRING"),
            sql_server=env.get("SQL_SERVER", "").strip(),
            sql_database=env.get("SQL_DATABASE", "").strip(),
        )

    def secrets(self) -> list[str]:
        """Values that must never appear in logs, alerts or errors."""
        return [
            s
            for s in (
                self.usage_api_key,
                self.alert_webhook_url,
                self.data_storage_connection,
                self.service_bus_connection,
                self.sql_connection_string,
            )
            if s
        ]
