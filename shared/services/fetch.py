"""Fetch one day of product usage into the `raw` container: pages as received, then a manifest.

The manifest is written last; its creation is what starts staging. A run cut off part way is
resumed by the next request for the same day: same run id, pages already landed are read back
from the store instead of being fetched again.

When page 1 reports `total_pages`, pages 2..total_pages are fetched by a small thread pool
(USAGE_API_CONCURRENCY); otherwise, and after that batch if the day grew, page by page while
`has_next_page` says so. Once landed, a page is kept only as `LandedPage` metadata, so memory
does not grow with the day.
"""

from __future__ import annotations

import contextvars
import dataclasses
import hashlib
import itertools
import json
import logging
import threading
import uuid
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor, wait
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from typing import Any, Literal

from shared.domain import blob_events, ledger_records, names
from shared.domain.alerts import Alert
from shared.domain.day_digest import DIGEST_KIND, day_digest, page_digest
from shared.domain.fetch_decision import NEVER_FETCHED, RETRIED, FetchDecision, decide_fetch
from shared.domain.usage_page import Page, parse_page
from shared.domain.wording import counted
from shared.observability.context import bind
from shared.observability.redact import public_url
from shared.ports import (
    ApiAsksToWait,
    ApiUnreachable,
    BlobNotFound,
    OutgoingMessage,
    Services,
    TransientApiError,
    UsageApi,
    UsageApiError,
)
from shared.services.alerts import raise_alert
from shared.services.ledger import put_record, read_record, update_entry

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class FetchOutcome:
    status: Literal["fetched", "already-fetched", "failed", "unchanged", "changed", "skipped", "rescheduled"]
    run_id: str
    pages: int = 0
    records: int = 0
    pages_reused: int = 0
    message: str = ""


@dataclass(frozen=True)
class LandedPage:
    """What the manifest needs of a landed page. The body and records are not kept: they are in
    the store, and a day of them need not fit in memory."""

    number: int
    blob: str
    records: int
    bytes: int
    sha256: str
    has_next_page: bool
    total_pages: int | None
    reused: bool  # read back from an earlier attempt of this run, not fetched
    records_digest: int | None  # day_digest's part of this page: its records, whatever their order

    @classmethod
    def of(cls, blob: str, page: Page, *, reused: bool, day: date) -> LandedPage:
        return cls(
            number=page.number,
            blob=blob,
            records=len(page.records),
            bytes=len(page.body),
            sha256=hashlib.sha256(page.body).hexdigest(),
            has_next_page=page.has_next_page,
            total_pages=page.total_pages,
            reused=reused,
            records_digest=page_digest(page.records, day.isoformat()),
        )


def new_run_id(kind: str, clock_now: datetime) -> str:
    return f"{kind}-{clock_now:%Y%m%dT%H%M%S}-{uuid.uuid4().hex[:6]}"


def fetch_day(
    services: Services,
    day: date,
    *,
    force: bool = False,
    recheck: bool = False,
    daily: bool = False,
    client: UsageApi | None = None,
) -> FetchOutcome:
    """Do what `decide_fetch` says for `day`: fetch it, resume a cut-off run, re-announce its
    manifest, re-check it against the API (`recheck`: the lookback), or nothing.

    Permanent API errors fail the run with an alert and return; transient ones that outlast the
    retries raise, so the message is redelivered and finally dead-lettered to `alerts`.
    """
    key = day.isoformat()
    entry = services.ledger.get(names.FETCH, key)
    state = dict(entry.data) if entry else {}
    manifest = state.get("manifest")
    decision = decide_fetch(
        state or None,
        force=force,
        recheck=recheck,
        daily=daily,
        manifest_exists=isinstance(manifest, str) and services.blobs.exists(names.RAW_CONTAINER, manifest),
        now=services.clock(),
    )
    if decision.action == "skip":
        return FetchOutcome(
            "skipped", state.get("run_id", ""), message=f"{key} not re-checked: {decision.reason}"
        )
    if decision.action == "re-announce":
        _announce_manifest(services, state["manifest"])
        return FetchOutcome(
            "already-fetched",
            state["run_id"],
            state.get("pages", 0),
            state.get("records", 0),
            message=f"{key} already fetched by {state['run_id']}; re-announced its manifest",
        )
    checking = decision.action == "re-check"
    resuming = decision.action == "resume"
    force = decision.force
    run_id, state, last = _start_run(services, key, state, decision)
    held = HeldPages(services) if checking else None
    bind(run_id=run_id)

    budget = retry_budget_s(services)
    spent = float(state.get("retry_s") or 0.0) if resuming else 0.0
    requests_before = int(state.get("requests") or 0) if resuming else 0
    try:
        _not_known_unreachable(services, key)
        client = client or services.usage_api(services.settings)
        client.retry_budget_s = max(0.0, budget - spent)
        client.waited_s = float(state.get("waited_s") or 0.0) if resuming else 0.0
        resuming = _one_page_size(services, key, state, client, resuming=resuming, checking=checking)
        pages = _land_or_give_up(
            services, client, day, run_id, state, resuming=resuming, previous=last.pages, held=held
        )
    except ApiAsksToWait as exc:
        return _ask_again_later(services, day, state, run_id, exc, force=force, recheck=checking)
    except TransientApiError as exc:
        requests = requests_before + (client.attempts if client else 0)
        spent += client.retry_s if client else 0.0
        return _redeliver_or_fail(
            services,
            key,
            state,
            run_id,
            exc,
            requests,
            spent,
            budget=budget,
            checking=checking,
            waited=client.waited_s if client else 0.0,
        )
    except UsageApiError as exc:
        return _failed(services, key, state, run_id, str(exc), checking=checking)
    except KeyboardInterrupt:  # Ctrl-C, or kill / hangup, which the CLI turns into one
        if not checking:  # a re-check holds no claim: the day stays as last fetched
            _let_go(services, key, state)
        raise

    if held is not None:
        if _same_day(pages, last):
            return _unchanged(services, key, state, pages)  # what was held is dropped
        held.land()
    requests = requests_before + client.attempts  # every HTTP request of the run, retries included
    return _complete(
        services, day, state, run_id, pages, client.page_size, requests, force=force, checking=checking
    )


