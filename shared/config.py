"""Settings: environment variables with the same names as the Function App's app settings.

Each setting is declared once, as a field of `Settings`: its variable name, its default, and
the range it is kept in. `Settings.from_env` reads them all the same way.
"""

from __future__ import annotations

import dataclasses
import logging
import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

_KEY_VAULT_REFERENCE = "@Microsoft.KeyVault("


def _setting(
    env: str,
    default: Any,
    *,
    secret: bool = False,
    low: float | None = None,
    high: float | None = None,
) -> Any:
    """A field read from `env`. Secrets never appear in repr(); numbers are kept in [low, high]."""
    return dataclasses.field(
        default=default, repr=not secret, metadata={"env": env, "secret": secret, "low": low, "high": high}
    )


@dataclass(frozen=True)
class Settings:
    usage_api_base_url: str = _setting("USAGE_API_BASE_URL", "")
    usage_api_key: str = _setting("USAGE_API_KEY", "", secret=True)
    usage_api_timeout_s: float = _setting("USAGE_API_TIMEOUT_S", 30.0)
    usage_api_page_size: int = _setting("USAGE_API_PAGE_SIZE", 500, low=1, high=1000)
    usage_api_max_pages: int = _setting("USAGE_API_MAX_PAGES", 1000)
    usage_api_max_attempts: int = _setting("USAGE_API_MAX_ATTEMPTS", 6, low=1)
    usage_api_backoff_base_s: float = _setting("USAGE_API_BACKOFF_BASE_S", 1.0)
    usage_api_backoff_max_s: float = _setting("USAGE_API_BACKOFF_MAX_S", 60.0)
    # Pages fetched at once when the API reports total_pages.
    usage_api_concurrency: int = _setting("USAGE_API_CONCURRENCY", 8, low=1)
    # Client-side request rate cap; 0: none until the API says 429.
    usage_api_max_rps: float = _setting("USAGE_API_MAX_RPS", 0.0, low=0)
    local_data_dir: Path = _setting("LOCAL_DATA_DIR", Path(".local"))  # noqa: RUF009 - a field()
    churn_min_rolling_users: int = _setting("CHURN_MIN_ROLLING_USERS", 10)
    churn_max_contact_age_days: int = _setting("CHURN_MAX_CONTACT_AGE_DAYS", 30)
    crm_max_snapshot_age_days: int = _setting("CRM_MAX_SNAPSHOT_AGE_DAYS", 7)
    alert_webhook_url: str = _setting("ALERT_WEBHOOK_URL", "", secret=True)
    alert_webhook_backoff_s: float = _setting("ALERT_WEBHOOK_BACKOFF_S", 0.5)
    alert_repeat_window_s: float = _setting("ALERT_REPEAT_WINDOW_S", 3600.0)  # one delivery per window
    max_delivery_count: int = _setting("MAX_DELIVERY_COUNT", 5, low=1)
    # Azure. Unset locally; each one set switches its port to the Azure adapter.
    data_storage_connection: str = _setting("DATA_STORAGE_CONNECTION", "", secret=True)  # Azurite, dev
    data_storage_account_name: str = _setting("DATA_STORAGE_ACCOUNT_NAME", "")  # identity-based
    service_bus_connection: str = _setting("ServiceBusConnection", "", secret=True)  # dev
    service_bus_namespace: str = _setting("ServiceBusConnection__fullyQualifiedNamespace", "")  # identity
    sql_connection_string: str = _setting("SQL_CONNECTION_STRING", "", secret=True)  # SQL auth
    sql_server: str = _setting("SQL_SERVER", "")  # identity-based: <server>.database.windows.net ...
    sql_database: str = _setting("SQL_DATABASE", "")  # ... and the database name

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> Settings:
        env = os.environ if env is None else env
        values: dict[str, Any] = {}
        for f in dataclasses.fields(cls):
            raw = env.get(f.metadata["env"], "").strip()
            if f.metadata["secret"] and raw.startswith(_KEY_VAULT_REFERENCE):
                # The secret was never set, or the identity cannot read it: the app gets the
                # reference's literal text. Treat it as unset, loudly.
                logging.getLogger(__name__).error(
                    "setting %s is an unresolved Key Vault reference; treating it as unset", f.metadata["env"]
                )
                raw = ""
            if raw:
                values[f.name] = _parse(f, raw)
        if "usage_api_base_url" in values:
            values["usage_api_base_url"] = values["usage_api_base_url"].rstrip("/")
        return cls(**values)

    @classmethod
    def variables(cls) -> list[str]:
        """Every environment variable a setting is read from."""
        return [f.metadata["env"] for f in dataclasses.fields(cls)]

    def secrets(self) -> list[str]:
        """Values that must never appear in logs, alerts or errors."""
        return [
            value
            for f in dataclasses.fields(self)
            if f.metadata["secret"] and (value := getattr(self, f.name))
        ]


def _parse(f: dataclasses.Field[Any], raw: str) -> Any:
    default: Any = f.default  # every setting has one
    name, kind = f.metadata["env"], type(default)
    if kind is str:
        return raw
    if issubclass(kind, Path):
        return Path(raw)
    try:
        value = kind(raw)
    except ValueError:
        what = "a whole number" if kind is int else "a number"
        raise ValueError(f"setting {name} must be {what}, got {raw!r}") from None
    low, high = f.metadata["low"], f.metadata["high"]
    if low is not None:
        value = max(kind(low), value)
    if high is not None:
        value = min(kind(high), value)
    return value
