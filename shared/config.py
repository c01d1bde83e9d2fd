"""Settings: environment variables with the same names as the Function App's app settings.

Each setting is declared once, as a field of `Settings`: its variable name, its type and
default, what it accepts (a range, a URL), whether it is a secret, and a one-line description;
README's settings table is generated from these declarations (tests/settings_table.py) and a
test holds it to them. `Settings.from_env` reads them all the same way, and a value it does not
accept is refused with one line naming the setting and what it accepts (contract section 6): a
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
    description: str,
    *,
    secret: bool = False,
    low: float | None = None,
    high: float | None = None,
    url: bool = False,
    header: bool = False,
    root: bool = False,
) -> Any:
    """The one declaration of a setting: read from `env`, `default` when unset (its type is the
    setting's), what it is for in one line (README's settings table is generated from it), and
    what it accepts: a number in [low, high], an http(s) URL (`root`: one paths are added to,
    so no query or fragment), text an HTTP header can carry.
    Secrets never appear in repr()."""
    return dataclasses.field(
        default=default,
        repr=not secret,
        metadata={
            "env": env,
            "description": description,
            "secret": secret,
            "low": low,
            "high": high,
            "url": url,
            "header": header,
            "root": root,
        },
    )


@dataclass(frozen=True)
class Settings:
    usage_api_base_url: str = _setting(
        "USAGE_API_BASE_URL",
        "",
        "product API root; unset, `demo` starts a simulator and `simulator` starts one on its own",
        url=True,
        root=True,
    )
    usage_api_key: str = _setting("USAGE_API_KEY", "", "bearer token of the API", secret=True, header=True)
    usage_api_timeout_s: float = _setting(
        "USAGE_API_TIMEOUT_S", 30.0, "read timeout of one API request, seconds", low=0.1, high=600
    )
    usage_api_page_size: int = _setting(
        "USAGE_API_PAGE_SIZE", 500, "records per page asked for", low=1, high=1000
    )
    usage_api_max_pages: int = _setting(
        "USAGE_API_MAX_PAGES",
        100_000,
        "page cap for one day: stops an API whose `has_next_page` never turns false. 100,000 pages"
        " of 500 records is 50 million records a day, 50 times a million-company day",
        low=1,
        high=1_000_000,
    )
    usage_api_max_attempts: int = _setting(
        "USAGE_API_MAX_ATTEMPTS", 6, "attempts per page before the run fails", low=1, high=20
    )
    usage_api_backoff_base_s: float = _setting(
        "USAGE_API_BACKOFF_BASE_S",
        1.0,
        "exponential backoff between attempts: its base, seconds",
        low=0,
        high=60,
    )
    usage_api_backoff_max_s: float = _setting(
        "USAGE_API_BACKOFF_MAX_S",
        60.0,
        "exponential backoff between attempts: its cap, seconds",
        low=0,
        high=3600,
    )
    # One alert for an API that cannot be reached at all, instead of every attempt of every delivery.
    usage_api_unreachable_s: float = _setting(
        "USAGE_API_UNREACHABLE_S",
        60.0,
        "how long a page that gets no answer at all (refused, DNS, TLS, connect timeout) is tried;"
        " on the first page the run then fails with one alert instead of being redelivered",
        low=0,
        high=3600,
    )
    usage_api_concurrency: int = _setting(
        "USAGE_API_CONCURRENCY", 8, "pages fetched at once when the API reports `total_pages`", low=1, high=64
    )
    usage_api_max_rps: float = _setting(
        "USAGE_API_MAX_RPS",
        0.0,
        "cap on API requests per second of the process, over every day a lookback or backfill"
        " fetches (decimal; one limiter per process per API); 0: none, but a 429 still slows the"
        " fetch down",
        low=0,
        high=10_000,
    )
    # Contract section 1: corrections are picked up without anyone asking.
    usage_api_lookback_days: int = _setting(
        "USAGE_API_LOOKBACK_DAYS",
        3,
        "finished days before yesterday that the daily run (the timer, `run` without `--date`)"
        " re-checks against the API, if they were fetched before: a day whose pages differ from"
        " the last landed ones (by the manifest's checksums) is fetched again and rebuilt, one"
        " whose pages are equal is left untouched; a day never fetched, or whose last fetch"
        " failed, is fetched (once per run); 0: no re-check",
        low=0,
        high=31,
    )
    usage_api_max_wait_s: float = _setting(
        "USAGE_API_MAX_WAIT_S",
        300.0,
        "the longest `Retry-After` waited for inside a fetch; a longer one reschedules the fetch"
        " for that time instead; one longer than `MAX_RESCHEDULE_S` (7 days, a constant) fails"
        " the fetch instead",
        low=0,
        high=3600,
    )
    local_data_dir: Path = _setting(  # noqa: RUF009 - a field()
        "LOCAL_DATA_DIR", Path(".local"), "where the local host keeps everything"
    )
    # DuckDB's own default (80% of the machine) would let a large CRM drop look like it needs gigabytes.
    local_warehouse_memory_mb: int = _setting(
        "LOCAL_WAREHOUSE_MEMORY_MB",
        256,
        "memory DuckDB may use for the local warehouse; beyond it, it spills to disk where it can."
        " A CRM snapshot of 2,000,000 rows fits in 256, and so does a build of 1,000,000 companies"
        " a day: builds are sized to it (about 24,000 rows a MB: at 256, one day a round at a"
        " million companies, 29 at 100,000, never more than 31), so a backfill of any length"
        " builds. A load or a day that does not fit fails once with alert"
        " `warehouse_out_of_memory`, which names this setting; later messages do not try that day"
        " (or one about as large) again under the same setting, and `rebuild` builds it once the"
        " setting is higher",
        low=64,
        high=1_048_576,
    )
    # The rule settings (contract section 3): recorded with every built day.
    churn_min_rolling_users: int = _setting(
        "CHURN_MIN_ROLLING_USERS",
        10,
        "churn threshold, a rule: fewer rolling 7-day active users than this, without a recent contact,"
        " is a churn risk",
        low=0,
        high=1_000_000_000,
    )
    churn_max_contact_age_days: int = _setting(
        "CHURN_MAX_CONTACT_AGE_DAYS",
        30,
        "churn threshold, a rule: a last contact more than this many days ago is not recent",
        low=0,
        high=36_500,
    )
    crm_max_snapshot_age_days: int = _setting(
        "CRM_MAX_SNAPSHOT_AGE_DAYS",
        7,
        "effective snapshot age limit, a rule: a day uses the latest CRM snapshot at most this many"
        " days older than it",
        low=0,
        high=366,
    )
    alert_webhook_url: str = _setting(
        "ALERT_WEBHOOK_URL",
        "",
        "Teams/Slack-style webhook for alerts; unset, they go to `alerts.jsonl`",
        secret=True,
        url=True,
    )
    alert_webhook_backoff_s: float = _setting(
        "ALERT_WEBHOOK_BACKOFF_S", 0.5, "backoff base between webhook attempts, seconds", low=0, high=60
    )
    alert_repeat_window_s: float = _setting(
        "ALERT_REPEAT_WINDOW_S",
        3600.0,
        "the same alert is delivered once per window, seconds",
        low=0,
        high=7 * 86_400,
    )
    max_delivery_count: int = _setting(
        "MAX_DELIVERY_COUNT",
        5,
        "local bus deliveries before dead-lettering (Service Bus: the queue's `maxDeliveryCount`)",
        low=1,
        high=100,
    )
    # Azure. Unset locally; each one set switches its port to the Azure adapter.
    data_storage_connection: str = _setting(
        "DATA_STORAGE_CONNECTION",
        "",
        "Blob and Table storage by connection string (Azurite, development); set, they are Azure's",
        secret=True,
    )
    data_storage_account_name: str = _setting(
        "DATA_STORAGE_ACCOUNT_NAME", "", "Blob and Table storage by managed identity: the account's name"
    )
    service_bus_connection: str = _setting(
        "ServiceBusConnection", "", "Service Bus by connection string (development)", secret=True
    )
    service_bus_namespace: str = _setting(
        "ServiceBusConnection__fullyQualifiedNamespace",
        "",
        "Service Bus by managed identity: `<namespace>.servicebus.windows.net`",
    )
    sql_connection_string: str = _setting(
        "SQL_CONNECTION_STRING", "", "Azure SQL by connection string (SQL authentication)", secret=True
    )
    sql_server: str = _setting(
        "SQL_SERVER",
        "",
        "Azure SQL by managed identity: `<server>.database.windows.net`, with `SQL_DATABASE`",
    )
    sql_database: str = _setting("SQL_DATABASE", "", "the Azure SQL database's name, with `SQL_SERVER`")

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
            raw = _raw(env, f)
            if raw:
                try:
                    value = _parse(f, raw)
                    _check(f, value, shown=raw)  # named as the user wrote it
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
        return _secrets_among({f.name: _raw(env, f) for f in dataclasses.fields(cls)})

    def __post_init__(self) -> None:
        # As well as in read_env: settings built in code are held to the same rules.
        for f in dataclasses.fields(self):
            _check(f, getattr(self, f.name))

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
        return _secrets_among({f.name: getattr(self, f.name) for f in dataclasses.fields(self)})


def _raw(env: Mapping[str, str], f: dataclasses.Field[Any]) -> str:
    """The setting's text in `env`, "" when unset or when a secret is a Key Vault reference: the
    secret was never set, or the identity cannot read it, and the app gets the reference's
    literal text (`unresolved_key_vault_references` names it; the health check says it)."""
    raw = env.get(f.metadata["env"], "").strip()
    return "" if f.metadata["secret"] and raw.startswith(_KEY_VAULT_REFERENCE) else raw


def _secrets_among(values: Mapping[str, Any]) -> list[str]:
    """The secrets among the settings' `values` (by field name): the secret settings that are
    set, and the API's URL when it carries user-info."""
    found = [values[f.name] for f in dataclasses.fields(Settings) if f.metadata["secret"] and values[f.name]]
    user_info = _user_info(values["usage_api_base_url"])
    # Only the user-info is secret (and what basic auth makes of it): the host and path stay
    # readable, so a wrong path in an error is still shown.
    return found + ([f"http://{user_info}@"] if user_info else [])


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
SCHEDULE_DESCRIPTION = "NCRONTAB schedule of the daily timer, read by the Functions host (Azure)"
SCHEDULE_ACCEPTS = "a 6-field NCRONTAB schedule such as '0 30 2 * * *'"
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
            f"setting {SCHEDULE_SETTING} must be {SCHEDULE_ACCEPTS},"
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


