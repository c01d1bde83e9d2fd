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

from shared.config import Settings, SettingsError, unresolved_key_vault_references
from shared.domain import names
from shared.domain.alerts import Alert
from shared.domain.health import CHECKS, TIMEOUTS_S, CheckResult, HealthReport, one_line, report, timed_out
from shared.observability.redact import redact, secret_url_parts
from shared.ports import (
    ApiAsksToWait,
    ApiUnreachable,
    Services,
    TransientApiError,
    UsageApiError,
    WarehouseUnavailable,
)

log = logging.getLogger(__name__)

MAX_RUNNING = 32  # check threads alive at once in this process, hung ones included
_slots = threading.BoundedSemaphore(MAX_RUNNING)


class CheckFailed(Exception):
    """A check's failure, worded as what to fix."""


def check_health(
    load: Callable[[], Services],
    *,
    send_test_alert: bool = False,
    timeouts: Mapping[str, float] = TIMEOUTS_S,
    environ: Mapping[str, str] | None = None,
) -> HealthReport:
    """Run every check. `load` builds (or returns) the services; a setting that does not load
    fails `settings` and leaves the others unchecked. `environ`: where the settings were read
    from (None: the process environment), to find unresolved Key Vault references."""
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
        return _settings_detail(services.settings, environ)

    [first] = _run({"settings": settings_check}, timeouts, _raw_secrets(environ))
    if not loaded or not first.ok:
        skipped = "not checked: the settings do not load (see the settings check)"
        return report([first, *(CheckResult(n, False, skipped, 0) for n in CHECKS[1:])])
    services = loaded[0]
    checks: dict[str, Callable[[], str]] = {
        "blob_store": lambda: _blob_store(services),
        "ledger": lambda: _ledger(services),
        "bus": lambda: _bus(services),
        "warehouse": lambda: _warehouse(services),
        "usage_api": lambda: _usage_api(services, timeouts.get("usage_api", 15.0)),
        "alert_sink": lambda: _alert_sink(services, send_test_alert),
    }
    results = report([first, *_run(checks, timeouts, _secrets(services.settings))])
    for check in results.failing():
        log.warning("health: %s failing: %s", check.name, check.detail)
    return results


def _secrets(settings: Settings) -> list[str]:
    """The settings' secrets, and the parts of them that are secret alone: a webhook's path
    and query, a URL's user-info."""
    found = [*settings.secrets(), *secret_url_parts(settings.alert_webhook_url)]
    if "@" in settings.usage_api_base_url:
        found.append(settings.usage_api_base_url.split("://", 1)[-1].rpartition("@")[0])
    return [s for s in found if s]


def _raw_secrets(environ: Mapping[str, str] | None) -> list[str]:
    """The secret settings as written, for when they do not load."""
    env = os.environ if environ is None else environ
    values = [
        env.get(f.metadata["env"], "").strip() for f in dataclasses.fields(Settings) if f.metadata["secret"]
    ]
    return [part for v in values if v for part in (v, *secret_url_parts(v))]


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
    text = text if len(text) <= limit else text[: limit - 3] + "..."
    return f"{exc.__class__.__name__}: {text}"


# --- the checks -----------------------------------------------------------------------------


def _settings_detail(settings: Settings, environ: Mapping[str, str] | None) -> str:
    unresolved = unresolved_key_vault_references(environ)
    if unresolved:
        raise CheckFailed(
            f"{', '.join(unresolved)}: unresolved Key Vault reference; the secret is not set or the app's"
            " identity cannot read it (it needs Key Vault Secrets User; a new role takes a few minutes)"
        )
    storage = "Azure storage" if settings.uses_azure_storage() else f"the folder {settings.local_data_dir}"
    return f"loaded and valid; data in {storage}; rules {settings.rules().short()}"


def _blob_store(services: Services) -> str:
    container, name = names.HEALTH_CONTAINER, f"{names.HEALTH_BLOB_PREFIX}probe-{uuid.uuid4().hex}.txt"
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
            raise CheckFailed(f"{container}/{name} read back different bytes than were written; {fix}")
        step = "delete"
        services.blobs.delete(container, name)
    except Exception as exc:
        if step != "write":  # written but not deleted: leave no probe behind if it can be helped
            with contextlib.suppress(Exception):
                services.blobs.delete(container, name)
        if isinstance(exc, CheckFailed):
            raise
        raise CheckFailed(f"cannot {step} {container}/{name} ({_said(exc)}); {fix}") from None
    return f"wrote, read back and deleted {container}/{name}"


