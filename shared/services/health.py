"""GET /api/health and `python -m shared.cli health`: every piece the app depends on, checked
from inside with the app's own identity and rights (contract section 8).

Each check runs on its own daemon thread and is waited for at most its own timeout
(`shared.domain.health.TIMEOUTS_S`), so one piece that hangs cannot hold the answer back
beyond its limit: it is reported as timed out and its thread is left to finish on its own.
At most MAX_RUNNING threads are alive at once, across requests: a piece that hangs every
time cannot pile up threads; a check with no thread free fails and says why.

Nothing is sent that a function would process: the probe blob goes to a container no event
subscription watches, the ledger probe to a partition nothing reads, the queues are peeked.
Every detail is redacted with the settings' secrets before it leaves.
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import os
import re
import threading
import time
import uuid
from collections.abc import Callable, Mapping
from datetime import timedelta

from shared.config import (
    SCHEDULE_SETTING,
    Settings,
    SettingsError,
    schedule_from_env,
    settings_of,
    unresolved_key_vault_references,
)
from shared.domain import ledger_records, names
from shared.domain.alerts import Alert
from shared.domain.health import (
    CHECKS,
    TIMEOUTS_S,
    CheckResult,
    HealthReport,
    one_line,
    report,
    spoken_duration,
    timed_out,
)
from shared.domain.text_limits import shortened
from shared.observability.redact import redact, secret_url_parts
from shared.ports import (
    ApiAsksToWait,
    ApiUnreachable,
    SchemaVersionMismatch,
    Services,
    TransientApiError,
    UsageApiError,
    WarehouseProbeFailed,
    WarehouseUnavailable,
)
from shared.services.ledger import put_record, read_record

log = logging.getLogger(__name__)

PROBE_KEY = "probe"  # the ledger probe's entry, in the health partition nothing else reads
MAX_RUNNING = 32  # check threads alive at once in this process, hung ones included
_slots = threading.BoundedSemaphore(MAX_RUNNING)


class CheckFailed(Exception):
    """A check's failure, worded as what to fix."""


# The settings each check's piece is built from: a bad one fails `settings` and leaves that
# check "not checked"; every other check runs.
CHECK_SETTINGS: dict[str, frozenset[str]] = {
    "blob_store": settings_of("storage"),
    "ledger": settings_of("storage"),
    "bus": settings_of("bus"),
    "warehouse": settings_of("warehouse"),
    "usage_api": settings_of("usage_api"),
    "alert_sink": settings_of("alert_sink"),
}
# Secrets that are Key Vault references on Azure, and the check that says when one did not resolve.
_KEY_VAULT_SECRETS = {"USAGE_API_KEY": "usage-api-key", "ALERT_WEBHOOK_URL": "alert-webhook-url"}