def _start_run(
    services: Services, key: str, state: dict[str, Any], decision: FetchDecision
) -> tuple[str, dict[str, Any], LastLanding]:
    """The run a fetch, a resume or a re-check goes on as: its id, the day's ledger state, and
    (for a re-check) the pages last landed, to compare with."""
    if decision.action == "re-check":
        # A re-check is a fetch under a new run id whose pages equal to the last landed ones are
        # not landed again: the ledger stays `complete` meanwhile, and nothing is written unless
        # a page differs.
        return new_run_id("fetch", services.clock()), state, _last_landing(services, str(state["manifest"]))
    if decision.action == "resume":
        state = {
            **{k: v for k, v in state.items() if k not in (*WAIT_FIELDS, "interrupted_at")},
            "status": "running",
            "lease_until": _lease_until(services),
            **heartbeat(services),
        }
        services.ledger.put(names.FETCH, key, state)
        return str(decision.run_id), state, LastLanding()
    run_id = new_run_id("fetch", services.clock())
    return run_id, _new_run(services, key, run_id, decision.force, note=decision.reason), LastLanding()


def _one_page_size(
    services: Services, key: str, state: dict[str, Any], client: UsageApi, *, resuming: bool, checking: bool
) -> bool:
    """Every page of a run is asked at the page size the run started with, whatever
    USAGE_API_PAGE_SIZE says now: pages 1-8 of 10 records then page 9 of 100 would skip records
    81-800. Returns whether the pages an earlier attempt landed may be reused: not when that
    attempt did not record its page size (they are fetched again, at today's size)."""
    if checking:
        return resuming  # a re-check lands under a run of its own, never resumed
    recorded = state.get(PAGE_SIZE)
    if resuming and isinstance(recorded, int) and recorded > 0:
        client.page_size = recorded
        return True
    state[PAGE_SIZE] = client.page_size
    services.ledger.put(names.FETCH, key, state)
    return False


PAGE_SIZE = "page_size"  # the ledger field: the page size a run asks every one of its pages at


def _land_or_give_up(
    services: Services,
    client: UsageApi,
    day: date,
    run_id: str,
    state: dict[str, Any],
    *,
    resuming: bool,
    previous: dict[int, tuple[str, str]],
    held: HeldPages | None,
) -> list[LandedPage]:
    """`_land_pages`, except that an API that answers nothing at all fails the run at once."""
    key = day.isoformat()
    try:
        return _land_pages(
            services,
            client,
            day,
            run_id,
            resuming=resuming,
            previous=previous,
            alive=None if held is not None else _keep_lease(services, key, state),
            put=held.put if held is not None else None,
        )
    except ApiUnreachable as exc:
        if exc.page != 1:
            raise
        # Nothing answered at all: fail now, with one alert, instead of redelivering; the
        # next days of a backfill fail at once instead of trying the same dead API again.
        _remember_unreachable(services, key, str(exc))
        raise UsageApiError(f"{exc}; replay the day once it answers") from None


