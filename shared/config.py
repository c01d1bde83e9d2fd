"""Settings: environment variables with the same names as the Function App's app settings.

Each setting is declared once, as a field of `Settings`: its variable name, its default, and
the range it must be in. `Settings.from_env` reads them all the same way, and a value out of
range is refused with one line naming the setting and the range (contract section 6): a
clamped or ignored value would run the pipeline on rules nobody chose.
"""

from __future__ import annotations

import dataclasses
import math
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from shared.domain.rules import Rules

_KEY_VAULT_REFERENCE = "@Microsoft.KeyVault("


class SettingsError(ValueError):
    """A setting the pipeline cannot run with; the message names it and what it accepts."""


def _setting(
    env: str,
    default: Any,
    *,
    secret: bool = False,
    low: float | None = None,
    high: float | None = None,
) -> Any:
    """A field read from `env`. Secrets never appear in repr(); numbers must lie in [low, high]."""
    return dataclasses.field(
        default=default, repr=not secret, metadata={"env": env, "secret": secret, "low": low, "high": high}
    )


@dataclass(frozen=True)
class Settings:
    usage_api_base_url: str = _setting("USAGE_API_BASE_URL", "")
    usage_api_key: str = _setting("USAGE_API_KEY", "", secret=True)
    usage_api_timeout_s: float = _setting("USAGE_API_TIMEOUT_S", 30.0, low=0.1, high=600)
    usage_api_page_size: int = _setting("USAGE_API_PAGE_SIZE", 500, low=1, high=1000)
    # A stop for an API whose has_next_page never turns false, sized to real data: 100,000 pages
    # of 500 records is 50 million records a day, 50 times a million-company day.
    usage_api_max_pages: int = _setting("USAGE_API_MAX_PAGES", 100_000, low=1, high=1_000_000)
    usage_api_max_attempts: int = _setting("USAGE_API_MAX_ATTEMPTS", 6, low=1, high=20)
    usage_api_backoff_base_s: float = _setting("USAGE_API_BACKOFF_BASE_S", 1.0, low=0, high=60)
    usage_api_backoff_max_s: float = _setting("USAGE_API_BACKOFF_MAX_S", 60.0, low=0, high=3600)
    # How long a day's fetch keeps trying an API it cannot reach at all (refused, DNS, TLS,
    # timeouts) before it gives up with one alert, instead of every attempt of every delivery.
    usage_api_unreachable_s: float = _setting("USAGE_API_UNREACHABLE_S", 60.0, low=0, high=3600)
    # Pages fetched at once when the API reports total_pages.
    usage_api_concurrency: int = _setting("USAGE_API_CONCURRENCY", 8, low=1, high=64)
    # Client-side request rate cap; 0: none until the API says 429.
    usage_api_max_rps: float = _setting("USAGE_API_MAX_RPS", 0.0, low=0, high=10_000)
    # Finished days before yesterday that the daily run re-checks against the API (contract
    # section 1: corrections are picked up without anyone asking); 0 turns the re-check off.
    usage_api_lookback_days: int = _setting("USAGE_API_LOOKBACK_DAYS", 3, low=0, high=31)
    # The longest Retry-After waited for inside a fetch; a longer one reschedules the fetch.
    usage_api_max_wait_s: float = _setting("USAGE_API_MAX_WAIT_S", 300.0, low=0, high=3600)
    local_data_dir: Path = _setting("LOCAL_DATA_DIR", Path(".local"))  # noqa: RUF009 - a field()
    # DuckDB's memory for the local warehouse; past it, DuckDB spills to disk. Its own default
    # (80% of the machine) would let a large CRM drop look like it needs gigabytes.
    local_warehouse_memory_mb: int = _setting("LOCAL_WAREHOUSE_MEMORY_MB", 256, low=64, high=1_048_576)
    # The rule settings (contract section 3): recorded with every built day.
    churn_min_rolling_users: int = _setting("CHURN_MIN_ROLLING_USERS", 10, low=0, high=1_000_000_000)
    churn_max_contact_age_days: int = _setting("CHURN_MAX_CONTACT_AGE_DAYS", 30, low=0, high=36_500)
    crm_max_snapshot_age_days: int = _setting("CRM_MAX_SNAPSHOT_AGE_DAYS", 7, low=0, high=366)
    alert_webhook_url: str = _setting("ALERT_WEBHOOK_URL", "", secret=True)
    alert_webhook_backoff_s: float = _setting("ALERT_WEBHOOK_BACKOFF_S", 0.5, low=0, high=60)
    # One delivery of the same alert per window.
    alert_repeat_window_s: float = _setting("ALERT_REPEAT_WINDOW_S", 3600.0, low=0, high=7 * 86_400)
    max_delivery_count: int = _setting("MAX_DELIVERY_COUNT", 5, low=1, high=100)
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
        """Every setting from `env` (the process's environment by default); the first one that
        is not valid is refused with a `SettingsError` naming it."""
        settings, problems = cls.read_env(env)
        for problem in problems.values():
            raise problem
        return settings

    @classmethod
    def read_env(cls, env: Mapping[str, str] | None = None) -> tuple[Settings, dict[str, SettingsError]]:
        """The settings with each invalid one left at its default, and what is wrong with each
        of those, by variable name. For a function that must work whatever the other settings
        say (the alert function); it checks the ones it uses itself."""
        env = os.environ if env is None else env
        values: dict[str, Any] = {}
        problems: dict[str, SettingsError] = {}
        for f in dataclasses.fields(cls):
            raw = env.get(f.metadata["env"], "").strip()
            if f.metadata["secret"] and raw.startswith(_KEY_VAULT_REFERENCE):
                # The secret was never set, or the identity cannot read it: the app gets the
                # reference's literal text. Treated as unset; `unresolved_key_vault_references`
                # names it (the health check says it, and the services log it once logging is up).
                raw = ""
            if raw:
                try:
                    value = _parse(f, raw)
                    _check_range(f, value, shown=raw)  # named as the user wrote it
                except SettingsError as exc:
                    problems[f.metadata["env"]] = exc
                    continue
                values[f.name] = value
        if "usage_api_base_url" in values:
            values["usage_api_base_url"] = values["usage_api_base_url"].rstrip("/")
        return cls(**values), problems

    @classmethod
    def secret_values(cls, env: Mapping[str, str] | None = None) -> list[str]:
        """The secrets as set in `env`, valid or not: what logging redacts before any setting
        is checked (a webhook URL that is not a URL is still a secret)."""
        env = os.environ if env is None else env
        found = [
            raw
            for f in dataclasses.fields(cls)
            if f.metadata["secret"]
            and (raw := env.get(f.metadata["env"], "").strip())
            and not raw.startswith(_KEY_VAULT_REFERENCE)
        ]
        api = env.get(_field("usage_api_base_url").metadata["env"], "").strip()
        return found + ([api] if _has_user_info(api) else [])

    def __post_init__(self) -> None:
        # Here rather than in from_env: settings built in code are held to the same ranges.
        for f in dataclasses.fields(self):
            _check_range(f, getattr(self, f.name))
        for f in (_field("usage_api_base_url"), _field("alert_webhook_url")):
            url = getattr(self, f.name)
            problem = _url_problem(url) if url else None
            if problem:
                shown = "(not shown: a secret)" if f.metadata["secret"] else repr(url)
                raise SettingsError(
                    f"setting {f.metadata['env']} must be an http:// or https:// URL with a host, got {shown}"
                    f" ({problem})"
                )

    @classmethod
    def variables(cls) -> list[str]:
        """Every environment variable a setting is read from."""
        return [f.metadata["env"] for f in dataclasses.fields(cls)]

    def rules(self) -> Rules:
        """The rule settings in force: recorded with every day built under them."""
        return Rules(
            self.churn_min_rolling_users, self.churn_max_contact_age_days, self.crm_max_snapshot_age_days
        )

    @property
    def local_warehouse_file(self) -> Path:
        """The embedded DuckDB warehouse, when no SQL_* setting names Azure SQL."""
        return self.local_data_dir / "warehouse.duckdb"

    def uses_azure_storage(self) -> bool:
        """Blob and Table storage are Azure's (or Azurite's), not the local folder and SQLite."""
        return bool(self.data_storage_connection or self.data_storage_account_name)

    def secrets(self) -> list[str]:
        """Values that must never appear in logs, alerts or errors: the secret settings, and the
        API's URL when it carries a password (`https://user:pass@host`)."""
        found = [
            value
            for f in dataclasses.fields(self)
            if f.metadata["secret"] and (value := getattr(self, f.name))
        ]
        return found + ([self.usage_api_base_url] if _has_user_info(self.usage_api_base_url) else [])