def check_health(
    load: Callable[[], Services],
    *,
    send_test_alert: bool = False,
    timeouts: Mapping[str, float] = TIMEOUTS_S,
    environ: Mapping[str, str] | None = None,
) -> HealthReport:
    """Run every check. `load` builds (or returns) the services from the settings that are
    valid; `environ` is where the settings were read from (None: the process environment).
    An invalid setting fails `settings` and only the checks whose piece is built from it; a
    Key Vault reference that did not resolve is said by the check of the piece that uses it."""
    env = os.environ if environ is None else environ
    _, problems = Settings.read_env(env)
    schedule = schedule_from_env(env)
    if schedule is not None:
        problems = {**problems, SCHEDULE_SETTING: schedule}
    unresolved = unresolved_key_vault_references(env)
    loaded: list[Services] = []

    def settings_check() -> str:
        try:
            services = load()
        except SettingsError:
            raise
        except Exception as exc:
            raise CheckFailed(
                f"the app cannot build its services from these settings ({_said(exc)}); correct the setting it names"
            ) from None
        loaded.append(services)
        return _settings_detail(services.settings, problems, unresolved)

    [first] = _run({"settings": settings_check}, timeouts, _raw_secrets(environ))
    if not loaded:
        skipped = "not checked: the settings do not load (see the settings check)"
        return report([first, *(CheckResult(n, False, skipped, 0) for n in CHECKS[1:])])
    services = loaded[0]
    checks: dict[str, Callable[[], str]] = {
        "blob_store": lambda: _blob_store(services),
        "ledger": lambda: _ledger(services),
        "bus": lambda: _bus(services, timeouts.get("bus", 10.0)),
        "warehouse": lambda: _warehouse(services),
        "usage_api": lambda: _usage_api(services, timeouts.get("usage_api", 15.0), unresolved),
        "alert_sink": lambda: _alert_sink(services, send_test_alert, unresolved),
    }
    skipped_results = []
    for name, needs in CHECK_SETTINGS.items():
        bad = sorted(needs & problems.keys())
        if bad:
            del checks[name]
            skipped_results.append(
                CheckResult(
                    name, False, f"not checked: {', '.join(bad)} not valid (see the settings check)", 0
                )
            )
    secrets = [*_secret_parts(services.settings.secrets()), *_raw_secrets(environ)]
    results = report([first, *skipped_results, *_run(checks, timeouts, secrets)])
    for check in results.failing():
        log.warning("health: %s failing: %s", check.name, check.detail)
    return results


def _secret_parts(secrets: list[str]) -> list[str]:
    """Each secret, and the parts of it that are secret alone: a webhook's path and query, a
    URL's user-info."""
    return [part for secret in secrets for part in (secret, *secret_url_parts(secret))]


def _raw_secrets(environ: Mapping[str, str] | None) -> list[str]:
    """The secret settings as written, for when they do not load."""
    return _secret_parts(Settings.secret_values(environ))


def _run(
    checks: Mapping[str, Callable[[], str]], timeouts: Mapping[str, float], secrets: list[str]
) -> list[CheckResult]:
    """Each check on its own thread, each waited for until its own deadline."""
    started = time.monotonic()
    slots = _slots  # the one each thread gives back to
    outcomes: dict[str, CheckResult] = {}
    finished: dict[str, threading.Event] = {}
    clean = lambda text: one_line(redact(text, secrets))  # noqa: E731

    def work(name: str, check: Callable[[], str], done: threading.Event) -> None:
        begun = time.monotonic()
        try:
            ok, detail = True, check()
        except CheckFailed as exc:
            ok, detail = False, str(exc)
        except SettingsError as exc:
            ok, detail = False, f"{exc}; correct it in the app settings (locally: the environment)"
        except Exception as exc:  # what no check foresaw: its kind and words
            log.debug("health: %s raised", name, exc_info=True)
            ok, detail = False, f"{name} failed: {_said(exc)}"
        finally:
            slots.release()
        outcomes[name] = CheckResult(name, ok, clean(detail), int((time.monotonic() - begun) * 1000))
        done.set()

    for name, check in checks.items():
        if not slots.acquire(blocking=False):
            outcomes[name] = CheckResult(
                name,
                False,
                f"not checked: all {MAX_RUNNING} check threads are busy, earlier checks still waiting on a"
                " piece that hangs (see the checks that timed out); try again later",
                0,
            )
            continue
        finished[name] = threading.Event()
        thread = threading.Thread(
            target=work, args=(name, check, finished[name]), name=f"health-{name}", daemon=True
        )
        thread.start()
    results = []
    for name in checks:
        limit = timeouts.get(name, 10.0)
        done = finished.get(name)
        if done is not None and not done.wait(max(0.0, started + limit - time.monotonic())):
            results.append(timed_out(name, limit))
            continue
        results.append(outcomes[name])
    return results


def _said(exc: BaseException, limit: int = 160) -> str:
    text = one_line(str(exc)) or "(no message)"
    return f"{exc.__class__.__name__}: {shortened(text, limit)}"


# --- the checks -----------------------------------------------------------------------------