def _redeliver_or_fail(
    services: Services,
    key: str,
    state: dict[str, Any],
    run_id: str,
    exc: TransientApiError,
    requests: int,
    spent: float,
    *,
    budget: float,
    checking: bool,
    waited: float = 0.0,
) -> FetchOutcome:
    """A transient error that outlasted the client's retries: raised on (redelivered) while the
    fetch's retry budget lasts, else the run fails."""
    # Attempts: this one and the earlier ones of the run that ended the same way (deliveries).
    tries = (0 if checking else int(state.get("attempts") or 0)) + 1
    tally = (
        f"{counted(tries, 'attempt')} of this fetch made {counted(requests, 'HTTP request')} in all"
        f"{_retries_included(tries, requests)}; {_seconds(spent)} s spent on failed requests and backoff"
    )
    state = (
        {
            **state,
            "requests": requests,
            "retry_s": round(spent, 3),
            "waited_s": round(waited, 3),
            "attempts": tries,
        }
        if not checking
        else state
    )
    if spent < budget:
        # Raised on, so the request is redelivered; the ledger says why the run is unfinished.
        error = "last_check_error" if checking else "last_error"
        services.ledger.put(names.FETCH, key, {**state, error: f"{exc} ({tally})"})
        raise TransientApiError(f"{exc} ({tally})", exc.retry_after_s) from None
    # The retry budget of the whole fetch (all its deliveries together) is spent: fail now,
    # once, instead of being redelivered for minutes more.
    return _failed(
        services,
        key,
        state,
        run_id,
        f"{exc} ({tally}; the retry budget, USAGE_API_MAX_ATTEMPTS x USAGE_API_TIMEOUT_S ="
        f" {budget:g} s, is spent); replay the day once the API answers normally",
        checking=checking,
    )


def _retries_included(tries: int, requests: int) -> str:
    """What the request count holds: no more requests than attempts means each attempt made
    one request, the one that failed, and none was retried."""
    return ", retries included" if requests > tries else ""


def _seconds(spent: float) -> str:
    """Seconds as precisely as the retry budget beside them is said (a budget of 0.2 s)."""
    return f"{spent:.1f}" if spent < 10 else f"{spent:.0f}"


def _unchanged(services: Services, key: str, state: dict[str, Any], pages: list[LandedPage]) -> FetchOutcome:
    """A re-check that found every page as last landed: only the ledger says it was checked."""
    records = sum(p.records for p in pages)
    services.ledger.put(
        names.FETCH,
        key,
        {
            **{k: v for k, v in state.items() if k not in ("last_check_error", *WAIT_FIELDS)},
            **_checked(services, "unchanged"),
        },
    )
    log.info("re-checked %s against the API: unchanged (%d pages, %d records)", key, len(pages), records)
    return FetchOutcome(
        "unchanged", str(state["run_id"]), len(pages), records, message=f"{key} re-checked: unchanged"
    )


def _complete(
    services: Services,
    day: date,
    state: dict[str, Any],
    run_id: str,
    pages: list[LandedPage],
    page_size: int,
    requests: int,
    *,
    force: bool,
    checking: bool,
) -> FetchOutcome:
    """Every page landed: write the run's manifest, then mark the day complete in the ledger."""
    key = day.isoformat()
    records = sum(p.records for p in pages)
    # Orders re-fetches of the day: the ledger's count of its runs, never the clock (which may be
    # stepped back); fetched_at is only said. A re-check that found a change is a run of its own.
    generation = int(state.get("generation") or 0) + (1 if checking else 0)
    manifest = {
        "activity_date": key,
        "run_id": run_id,
        "force": force,
        "generation": generation,
        "fetched_at": services.clock().isoformat(timespec="microseconds"),
        "page_size": page_size,
        "total_pages_reported": pages[0].total_pages if pages else None,
        "record_count": records,
        **_digest_fields(pages),
        "pages": [
            # A re-check's unchanged page keeps the blob it was landed as (same bytes, same sha256).
            {"page": p.number, "blob": p.blob, "records": p.records, "bytes": p.bytes, "sha256": p.sha256}
            for p in pages  # in page order, whatever order they were landed in
        ],
    }
    reused = sum(p.reused for p in pages)
    manifest_name = names.manifest_blob(day, run_id)
    # Manifest first, ledger second: if we die in between, the next request resumes this run
    # (every page is landed by then), rewrites the manifest and so announces it again.
    services.blobs.put(names.RAW_CONTAINER, manifest_name, json.dumps(manifest, indent=1).encode())
    done = {
        **{
            k: v
            for k, v in state.items()
            if k
            not in (
                "last_error",
                "last_check_error",
                "lease_until",
                "waited_s",
                "interrupted_at",
                *WAIT_FIELDS,
            )
        },
        **(_checked(services, "changed") if checking else {}),
        "run_id": run_id,
        "status": "complete",
        "force": force,
        "generation": generation,
        "manifest": manifest_name,
        "pages": len(pages),
        "records": records,
        "requests": requests,
        "finished_at": services.clock().isoformat(),
    }
    services.ledger.put(names.FETCH, key, done)
    log.info(
        "%s %s: %d pages (%d reused), %d records, run %s",
        "re-checked, changed:" if checking else "fetched",
        key,
        len(pages),
        reused,
        records,
        run_id,
    )
    return FetchOutcome("changed" if checking else "fetched", run_id, len(pages), records, reused)