def _user_info(url: str) -> str:
    """The user-info (`user:password`) a URL carries before its host, or "". Its authority ends
    at the first `/` only: a password holding `?` or `#` is all of it (cut there, its tail was
    shown in errors)."""
    authority = url.partition("://")[2].split("/", 1)[0]
    return authority.rpartition("@")[0]


def _shown_url(url: str) -> str:
    """A refused API root as an error shows it, without what may be a secret: never a query or
    fragment (a token), and an `@` anywhere but in the user-info's place (before the first `/`,
    `?` or `#`) hides everything after `://` (a password holding one of those, or a query's)."""
    scheme, sep, rest = url.partition("://")
    head = re.split(r"[/?#]", rest, maxsplit=1)[0]
    if rest.count("@") > head.count("@"):
        return f"{scheme}{sep}***"
    if "@" in head:
        rest = "***@" + rest.rpartition("@")[2]
    return re.sub(r"[?#].*", "?...", scheme + sep + rest, flags=re.S)


def _url_problem(url: str, root: bool = False) -> str | None:
    """What makes `url` unusable as an API root or a webhook, or None: caught here, a malformed
    URL is one line when a function first needs it rather than minutes of retries ending in
    "InvalidURL". A `root` has `/v2/usage` added to its path: a query or fragment there would
    swallow that path, and the API would be asked for something else without a word."""
    if not url.isascii() or any(c.isspace() or not c.isprintable() for c in url):
        return "spaces, control or non-ASCII characters"
    if root and ("?" in url or "#" in url):
        return _QUERY + (f"; {_ENCODE_PASSWORD}" if "@" in url else "")
    if root and "@" in url.partition("://")[2].partition("/")[2]:
        return f"an @ in the path; {_ENCODE_PASSWORD}"
    if any(c in _user_info(url) for c in "?#"):
        return _ENCODE_PASSWORD
    try:
        parts = urlsplit(url)
        port = parts.port  # raises for a port out of range or not a number
    except ValueError as exc:
        if "@" not in url:
            return str(exc)
        # Its text may quote a piece of a password holding a `/`, taken for the port: the error
        # is the host's only when the URL without its user-info has it too.
        scheme, _, rest = url.partition("://")
        try:
            _ = urlsplit(f"{scheme}://user@{rest.rpartition('@')[2]}").port
        except ValueError as without_user_info:
            return str(without_user_info)
        return _ENCODE_PASSWORD
    if parts.scheme.lower() not in ("http", "https"):
        return "the scheme must be http or https"
    if not parts.hostname:
        return "no host"
    if port == 0:
        return "port 0"
    return None