def _settings_detail(settings: Settings, problems: Mapping[str, SettingsError], unresolved: list[str]) -> str:
    if problems:
        raise CheckFailed(
            "; ".join(str(p) for p in problems.values())
            + f"; correct {'it' if len(problems) == 1 else 'them'} in the app settings (locally: the"
            " environment); every check that does not need it ran"
        )
    others = [name for name in unresolved if name not in _KEY_VAULT_SECRETS]
    if others:
        raise CheckFailed(
            f"{', '.join(others)}: unresolved Key Vault reference, treated as unset; {_RESTART}"
        )
    storage = "Azure storage" if settings.uses_azure_storage() else f"the folder {settings.local_data_dir}"
    return f"loaded and valid; data in {storage}; rules {settings.rules().short()}"


_RESTART = (
    "the app reads Key Vault references when it starts: restart it (`az functionapp restart`, or"
    " `azd provision`, which restarts it) once the secret is set and its Key Vault Secrets User role has applied"
)


def _key_vault_detail(name: str) -> str:
    secret = _KEY_VAULT_SECRETS[name]
    return (
        f"{name} is an unresolved Key Vault reference: the {secret} secret is not in Key Vault or the app's"
        f" identity cannot read it; set it (`azd env set {name} ...` then `azd provision`, or"
        f" `az keyvault secret set --vault-name <KEY_VAULT_NAME> --name {secret} --value ...`); {_RESTART}"
    )


def _local_folder(services: Services) -> str | None:
    """For the local folder (not Azure storage): None when LOCAL_DATA_DIR is a folder; a note
    when it does not exist yet (nothing is created: the first run makes it); CheckFailed when
    no folder can be there."""
    settings = services.settings
    if settings.uses_azure_storage():
        return None
    folder = settings.local_data_dir
    if folder.is_dir():
        return None
    if folder.exists():
        raise CheckFailed(
            f"LOCAL_DATA_DIR {folder} is a file, not a folder; point LOCAL_DATA_DIR at a folder"
        )
    if any(parent.exists() and not parent.is_dir() for parent in folder.parents):
        raise CheckFailed(
            f"LOCAL_DATA_DIR {folder} cannot be created: part of its path is a file; point LOCAL_DATA_DIR at a folder"
        )
    return f"LOCAL_DATA_DIR {folder} does not exist yet; the first run creates it (nothing was written)"


def _blob_store(services: Services) -> str:
    note = _local_folder(services)
    if note:
        return note
    container, name = names.HEALTH_CONTAINER, f"{names.HEALTH_BLOB_PREFIX}probe-{uuid.uuid4().hex}.txt"
    shown = f"the probe blob {name} in the {container} container"
    payload = f"health probe {services.clock().isoformat()}".encode()
    fix = (
        "check DATA_STORAGE_ACCOUNT_NAME and that the app's identity has Storage Blob Data Contributor"
        " on the data account (a new role takes a few minutes)"
        if services.settings.uses_azure_storage()
        else f"check that {services.settings.local_data_dir} is a folder this user can write"
    )
    step = "write"
    try:
        services.blobs.put(container, name, payload)
        step = "read back"
        if services.blobs.get(container, name) != payload:
            raise CheckFailed(f"{shown} read back different bytes than were written; {fix}")
        step = "delete"
        services.blobs.delete(container, name)
    except Exception as exc:
        if step != "write":  # written but not deleted: leave no probe behind if it can be helped
            with contextlib.suppress(Exception):
                services.blobs.delete(container, name)
        if isinstance(exc, CheckFailed):
            raise
        raise CheckFailed(f"cannot {step} {shown} ({_said(exc)}); {fix}") from None
    return f"wrote, read back and deleted {shown}"