def retry_budget_s(services: Services) -> float:
    """The most seconds one fetch run spends on failed requests and its own backoff, over all
    its deliveries together: USAGE_API_MAX_ATTEMPTS x USAGE_API_TIMEOUT_S (6 x 30 s = 180 s by
    default). Waits the API asks for (Retry-After) have their own bound: USAGE_API_MAX_WAIT_S
    in total per fetch, past which the fetch is rescheduled (the client's `waited_s`)."""
    settings = services.settings
    return settings.usage_api_max_attempts * settings.usage_api_timeout_s


def _failed(
    services: Services, key: str, state: dict[str, Any], run_id: str, error: str, *, checking: bool
) -> FetchOutcome:
    """A permanent failure: the run fails with one alert (a re-check leaves the day's data as it
    was and warns)."""
    if checking:
        message = f"re-check of {key} failed: {error}; its data is as last fetched"
        services.ledger.put(
            names.FETCH, key, {**state, **_checked(services, "failed"), "last_check_error": error}
        )
        raise_alert(services.bus, Alert("warning", "fetch", "recheck_failed", message, run_id, key))
        return FetchOutcome("failed", run_id, message=message)
    message = f"fetch of {key} failed: {error}"
    services.ledger.put(
        names.FETCH,
        key,
        {
            **{k: v for k, v in state.items() if k not in ("last_error", "lease_until")},
            "status": "failed",
            "error": error,
            "finished_at": services.clock().isoformat(),
        },
    )
    raise_alert(services.bus, Alert("error", "fetch", "fetch_failed", message, run_id, key))
    return FetchOutcome("failed", run_id, message=message)


def _ask_again_later(
    services: Services,
    day: date,
    state: dict[str, Any],
    run_id: str,
    exc: ApiAsksToWait,
    *,
    force: bool,
    recheck: bool,
) -> FetchOutcome:
    """A Retry-After above USAGE_API_MAX_WAIT_S: this fetch stops now, holding nothing, and a
    request for the same day is scheduled for the time the API named (a Service Bus scheduled
    message; locally the bus journal keeps it). The pages landed so far stay: the scheduled
    request resumes the same run."""
    key = day.isoformat()
    what = "re-check" if recheck else "fetch"
    asked = f"Retry-After: {exc.retry_after or f'{exc.wait_s:.0f}'} on page {exc.page}"
    total = ""
    if exc.waited_s:  # a short wait that took the fetch's waits past the bound
        asked, total = f"{asked}, after {exc.waited_s:.0f} s of waits", " in total"
    if not exc.wait_s <= MAX_RESCHEDULE_S:  # also inf / nan: an answer that is not a wait
        days = exc.wait_s / 86400
        error = (
            f"the API asked to wait {days:,.0f} days ({asked}), more than MAX_RESCHEDULE_S"
            f" ({MAX_RESCHEDULE_S // 86400} days): not scheduled; replay the day later"
        )
        return _failed(services, key, state, run_id, error, checking=recheck)
    asked_until = services.clock() + timedelta(seconds=exc.wait_s)
    # One scheduled message per day and wait: while the one sent before has not come due (a
    # person asked early with `run --date`), no other is sent; it runs then and asks again.
    pending = _pending_retry(services, state)
    when = pending[1] if pending else asked_until
    message_id = pending[0] if pending else f"later-{key}-{run_id}-{when:%Y%m%dT%H%M%S}"
    at = f"{when:%Y-%m-%d %H:%M} UTC"
    message = (
        f"{what} of {key}: the API asked to wait until {asked_until:%Y-%m-%d %H:%M} UTC ({asked}),"
        f" more than USAGE_API_MAX_WAIT_S ({services.settings.usage_api_max_wait_s:g} s){total};"
        f" it runs again at {at}"
    )
    waiting = {
        "retry_at": when.isoformat(),
        "waiting_for": message,
        "retry_message_id": message_id,
        "retry_message_at": when.isoformat(),
    }
    if recheck:  # the day stays as last fetched
        services.ledger.put(names.FETCH, key, {**state, **waiting})
    else:
        # The scheduled request honours the wait: the resumed fetch starts a new wait total.
        entry = {k: v for k, v in state.items() if k not in ("lease_until", "last_error", "waited_s")}
        services.ledger.put(names.FETCH, key, {**entry, "status": "waiting", **waiting})
    body = {
        "date": key,
        "force": force,
        "requested_by": "retry-after",
        **({"recheck": True} if recheck else {}),
    }
    if not pending:
        services.bus.send(
            names.FETCH_QUEUE,
            [
                OutgoingMessage(
                    body=body,
                    message_id=message_id,
                    properties={"date": key},
                    scheduled_enqueue_time_utc=when,
                )
            ],
        )
    raise_alert(services.bus, Alert("warning", "fetch", "fetch_rescheduled", message, run_id, key))
    log.warning("%s", message)
    return FetchOutcome("rescheduled", run_id, message=message)