# Numbers as people write them in a settings file, ASCII only: not 1_000, not "٣" (an Arabic-Indic
# three), not "nan" or "inf", which int() and float() would take.
_WHOLE = re.compile(r"-?[0-9]+")
_QUERY = "a query or fragment: the API's paths are added to this root"
_ENCODE_PASSWORD = "a user name or password holding /, ? or # must be percent-encoded"
_HEADER_UNSAFE = re.compile(r"[\x00-\x1f\x7f-\x9f]|[^\x00-\xff]")
_DECIMAL = re.compile(r"-?(?:[0-9]+(?:\.[0-9]*)?|\.[0-9]+)(?:[eE][-+]?[0-9]+)?")


def _parse(f: dataclasses.Field[Any], raw: str) -> Any:
    default: Any = f.default  # every setting has one
    name, kind = f.metadata["env"], type(default)
    if kind is str:
        return raw
    if issubclass(kind, Path):
        try:
            return Path(raw).expanduser()  # "~/data" means what a shell would make of it
        except RuntimeError:  # "~nosuchuser/x": no such user, no home to expand to
            raise SettingsError(
                f"setting {name} must be {accepts(f)}, got {raw!r} (no such home folder)"
            ) from None
    if not (_WHOLE if kind is int else _DECIMAL).fullmatch(raw):
        raise SettingsError(f"setting {name} must be {accepts(f)}, got {raw!r}")
    return kind(raw)