def _ledger(services: Services) -> str:
    note = _local_folder(services)
    if note:
        return note
    fix = (
        "check DATA_STORAGE_ACCOUNT_NAME and that the app's identity has Storage Table Data Contributor"
        f" on the data account and the table {names.LEDGER_TABLE} exists"
        if services.settings.uses_azure_storage()
        else f"check that {services.settings.local_data_dir / 'ledger.sqlite3'} is a ledger this user can write"
    )
    stamp = services.clock().isoformat()
    step = "read"
    try:
        read_record(services.ledger, ledger_records.HealthRecord, PROBE_KEY)
        step = "write"
        put_record(services.ledger, PROBE_KEY, ledger_records.HealthRecord(checked_at=stamp))
        step = "read back"
        back = read_record(services.ledger, ledger_records.HealthRecord, PROBE_KEY)
    except Exception as exc:
        raise CheckFailed(
            f"cannot {step} the probe entry {names.HEALTH}/{PROBE_KEY} ({_said(exc)}); {fix}"
        ) from None
    if back is None:
        raise CheckFailed(f"the probe entry {names.HEALTH}/probe was written but cannot be read back; {fix}")
    return f"read, wrote and read back the probe entry {names.HEALTH}/probe"


def _bus(services: Services, timeout_s: float) -> str:
    """Every queue peeked at once, each on its own thread, all within the check's time."""
    outcomes: dict[str, int | BaseException] = {}

    def peek(queue: str) -> None:
        try:
            outcomes[queue] = services.bus.peek(queue)
        except Exception as exc:
            outcomes[queue] = exc

    threads = [
        threading.Thread(target=peek, args=(q,), name=f"health-bus-{q}", daemon=True) for q in names.QUEUES
    ]
    for thread in threads:
        thread.start()
    deadline = time.monotonic() + max(0.1, timeout_s - 0.5)
    for thread in threads:
        thread.join(max(0.0, deadline - time.monotonic()))
    fix = (
        "check ServiceBusConnection__fullyQualifiedNamespace and that the app's identity has Azure Service Bus"
        " Data Receiver (a new role takes a few minutes)"
    )
    for queue in names.QUEUES:
        outcome = outcomes.get(queue)
        if outcome is None:
            raise CheckFailed(f"queue {queue} did not answer a peek within {timeout_s:g} s; {fix}")
        if isinstance(outcome, BaseException):
            raise CheckFailed(f"queue {queue} cannot be peeked ({_said(outcome)}); {fix}")
    waiting = [q for q in names.QUEUES if outcomes[q]]
    shown = f"; messages waiting on {', '.join(waiting)}" if waiting else "; all empty"
    return f"{len(names.QUEUES)} queues reachable (peeked, nothing received or sent){shown}"


def _warehouse(services: Services) -> str:
    settings = services.settings
    local = services.warehouse.dialect == "duckdb"
    if local and not settings.local_data_dir.is_dir():
        return f"no warehouse yet: the first run creates {settings.local_warehouse_file}"
    try:
        return services.warehouse.probe()
    except (WarehouseUnavailable, WarehouseProbeFailed, SchemaVersionMismatch) as exc:
        # The probe's own line names the cause and its fix (driver, firewall, login, schema version).
        raise CheckFailed(str(exc)) from None
    except Exception as exc:
        if local:
            raise CheckFailed(
                f"the local warehouse {settings.local_warehouse_file} cannot be read ({_said(exc)}); move it"
                " aside (the next run builds a new one) or restore it from a copy"
            ) from None
        raise CheckFailed(
            f"{_said(exc)}; check SQL_SERVER and SQL_DATABASE, that ODBC Driver 18 for SQL Server is installed,"
            " and that the app's database user exists with db_datareader and db_datawriter (`azd provision`)"
        ) from None


_HTTP_STATUS = re.compile(r"HTTP (\d{3})")