# The longest Retry-After a fetch is rescheduled for (7 days). A longer one (a Retry-After of
# 99999999999999 s, an HTTP-date in year 9999) is not a wait: the fetch fails with one alert
# and a person replays the day later.
MAX_RESCHEDULE_S = 7 * 86400
WAIT_FIELDS = ("retry_at", "waiting_for")


def _pending_retry(services: Services, state: dict[str, Any]) -> tuple[str, datetime] | None:
    """The scheduled request sent for this day that has not come due yet (its id and time), or
    None. Kept in the ledger apart from WAIT_FIELDS, which a resume clears."""
    message_id, at = state.get("retry_message_id"), state.get("retry_message_at")
    if not isinstance(message_id, str) or not isinstance(at, str):
        return None
    try:
        when = datetime.fromisoformat(at)
    except ValueError:
        return None
    return (message_id, when) if when > services.clock() else None


CHECK_FIELDS = ("last_checked_at", "last_check", "last_check_error")


def _checked(services: Services, result: str) -> dict[str, str]:
    """The ledger fields of a lookback re-check: when, and unchanged / changed / failed."""
    return {"last_checked_at": services.clock().isoformat(timespec="seconds"), "last_check": result}


def _lease_until(services: Services) -> str:
    """How long a running fetch's claim holds without a sign of life: past it, `status` says
    the fetch was interrupted instead of `fetching` forever."""
    settings = services.settings
    # At least as long as one page can take with every retry and every allowed wait.
    longest_page_s = settings.usage_api_max_attempts * (
        settings.usage_api_timeout_s + settings.usage_api_max_wait_s
    )
    return (services.clock() + timedelta(seconds=max(FETCH_LEASE_S, longest_page_s))).isoformat()


def _keep_lease(services: Services, key: str, state: dict[str, Any]) -> Callable[[], None]:
    """Called before each page: renews the running fetch's lease every FETCH_LEASE_S / 4, so a
    long fetch that is alive never shows as interrupted, and one that died does within the lease;
    and stamps its heartbeat every HEARTBEAT_S, so a replay knows it is really in progress."""
    lock = threading.Lock()
    renewed, stamped = [services.clock()], [services.clock()]

    def alive() -> None:
        now = services.clock()
        with lock:
            renew = (now - renewed[0]).total_seconds() >= FETCH_LEASE_S / 4
            if not renew and (now - stamped[0]).total_seconds() < HEARTBEAT_S:
                return
            stamped[0] = now
            renewed[0] = now if renew else renewed[0]
        if renew:
            state["lease_until"] = _lease_until(services)
        state.update(heartbeat(services))
        services.ledger.put(names.FETCH, key, state)

    return alive


FETCH_LEASE_S = 3600  # renewed every quarter of it while pages land
# The heartbeat: a running fetch stamps ALIVE_AT when it starts and then before a page at most
# every HEARTBEAT_S. Unlike the lease it is short and cleared when the fetch stops by raising
# (`replay.fetch_in_progress`), so "running" means a holder that is alive, not a claim that
# outlived it.
HEARTBEAT_S = 15
ALIVE_AT = "alive_at"


def heartbeat(services: Services) -> dict[str, str]:
    """The ledger field that says this fetch's holder is alive now."""
    return {ALIVE_AT: services.clock().isoformat()}