def _ledger(services: Services) -> str:
    fix = (
        "check DATA_STORAGE_ACCOUNT_NAME and that the app's identity has Storage Table Data Contributor"
        f" on the data account and the table {names.LEDGER_TABLE} exists"
        if services.settings.uses_azure_storage()
        else f"check that {services.settings.local_data_dir / 'ledger.sqlite3'} is a ledger this user can write"
    )
    stamp = services.clock().isoformat()
    step = "read"
    try:
        services.ledger.get(names.HEALTH, "probe")
        step = "write"
        services.ledger.put(names.HEALTH, "probe", {"checked_at": stamp})
        step = "read back"
        back = services.ledger.get(names.HEALTH, "probe")
    except Exception as exc:
        raise CheckFailed(
            f"cannot {step} the probe entry {names.HEALTH}/probe ({_said(exc)}); {fix}"
        ) from None
    if back is None:
        raise CheckFailed(f"the probe entry {names.HEALTH}/probe was written but cannot be read back; {fix}")
    return f"read, wrote and read back the probe entry {names.HEALTH}/probe"


def _bus(services: Services) -> str:
    waiting = []
    for queue in names.QUEUES:
        try:
            if services.bus.peek(queue):
                waiting.append(queue)
        except Exception as exc:
            raise CheckFailed(
                f"queue {queue} cannot be peeked ({_said(exc)}); check ServiceBusConnection__fullyQualifiedNamespace"
                " and that the app's identity has Azure Service Bus Data Receiver (a new role takes a few minutes)"
            ) from None
    shown = f"; messages waiting on {', '.join(waiting)}" if waiting else "; all empty"
    return f"{len(names.QUEUES)} queues reachable (peeked, nothing received or sent){shown}"


def _warehouse(services: Services) -> str:
    try:
        return services.warehouse.probe()
    except WarehouseUnavailable as exc:
        raise CheckFailed(str(exc)) from None
    except Exception as exc:
        settings = services.settings
        if services.warehouse.dialect == "duckdb":
            fix = (
                f"the local warehouse {settings.local_warehouse_file} cannot be read; move it aside"
                " (the next run builds a new one) or restore it from a copy"
            )
        else:
            fix = (
                "check SQL_SERVER and SQL_DATABASE, that ODBC Driver 18 for SQL Server is installed, and that the"
                " app's database user exists with db_datareader and db_datawriter (the post-provision hook"
                " makes it); apply the schema with `python -m shared.cli init-db` as an administrator"
            )
        raise CheckFailed(f"{fix} ({_said(exc)})") from None


_HTTP_STATUS = re.compile(r"HTTP (\d{3})")


def _usage_api(services: Services, timeout_s: float) -> str:
    settings = services.settings
    if not settings.usage_api_base_url:
        raise CheckFailed(
            "USAGE_API_BASE_URL is not set: set it to the API's root, without /v2/usage (locally:"
            " start `python -m shared.cli simulator` and use the URL it prints)"
        )
    if not settings.usage_api_key:
        raise CheckFailed(
            "USAGE_API_KEY is not set: set it (on Azure: the usage-api-key secret in Key Vault)"
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
        raise CheckFailed(f"{exc}; check USAGE_API_BASE_URL and that the API is up") from None
    except UsageApiError as exc:
        status = _HTTP_STATUS.search(str(exc))
        code = int(status.group(1)) if status else 0
        if code in (401, 403):
            fix = "the API refused the key: check USAGE_API_KEY (on Azure: the usage-api-key secret)"
        elif code == 404:
            fix = "check USAGE_API_BASE_URL: the API's root, without /v2/usage"
        else:
            fix = "check USAGE_API_BASE_URL"
        raise CheckFailed(f"{fix} ({exc})") from None
    except TransientApiError as exc:
        raise CheckFailed(f"the API at {root} answered but failed ({exc}); try again later") from None
    except ApiAsksToWait as exc:
        raise CheckFailed(
            f"the API at {root} answered but asks to wait {exc.wait_s:.0f} s (Retry-After); try again then"
        ) from None
    total = f", {page.total_pages} pages of 1" if page.total_pages is not None else ""
    return f"{root} accepted the key: page 1 of {day} with page_size=1 ({len(page.records)} record{total})"


def _alert_sink(services: Services, send_test_alert: bool) -> str:
    try:
        sink = services.alert_sink(services.settings)
    except Exception as exc:
        raise CheckFailed(f"no alert sink ({_said(exc)}); check ALERT_WEBHOOK_URL") from None
    if not send_test_alert:
        return f"alerts go to {sink.target}; add ?send_test_alert=true to send a test alert"
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
    return f"test alert sent to {sink.target}"