def _usage_api(services: Services, timeout_s: float, unresolved: list[str]) -> str:
    settings = services.settings
    if not settings.usage_api_base_url:
        raise CheckFailed(
            "USAGE_API_BASE_URL is not set: set it to the API's root, without /v2/usage (locally:"
            " start `python -m shared.cli simulator` and use the URL it prints); the daily fetch needs it"
        )
    if "USAGE_API_KEY" in unresolved:
        raise CheckFailed(_key_vault_detail("USAGE_API_KEY"))
    if not settings.usage_api_key:
        raise CheckFailed(
            "USAGE_API_KEY is not set, and the daily fetch needs it: on Azure `azd env set USAGE_API_KEY ...`"
            " then `azd provision` (or `az keyvault secret set --name usage-api-key ...` and restart the app);"
            " locally set USAGE_API_KEY"
        )
    # One request, one attempt, one record, answered within the check's own time.
    probe = dataclasses.replace(
        settings,
        usage_api_page_size=1,
        usage_api_max_attempts=1,
        usage_api_unreachable_s=0.0,
        usage_api_timeout_s=max(0.1, min(settings.usage_api_timeout_s, timeout_s - 1.0)),
        usage_api_max_rps=0.0,
        usage_api_concurrency=1,
    )
    day = services.clock().date() - timedelta(days=1)
    root = settings.usage_api_base_url
    try:
        page = services.usage_api(probe).fetch_page(day, 1)
    except ApiUnreachable as exc:
        said = str(exc)
        fix = "" if "USAGE_API_BASE_URL" in said else "; check USAGE_API_BASE_URL and that the API is up"
        raise CheckFailed(f"{said}{fix}") from None
    except UsageApiError as exc:
        status = _HTTP_STATUS.search(str(exc))
        code = int(status.group(1)) if status else 0
        if code in (401, 403):
            fix = "the API refused the key: check USAGE_API_KEY (on Azure: the usage-api-key secret, then restart the app)"
        elif code == 404:
            fix = "check USAGE_API_BASE_URL: the API's root, without /v2/usage"
        else:
            fix = "" if "USAGE_API_BASE_URL" in str(exc) else "check USAGE_API_BASE_URL"
        raise CheckFailed(f"{exc}; {fix}" if fix else str(exc)) from None
    except TransientApiError as exc:
        raise CheckFailed(f"the API at {root} answered but failed ({exc}); try again later") from None
    except ApiAsksToWait as exc:
        raise CheckFailed(
            f"the API at {root} answered but asks to wait {spoken_duration(exc.wait_s)} (Retry-After:"
            f" {exc.retry_after or f'{exc.wait_s:.0f}'}); try again then"
        ) from None
    total = f", {page.total_pages} pages of 1" if page.total_pages is not None else ""
    return f"{root} accepted the key: page 1 of {day} with page_size=1 ({len(page.records)} record{total})"


def _alert_sink(services: Services, send_test_alert: bool, unresolved: list[str]) -> str:
    try:
        sink = services.alert_sink(services.settings)
    except Exception as exc:
        raise CheckFailed(f"no alert sink ({_said(exc)}); check ALERT_WEBHOOK_URL") from None
    # A webhook whose secret is not set yet: alerts still go somewhere (the log), as docs/deploy.md says.
    note = (
        "; note: ALERT_WEBHOOK_URL is an unresolved Key Vault reference, treated as unset (set the"
        " alert-webhook-url secret and restart the app to get alerts by webhook)"
        if "ALERT_WEBHOOK_URL" in unresolved
        else ""
    )
    if not send_test_alert:
        return f"alerts go to {sink.target}{note}; add ?send_test_alert=true to send a test alert"
    alert = Alert(
        "warning",
        "health",
        "health_test_alert",
        "test alert from GET /api/health: alerts reach you; nothing is wrong",
    )
    try:
        sink.deliver(alert)
    except Exception as exc:
        raise CheckFailed(
            f"the test alert to {sink.target} failed ({_said(exc)}); check ALERT_WEBHOOK_URL"
            " (on Azure: the alert-webhook-url secret)"
        ) from None
    return f"test alert sent to {sink.target}{note}"