def _let_go(services: Services, key: str, state: dict[str, Any]) -> None:
    """A stop signal during the fetch: its claim ends now (the lease expires at once), so
    `status` says the fetch was interrupted instead of `fetching` for up to the lease's hour,
    and the next request resumes it at once. A killed process (SIGKILL) still relies on the
    lease."""
    now = services.clock().isoformat()
    services.ledger.put(names.FETCH, key, {**state, "lease_until": now, "interrupted_at": now})


@dataclass(frozen=True)
class LastLanding:
    """What a re-check compares with: the day's last manifest's pages (number -> (blob,
    sha256)) and its records' digest (None in manifests written before digests)."""

    pages: dict[int, tuple[str, str]] = dataclasses.field(default_factory=dict)
    records_digest: str | None = None


def _last_landing(services: Services, manifest_name: str) -> LastLanding:
    """The last landing as its manifest says; nothing when it cannot be read (then every page
    counts as changed, and the day is fetched again as a whole)."""
    try:
        manifest = json.loads(services.blobs.get(names.RAW_CONTAINER, manifest_name))
        pages = {int(p["page"]): (str(p["blob"]), str(p["sha256"])) for p in manifest["pages"]}
        digest = (
            manifest.get("records_digest") if manifest.get("records_digest_kind") == DIGEST_KIND else None
        )
        return LastLanding(pages, digest if isinstance(digest, str) else None)
    except (BlobNotFound, ValueError, TypeError, KeyError, AttributeError):
        log.warning("manifest %s is unreadable; the re-check fetches the day again", manifest_name)
        return LastLanding()


def _digest_fields(pages: list[LandedPage]) -> dict[str, str]:
    """The manifest's records digest (none when a page's records have no canonical form)."""
    digest = day_digest(p.records_digest for p in pages)
    return {} if digest is None else {"records_digest": digest, "records_digest_kind": DIGEST_KIND}


def _same_day(pages: list[LandedPage], last: LastLanding) -> bool:
    """The re-checked day holds the records last landed: the same records digest, however the
    API paged or ordered them; for a manifest without one, as many pages with the same bytes."""
    if last.records_digest is not None:
        return day_digest(p.records_digest for p in pages) == last.records_digest
    previous = last.pages
    return len(pages) == len(previous) and all(previous.get(p.number, ("", ""))[1] == p.sha256 for p in pages)


# A re-check keeps the pages that differ in memory up to this many bytes until it knows whether
# the day changed: the same records paged differently then write nothing. A larger day's pages
# are landed as they come (as blobs nothing refers to if the records turn out the same).
RECHECK_HOLD_BYTES = 64 * 1024 * 1024


class HeldPages:
    """A re-check's changed pages, written only once the day is known to differ."""

    def __init__(self, services: Services, limit_bytes: int = RECHECK_HOLD_BYTES) -> None:
        self._services = services
        self._limit = limit_bytes
        self._pages: dict[str, bytes] = {}
        self._bytes = 0
        self._lock = threading.Lock()

    def put(self, blob: str, body: bytes) -> None:
        with self._lock:
            if self._bytes + len(body) <= self._limit:
                self._pages[blob] = body
                self._bytes += len(body)
                return
        self._write({blob: body})  # past the bound: landed now

    def land(self) -> None:
        """The day differs: write what was held (before the manifest that names it)."""
        with self._lock:
            pages, self._pages, self._bytes = self._pages, {}, 0
        self._write(pages)

    def _write(self, pages: dict[str, bytes]) -> None:
        for blob, body in pages.items():
            self._services.blobs.put(names.RAW_CONTAINER, blob, body)


def _remember_unreachable(services: Services, day: str, message: str) -> None:
    """Record that the API did not answer at all, in the ledger, so that every fetch (of this
    process or another instance) fails at once for USAGE_API_UNREACHABLE_S instead of spending
    the same budget again: a 93-day backfill against a dead API takes one minute, not 93."""
    until = services.clock() + timedelta(seconds=services.settings.usage_api_unreachable_s)
    verdict = ledger_records.ApiRecord(
        url=public_url(services.settings.usage_api_base_url),  # never its password
        until=until.isoformat(),
        message=message,
        day=day,
    )
    put_record(services.ledger, UNREACHABLE_KEY, verdict)


def _not_known_unreachable(services: Services, day: str) -> None:
    """Fail at once when the API was found unreachable a moment ago (the same verdict)."""
    verdict = read_record(services.ledger, ledger_records.ApiRecord, UNREACHABLE_KEY)
    if (
        verdict is None
        or verdict.url != public_url(services.settings.usage_api_base_url)
        or verdict.day == day
    ):
        return
    try:
        until = datetime.fromisoformat(verdict.until)
    except ValueError:
        return  # a verdict without a time it holds until holds no longer
    if until <= services.clock():
        return
    raise UsageApiError(
        f"{verdict.message} (found while fetching {verdict.day}; not tried again before"
        f" {until:%H:%M:%S} UTC); replay the day once it answers"
    )