def _check(f: dataclasses.Field[Any], value: Any, shown: str | None = None) -> None:
    """Refuse a number out of its range or a URL that is not one, the same way whether it came
    from the environment (`shown`: as the user wrote it) or from code."""
    if f.metadata["url"]:
        problem = _url_problem(value, root=f.metadata["root"]) if value else None
        if problem is None:
            return
        detail = f" ({problem})"
        if f.metadata["root"]:
            shown = _shown_url(value if shown is None else shown)
    elif f.metadata["header"]:
        if not _HEADER_UNSAFE.search(value):
            return
        # Sent as is, a newline or a character outside Latin-1 fails inside `requests` with a
        # message quoting the header, where pieces of the key get past the redaction.
        detail = " (it holds a control character or one outside Latin-1)"
    elif _in_range(f, value):
        return
    else:
        detail = ""
    got = "(not shown: a secret)" if f.metadata["secret"] else repr(value if shown is None else shown)
    raise SettingsError(f"setting {f.metadata['env']} must be {accepts(f)}, got {got}{detail}")


def _in_range(f: dataclasses.Field[Any], value: Any) -> bool:
    low, high = f.metadata["low"], f.metadata["high"]
    if low is None and high is None:
        return True
    finite = not isinstance(value, float) or math.isfinite(value)
    return finite and (low is None or value >= low) and (high is None or value <= high)


def accepts(f: dataclasses.Field[Any]) -> str:
    """What the setting accepts, as its error message and README's settings table say it."""
    if f.metadata["url"]:
        return "an http:// or https:// URL with a host" + (
            ", no query or fragment" if f.metadata["root"] else ""
        )
    if f.metadata["header"]:
        return "text an HTTP header can carry (Latin-1, no control characters)"
    kind = type(f.default)
    if kind in (int, float):
        return f"{_kind(kind)}{_range(f)}"
    return "a folder path (`~` expands)" if issubclass(kind, Path) else "any text"


def _kind(kind: type) -> str:
    return "a whole number" if kind is int else "a number"


def _range(f: dataclasses.Field[Any]) -> str:
    low, high = f.metadata["low"], f.metadata["high"]
    if low is not None and high is not None:
        return f" from {_number(low)} to {_number(high)}"
    return f" of at least {_number(low)}" if low is not None else ""


def _number(value: float) -> str:
    return f"{int(value):,}" if value == int(value) else str(value)