_URL_SETTINGS = ("USAGE_API_BASE_URL", "ALERT_WEBHOOK_URL")

# Which settings each piece is built from (contract section 8: each function checks the settings
# it needs when it runs). A function or a health check needs the pieces it uses; a bad setting
# outside them does not stop it.
PIECES: dict[str, tuple[str, ...]] = {
    "storage": ("LOCAL_DATA_DIR", "DATA_STORAGE_CONNECTION", "DATA_STORAGE_ACCOUNT_NAME"),
    "bus": ("ServiceBusConnection", "ServiceBusConnection__fullyQualifiedNamespace", "MAX_DELIVERY_COUNT"),
    "warehouse": ("SQL_CONNECTION_STRING", "SQL_SERVER", "SQL_DATABASE", "LOCAL_WAREHOUSE_MEMORY_MB"),
    "usage_api": tuple(
        f.metadata["env"] for f in dataclasses.fields(Settings) if f.metadata["env"].startswith("USAGE_API_")
    ),
    "rules": ("CHURN_MIN_ROLLING_USERS", "CHURN_MAX_CONTACT_AGE_DAYS", "CRM_MAX_SNAPSHOT_AGE_DAYS"),
    # Raising an alert (queueing it, de-duplicating it) and delivering it.
    "alerts": ("ALERT_REPEAT_WINDOW_S",),
    "alert_sink": ("ALERT_WEBHOOK_URL", "ALERT_WEBHOOK_BACKOFF_S"),
}