UNREACHABLE_KEY = "unreachable"


def _land_pages(
    services: Services,
    client: UsageApi,
    day: date,
    run_id: str,
    *,
    resuming: bool,
    previous: dict[int, tuple[str, str]] | None = None,
    alive: Callable[[], None] | None = None,
    put: Callable[[str, bytes], None] | None = None,
) -> list[LandedPage]:
    """Every page of the day, landed, in page order.

    `has_next_page` decides where the day ends, never a short page; `total_pages` only lets the
    pages it announces be fetched at once. The batch is checked against `has_next_page` after
    the fact: a day that grew meanwhile is followed page by page, and a day that shrank ends at
    the first page that says it is the last.
    """
    max_pages = services.settings.usage_api_max_pages
    workers = services.settings.usage_api_concurrency

    def land(number: int) -> LandedPage:
        if number > max_pages:
            raise UsageApiError(
                f"has_next_page still true after {counted(max_pages, 'page')} for {day}; stopped at the page cap"
                " (USAGE_API_MAX_PAGES)"
            )
        if alive is not None:
            alive()
        return _land_page(
            services, client, day, run_id, number, resuming=resuming, previous=previous, put=put
        )

    pages = [land(1)]
    total = pages[0].total_pages
    if workers > 1 and pages[0].has_next_page and total is not None and total > 1:
        # Up to the cap only: past it the sequential walk below fails as it always did.
        pages += _land_concurrently(range(2, min(total, max_pages) + 1), land, workers)
        for earlier, later in itertools.pairwise(pages):
            _not_the_same_page_again(day, earlier, later)
    while pages[-1].has_next_page:
        pages.append(land(pages[-1].number + 1))
        _not_the_same_page_again(day, pages[-2], pages[-1])
    return pages


def _not_the_same_page_again(day: date, earlier: LandedPage, later: LandedPage) -> None:
    """An API that ignores `page` answers page 1 for every page, with has_next_page true: stop at
    the first repeat instead of landing identical pages up to the page cap. Two consecutive pages
    with the same bytes (and records) that both say there is more cannot be two parts of a day."""
    if earlier.has_next_page and later.has_next_page and earlier.records and earlier.sha256 == later.sha256:
        raise UsageApiError(
            f"page {later.number} of {day} is the same as page {earlier.number}, and both say there"
            " is more (has_next_page true): the API seems to ignore `page`; stopped"
        )


def _land_concurrently(numbers: range, land: Callable[[int], LandedPage], workers: int) -> list[LandedPage]:
    """Land `numbers` with at most `workers` at a time; the pages up to and including the first
    that says `has_next_page` false (all of them if none does), in page order.

    `total_pages` is a hint, not a promise (contract section 1): a page past the first one that
    says it is the last is not part of the day, so its failure (a 404, a 400, anything) is
    ignored. After a failure of page N no page above N is started; pages below it still are, as
    one of them may end the day before N. Then the error that counts is raised: a permanent one
    on a page every earlier page of which landed saying there is more (redelivering cannot get
    past it), else the lowest page's error (the one a page-by-page walk would have met first).
    """
    if not numbers:
        return []  # USAGE_API_MAX_PAGES=1: nothing past page 1 is fetched at once
    lowest_failed = [numbers[-1] + 1]
    last_needed = [numbers[-1]]  # lowered by a page that says it is the last
    lock = threading.Lock()

    def task(number: int) -> LandedPage | None:
        with lock:
            if number >= lowest_failed[0] or number > last_needed[0]:
                return None  # not started: a lower page failed, or the day ends before it
        try:
            page = land(number)
        except BaseException:
            with lock:  # before the pool can hand this worker another page
                lowest_failed[0] = min(lowest_failed[0], number)
            raise
        if not page.has_next_page:
            with lock:
                last_needed[0] = min(last_needed[0], number)
        return page

    with ThreadPoolExecutor(max_workers=min(workers, len(numbers)), thread_name_prefix="fetch-page") as pool:
        # Each worker runs in a copy of this context, so its log lines keep the day and run id.
        try:  # a stop while the pages are queued cancels the queue too
            futures = [pool.submit(contextvars.copy_context().run, task, n) for n in numbers]
            _wait_interruptibly(futures)
        except BaseException:  # a stop (Ctrl-C): start no other page, let the running ones end
            pool.shutdown(wait=False, cancel_futures=True)
            raise

    landed: list[LandedPage] = []
    failures: list[tuple[int, BaseException]] = []
    for number, future in zip(numbers, futures, strict=True):
        error = future.exception()
        if error is not None:
            failures.append((number, error))
            continue
        page = future.result()
        if page is not None and not failures and len(landed) == number - numbers[0]:
            landed.append(page)  # the unbroken run of landed pages from the first
    ended = next((p.number for p in landed if not p.has_next_page), None)
    if ended is not None:
        ignored = [(n, e) for n, e in failures if n > ended]
        for number, error in ignored:
            log.info("page %d failed (%s) but page %d ended the day; ignored", number, error, ended)
        return [p for p in landed if p.number <= ended]
    if failures:
        decisive = [e for n, e in failures if isinstance(e, UsageApiError) and n <= numbers[0] + len(landed)]
        raise decisive[0] if decisive else failures[0][1]
    return landed


# How often a wait for the page workers looks for a stop (Ctrl-C): the kernel may hand SIGINT to
# a worker thread, and then an untimed wait would see it only once every queued page has landed.
STOP_CHECK_S = 0.1


def _wait_interruptibly(futures: list[Future[LandedPage | None]]) -> None:
    """Wait for every future, in short steps, so that a stop is raised within STOP_CHECK_S."""
    while wait(futures, timeout=STOP_CHECK_S).not_done:
        pass


def _land_page(
    services: Services,
    client: UsageApi,
    day: date,
    run_id: str,
    number: int,
    *,
    resuming: bool,
    previous: dict[int, tuple[str, str]] | None = None,
    put: Callable[[str, bytes], None] | None = None,
) -> LandedPage:
    """Land page `number` (or, resuming a run, read it back when an earlier attempt landed it).

    Re-checking (`previous`: the last manifest's pages), a page whose bytes equal the landed
    one's is not written again: it stays the blob it was landed as."""
    blob = names.page_blob(day, run_id, number)
    page = _landed_page(services, blob, number) if resuming else None
    if page is not None:
        return LandedPage.of(blob, page, reused=True, day=day)
    page = client.fetch_page(day, number)
    landed = LandedPage.of(blob, page, reused=False, day=day)
    same = (previous or {}).get(number)
    if same is not None and same[1] == landed.sha256:
        return dataclasses.replace(landed, blob=same[0], reused=True)
    if put is not None:
        put(blob, page.body)  # a re-check's page: written once the day is known to differ
    else:
        services.blobs.put(names.RAW_CONTAINER, blob, page.body)
    return landed


def _landed_page(services: Services, blob: str, number: int) -> Page | None:
    """A page an earlier, cut-off attempt of this run already landed, or None."""
    try:
        return parse_page(number, services.blobs.get(names.RAW_CONTAINER, blob))
    except BlobNotFound:
        return None
    except Exception:  # a damaged landing: fetch it again
        log.warning("landed page %s is unreadable; fetching it again", blob)
        return None


def _new_run(services: Services, key: str, run_id: str, force: bool, *, note: str = "") -> dict[str, Any]:
    """Start a fetch run of the day, one generation after the day's last run (compare-and-swap:
    two runs started at once get two generations). A later run's manifest always replaces an
    earlier one's, whatever the clocks said. `note`: why the lookback fetches the day (never
    fetched, or its last fetch failed), kept for `run` and `status` to say."""
    lookback = note in (NEVER_FETCHED, RETRIED)

    def start(current: Any) -> dict[str, Any]:
        return {
            **(
                {"lookback_fetch": note, "lookback_fetch_at": services.clock().isoformat(timespec="seconds")}
                if lookback
                else {}
            ),
            **{k: v for k, v in (current or {}).items() if k in CHECK_FIELDS},  # when last checked
            "run_id": run_id,
            "status": "running",
            "force": force,
            "started_at": services.clock().isoformat(),
            "lease_until": _lease_until(services),
            **heartbeat(services),
            "generation": int((current or {}).get("generation") or 0) + 1,
        }

    entry = update_entry(services.ledger, names.FETCH, key, start)
    return dict(entry.data) if entry is not None else start(None)


def _announce_manifest(services: Services, manifest_name: str) -> None:
    """Send the manifest's BlobCreated event again so staging catches up after a crash.

    Staging is idempotent, so announcing a manifest that was already staged changes nothing.
    """
    info = services.blobs.info(names.RAW_CONTAINER, manifest_name)
    event = blob_events.make_event(names.RAW_CONTAINER, manifest_name, size=info.size)
    services.bus.send(names.INGEST_QUEUE, [OutgoingMessage(body=event, message_id=event["id"])])