def settings_of(*pieces: str) -> frozenset[str]:
    """The variables the given pieces are built from."""
    return frozenset(name for piece in pieces for name in PIECES[piece])


# The timer's schedule is read by the Functions host (a binding expression), not by Settings;
# an invalid one stops the daily fetch silently, so the health check validates it.
SCHEDULE_SETTING = "FETCH_SCHEDULE"
# NCRONTAB fields: second, minute, hour, day, month, day of week; names as the host accepts them.
_CRON_FIELDS = (
    ("second", 0, 59, ()),
    ("minute", 0, 59, ()),
    ("hour", 0, 23, ()),
    ("day", 1, 31, ()),
    ("month", 1, 12, ("jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec")),
    ("day of week", 0, 6, ("sun", "mon", "tue", "wed", "thu", "fri", "sat")),
)
_CRON_ITEM = re.compile(r"(\*|[0-9A-Za-z]+(?:-[0-9A-Za-z]+)?)(?:/([0-9]+))?")


def schedule_problem(expression: str) -> str | None:
    """What makes `expression` not a 6-field NCRONTAB schedule the Functions host runs
    ("0 30 2 * * *": second, minute, hour, day, month, day of week), or None."""
    fields = expression.split()
    if len(fields) != 6:
        return f"{len(fields)} fields, not 6: second minute hour day month day-of-week"
    for text, (what, low, high, words) in zip(fields, _CRON_FIELDS, strict=True):
        for item in text.split(","):
            match = _CRON_ITEM.fullmatch(item)
            if not match:
                return f"the {what} field {text!r} is not a number, range, list, step or *"
            if match.group(2) is not None and int(match.group(2)) == 0:
                return f"the {what} field {text!r} has a step of 0"
            if match.group(1) == "*":
                continue
            for bound in match.group(1).split("-"):
                value = (low + words.index(bound.lower())) if bound.lower() in words else None
                if value is None and bound.isdigit():
                    value = int(bound)
                if value is None or not low <= value <= high:
                    return f"the {what} field {text!r} is outside {low}-{high}"
    return None


def schedule_from_env(env: Mapping[str, str] | None = None) -> SettingsError | None:
    """What is wrong with FETCH_SCHEDULE, when it is set (on Azure it always is), or None."""
    env = os.environ if env is None else env
    raw = env.get(SCHEDULE_SETTING, "").strip()
    if env.get(SCHEDULE_SETTING) is None:
        return None
    problem = schedule_problem(raw) if raw else "empty"
    if problem:
        return SettingsError(
            f"setting {SCHEDULE_SETTING} must be a 6-field NCRONTAB schedule such as '0 30 2 * * *',"
            f" got {raw!r} ({problem}); until it is, the daily fetch never runs"
        )
    return None


def unresolved_key_vault_references(env: Mapping[str, str] | None = None) -> list[str]:
    """The secret settings whose value is still an `@Microsoft.KeyVault(...)` reference: the
    app's identity cannot read the secret, or it was never set (`from_env` treats them as unset)."""
    env = os.environ if env is None else env
    return [
        f.metadata["env"]
        for f in dataclasses.fields(Settings)
        if f.metadata["secret"] and env.get(f.metadata["env"], "").strip().startswith(_KEY_VAULT_REFERENCE)
    ]


def _has_user_info(url: str) -> bool:
    """Whether a URL carries user-info (`user:password@`) before its host."""
    return "@" in url.partition("://")[2].split("/", 1)[0].split("?", 1)[0].split("#", 1)[0]


def _url_problem(url: str) -> str | None:
    """What makes `url` unusable as an API or webhook root, or None: caught here, a malformed
    URL is one line when a function first needs it rather than minutes of retries ending in
    "InvalidURL"."""
    if not url.isascii() or any(c.isspace() or not c.isprintable() for c in url):
        return "spaces, control or non-ASCII characters"
    try:
        parts = urlsplit(url)
        port = parts.port  # raises for a port out of range or not a number
    except ValueError as exc:
        return str(exc)
    if parts.scheme.lower() not in ("http", "https"):
        return "the scheme must be http or https"
    if not parts.hostname:
        return "no host"
    if port == 0:
        return "port 0"
    return None


def _field(name: str) -> dataclasses.Field[Any]:
    return next(f for f in dataclasses.fields(Settings) if f.name == name)


# Numbers as people write them in a settings file, ASCII only: not 1_000, not "٣" (an Arabic-Indic
# three), not "nan" or "inf", which int() and float() would take.
_WHOLE = re.compile(r"-?[0-9]+")
_DECIMAL = re.compile(r"-?(?:[0-9]+(?:\.[0-9]*)?|\.[0-9]+)(?:[eE][-+]?[0-9]+)?")


def _parse(f: dataclasses.Field[Any], raw: str) -> Any:
    default: Any = f.default  # every setting has one
    name, kind = f.metadata["env"], type(default)
    if kind is str:
        if f.metadata["env"] in _URL_SETTINGS and (problem := _url_problem(raw)):
            shown = "(not shown: a secret)" if f.metadata["secret"] else repr(raw)
            raise SettingsError(
                f"setting {name} must be an http:// or https:// URL with a host, got {shown} ({problem})"
            )
        return raw
    if issubclass(kind, Path):
        return Path(raw).expanduser()  # "~/data" means what a shell would make of it
    if not (_WHOLE if kind is int else _DECIMAL).fullmatch(raw):
        raise SettingsError(f"setting {name} must be {_kind(kind)}{_range(f)}, got {raw!r}")
    return kind(raw)


def _check_range(f: dataclasses.Field[Any], value: Any, shown: str | None = None) -> None:
    low, high = f.metadata["low"], f.metadata["high"]
    if low is None and high is None:
        return
    finite = not isinstance(value, float) or math.isfinite(value)
    if not finite or (low is not None and value < low) or (high is not None and value > high):
        kind = type(f.default)
        got = repr(shown) if shown is not None else repr(value)
        raise SettingsError(f"setting {f.metadata['env']} must be {_kind(kind)}{_range(f)}, got {got}")


def _kind(kind: type) -> str:
    return "a whole number" if kind is int else "a number"


def _range(f: dataclasses.Field[Any]) -> str:
    low, high = f.metadata["low"], f.metadata["high"]
    if low is not None and high is not None:
        return f" from {_number(low)} to {_number(high)}"
    return f" of at least {_number(low)}" if low is not None else ""


def _number(value: float) -> str:
    return f"{int(value):,}" if value == int(value) else str(value)
