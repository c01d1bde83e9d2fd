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
from dataclasses import dataclass, replace
from datetime import date, datetime, timedelta
from typing import Literal

from shared.domain import blob_events, ledger_records, names
from shared.domain.alerts import Alert
from shared.domain.fetch_decision import NEVER_FETCHED, RETRIED, FetchDecision, decide_fetch
from shared.domain.ledger_records import CheckResult, FetchRecord, from_data, new_entry, without
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
from shared.services.ledger import put_record, read_record, update_record

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

    @classmethod
    def of(cls, blob: str, page: Page, *, reused: bool) -> LandedPage:
        return cls(
            number=page.number,
            blob=blob,
            records=len(page.records),
            bytes=len(page.body),
            sha256=hashlib.sha256(page.body).hexdigest(),
            has_next_page=page.has_next_page,
            total_pages=page.total_pages,
            reused=reused,
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
    state, decision = _decide(services, day, force=force, recheck=recheck, daily=daily)
    answered = _without_fetching(services, day.isoformat(), state, decision)
    return answered if answered is not None else _fetch_run(services, day, state, decision, client)


def _decide(
    services: Services, day: date, *, force: bool, recheck: bool, daily: bool
) -> tuple[FetchRecord, FetchDecision]:
    """The day's fetch entry and what `decide_fetch` makes of it."""
    entry = services.ledger.get(names.FETCH, day.isoformat())
    state = from_data(FetchRecord, entry.data if entry else None)
    manifest = state.manifest
    decision = decide_fetch(
        entry.data if entry else None,
        force=force,
        recheck=recheck,
        daily=daily,
        manifest_exists=bool(manifest) and services.blobs.exists(names.RAW_CONTAINER, manifest),
        now=services.clock(),
        alive_for_s=HEARTBEAT_S + retry_budget_s(services),  # as replay's `running_for_s`
    )
    return state, decision


def _without_fetching(
    services: Services, key: str, state: FetchRecord, decision: FetchDecision
) -> FetchOutcome | None:
    """The outcome of a decision that asks the API nothing (skip, re-announce), else None."""
    if decision.action == "skip":
        return FetchOutcome("skipped", state.run_id, message=f"{key} not re-checked: {decision.reason}")
    if decision.action != "re-announce":
        return None
    _announce_manifest(services, state.manifest)
    _forget_lookback_note(services, key, state)
    return FetchOutcome(
        "already-fetched",
        state.run_id,
        state.pages,
        state.records,
        message=f"{key} already fetched by {state.run_id}; re-announced its manifest",
    )


def _fetch_run(
    services: Services, day: date, state: FetchRecord, decision: FetchDecision, client: UsageApi | None
) -> FetchOutcome:
    """Start, resume or re-check a run of the day, land its pages and settle its outcome."""
    key = day.isoformat()
    checking = decision.action == "re-check"
    resuming = decision.action == "resume"
    run_id, state, previous = _start_run(services, key, state, decision)
    claim = _Claim(services, key, state)  # every later write of this run starts from its record
    bind(run_id=run_id)
    earlier = _Earlier.of(state, resuming=resuming)
    try:
        _not_known_unreachable(services, key)
        client = client or services.usage_api(services.settings)
        earlier.hand_to(client, retry_budget_s(services))
        resuming = _one_page_size(services, claim, client, resuming=resuming, checking=checking)
        pages = _land_or_give_up(
            services,
            client,
            day,
            run_id,
            resuming=resuming,
            previous=previous,
            alive=None if checking else claim.alive,
        )
    except ApiAsksToWait as exc:
        return _ask_again_later(
            services, day, claim.record, run_id, exc, force=decision.force, recheck=checking
        )
    except TransientApiError as exc:
        spent, requests, waited = earlier.with_client(client)
        return _redeliver_or_fail(
            services,
            key,
            claim.record,
            run_id,
            exc,
            requests,
            spent,
            budget=retry_budget_s(services),
            checking=checking,
            waited=waited,
        )
    except UsageApiError as exc:
        return _failed(services, key, claim.record, run_id, str(exc), checking=checking)
    except KeyboardInterrupt:  # Ctrl-C, or kill / hangup, which the CLI turns into one
        if not checking:  # a re-check holds no claim: the day stays as last fetched
            _let_go(services, key, claim.record)
        raise

    if checking and _same_pages(pages, previous):
        return _unchanged(services, key, claim.record, pages)
    requests = earlier.requests + client.attempts  # every HTTP request of the run, retries included
    return _complete(
        services,
        day,
        claim.record,
        run_id,
        pages,
        client.page_size,
        requests,
        force=decision.force,
        checking=checking,
    )


@dataclass(frozen=True)
class _Earlier:
    """What the earlier deliveries of a resumed run spent (a new run starts from nothing)."""

    retry_s: float = 0.0
    requests: int = 0
    waited_s: float = 0.0

    @classmethod
    def of(cls, state: FetchRecord, *, resuming: bool) -> _Earlier:
        return cls(state.retry_s, state.requests, state.waited_s) if resuming else cls()

    def hand_to(self, client: UsageApi, budget: float) -> None:
        """The client goes on from here: what is left of the retry budget, the waits so far."""
        client.retry_budget_s = max(0.0, budget - self.retry_s)
        client.waited_s = self.waited_s

    def with_client(self, client: UsageApi | None) -> tuple[float, int, float]:
        """Seconds spent on failures, HTTP requests and seconds waited: these and the client's."""
        if client is None:
            return self.retry_s, self.requests, self.waited_s
        return self.retry_s + client.retry_s, self.requests + client.attempts, client.waited_s


def _forget_lookback_note(services: Services, key: str, state: FetchRecord) -> None:
    """A request that is not the lookback's (a person's `run --date`, a replay) answered for the
    day now: its line no longer says the lookback fetched it, as if this request had."""
    if state.lookback_fetch or state.lookback_fetch_at:
        put_record(services.ledger, key, without(state, "lookback_fetch", "lookback_fetch_at"))


def _start_run(
    services: Services, key: str, state: FetchRecord, decision: FetchDecision
) -> tuple[str, FetchRecord, dict[int, tuple[str, str]]]:
    """The run a fetch, a resume or a re-check goes on as: its id, the day's ledger state, and
    (for a re-check) the pages last landed, to compare with."""
    if decision.action == "re-check":
        # A re-check is a fetch under a new run id whose pages equal to the last landed ones are
        # not landed again: the ledger stays `complete` meanwhile, and nothing is written unless
        # a page differs.
        previous = _manifest_pages(services, state.manifest)
        return new_run_id("fetch", services.clock()), state, previous
    if decision.action == "resume":
        state = replace(
            without(state, *WAIT_FIELDS, "interrupted_at"),
            status="running",
            lease_until=_lease_until(services),
            alive_at=heartbeat(services),
        )
        put_record(services.ledger, key, state)
        return str(decision.run_id), state, {}
    run_id = new_run_id("fetch", services.clock())
    return run_id, _new_run(services, key, run_id, decision.force, note=decision.reason), {}


def _one_page_size(
    services: Services, claim: _Claim, client: UsageApi, *, resuming: bool, checking: bool
) -> bool:
    """Every page of a run is asked at the page size the run started with, whatever
    USAGE_API_PAGE_SIZE says now: pages 1-8 of 10 records then page 9 of 100 would skip records
    81-800. Returns whether the pages an earlier attempt landed may be reused: not when that
    attempt did not record its page size (they are fetched again, at today's size)."""
    if checking:
        return resuming  # a re-check lands under a run of its own, never resumed
    recorded = claim.record.page_size
    if resuming and recorded > 0:
        client.page_size = recorded
        return True
    claim.record = replace(claim.record, page_size=client.page_size)
    put_record(services.ledger, claim.key, claim.record)
    return False


def _land_or_give_up(
    services: Services,
    client: UsageApi,
    day: date,
    run_id: str,
    *,
    resuming: bool,
    previous: dict[int, tuple[str, str]],
    alive: Callable[[], None] | None,
) -> list[LandedPage]:
    """`_land_pages`, except that an API that answers nothing at all fails the run at once."""
    key = day.isoformat()
    try:
        return _land_pages(services, client, day, run_id, resuming=resuming, previous=previous, alive=alive)
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
    state: FetchRecord,
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
    tries = (0 if checking else state.attempts) + 1
    tally = (
        f"{counted(tries, 'attempt')} of this fetch made {counted(requests, 'HTTP request')} in all"
        f"{_retries_included(tries, requests)}; {_seconds(spent)} s spent on failed requests and backoff"
    )
    if not checking:  # the next delivery goes on from these (a re-check starts afresh)
        state = replace(
            state, requests=requests, retry_s=round(spent, 3), waited_s=round(waited, 3), attempts=tries
        )
    if spent < budget:
        # Raised on, so the request is redelivered; the ledger says why the run is unfinished.
        unfinished = f"{exc} ({tally})"
        put_record(
            services.ledger,
            key,
            replace(state, last_check_error=unfinished)
            if checking
            else replace(state, last_error=unfinished),
        )
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


def _unchanged(services: Services, key: str, state: FetchRecord, pages: list[LandedPage]) -> FetchOutcome:
    """A re-check that found every page as last landed: only the ledger says it was checked."""
    records = sum(p.records for p in pages)
    put_record(
        services.ledger,
        key,
        _checked(services, without(state, "last_check_error", *WAIT_FIELDS), "unchanged"),
    )
    log.info("re-checked %s against the API: unchanged (%d pages, %d records)", key, len(pages), records)
    return FetchOutcome(
        "unchanged", state.run_id, len(pages), records, message=f"{key} re-checked: unchanged"
    )


def _complete(
    services: Services,
    day: date,
    state: FetchRecord,
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
    generation = state.generation + (1 if checking else 0)
    manifest = {
        "activity_date": key,
        "run_id": run_id,
        "force": force,
        "generation": generation,
        "fetched_at": services.clock().isoformat(timespec="microseconds"),
        "page_size": page_size,
        "total_pages_reported": pages[0].total_pages if pages else None,
        "record_count": records,
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
    done = replace(
        without(
            state,
            "last_error",
            "last_check_error",
            "lease_until",
            "waited_s",
            "interrupted_at",
            ALIVE_AT,  # a finished fetch is not alive: its heartbeat goes with it
            *WAIT_FIELDS,
        ),
        run_id=run_id,
        status="complete",
        force=force,
        generation=generation,
        manifest=manifest_name,
        pages=len(pages),
        records=records,
        requests=requests,
        finished_at=services.clock().isoformat(),
    )
    put_record(services.ledger, key, _checked(services, done, "changed") if checking else done)
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
    services: Services, key: str, state: FetchRecord, run_id: str, error: str, *, checking: bool
) -> FetchOutcome:
    """A permanent failure: the run fails with one alert (a re-check leaves the day's data as it
    was and warns)."""
    if checking:
        message = f"re-check of {key} failed: {error}; its data is as last fetched"
        put_record(services.ledger, key, replace(_checked(services, state, "failed"), last_check_error=error))
        raise_alert(services.bus, Alert("warning", "fetch", "recheck_failed", message, run_id, key))
        return FetchOutcome("failed", run_id, message=message)
    message = f"fetch of {key} failed: {error}"
    failed = replace(
        without(state, "last_error", "lease_until", ALIVE_AT),
        status="failed",
        error=error,
        finished_at=services.clock().isoformat(),
    )
    put_record(services.ledger, key, failed)
    raise_alert(services.bus, Alert("error", "fetch", "fetch_failed", message, run_id, key))
    return FetchOutcome("failed", run_id, message=message)


def _ask_again_later(
    services: Services,
    day: date,
    state: FetchRecord,
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
    if not recheck:  # a re-check leaves the day as last fetched
        # The run's wait total survives: the resumed fetch goes on from it, so a fetch the API
        # keeps asking to wait a moment is rescheduled after one more request, not after
        # USAGE_API_MAX_WAIT_S more of waits each time.
        state = replace(
            without(state, "lease_until", "last_error", ALIVE_AT),
            status="waiting",
            waited_s=round(max(state.waited_s, exc.waited_s), 3),
        )
    waiting = replace(
        state,
        retry_at=when.isoformat(),
        waiting_for=message,
        retry_message_id=message_id,
        retry_message_at=when.isoformat(),
    )
    put_record(services.ledger, key, waiting)
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


def _pending_retry(services: Services, state: FetchRecord) -> tuple[str, datetime] | None:
    """The scheduled request sent for this day that has not come due yet (its id and time), or
    None. Kept in the ledger apart from WAIT_FIELDS, which a resume clears."""
    message_id = state.retry_message_id
    if not message_id:
        return None
    try:
        when = datetime.fromisoformat(state.retry_message_at)
    except ValueError:
        return None
    return (message_id, when) if when > services.clock() else None


def _checked(services: Services, state: FetchRecord, result: CheckResult) -> FetchRecord:
    """The entry with a lookback re-check's fields: when, and unchanged / changed / failed."""
    return replace(state, last_checked_at=services.clock().isoformat(timespec="seconds"), last_check=result)


def _lease_until(services: Services) -> str:
    """How long a running fetch's claim holds without a sign of life: past it, `status` says
    the fetch was interrupted instead of `fetching` forever."""
    settings = services.settings
    # At least as long as one page can take with every retry and every allowed wait.
    longest_page_s = settings.usage_api_max_attempts * (
        settings.usage_api_timeout_s + settings.usage_api_max_wait_s
    )
    return (services.clock() + timedelta(seconds=max(FETCH_LEASE_S, longest_page_s))).isoformat()


class _Claim:
    """A running fetch's entry as this run last wrote it. `alive`, called before each page,
    renews its lease every FETCH_LEASE_S / 4, so a long fetch that is alive never shows as
    interrupted, and one that died does within the lease; and stamps its heartbeat every
    HEARTBEAT_S, so a replay knows it is really in progress. Every later write of the run starts
    from `record`, so it keeps the renewed lease."""

    def __init__(self, services: Services, key: str, record: FetchRecord) -> None:
        self.record = record
        self._services, self.key = services, key
        self._lock = threading.Lock()
        self._renewed = self._stamped = services.clock()

    def alive(self) -> None:
        services = self._services
        now = services.clock()
        with self._lock:
            renew = (now - self._renewed).total_seconds() >= FETCH_LEASE_S / 4
            if not renew and (now - self._stamped).total_seconds() < HEARTBEAT_S:
                return
            self._stamped = now
            self._renewed = now if renew else self._renewed
            lease = _lease_until(services) if renew else self.record.lease_until
            self.record = record = replace(self.record, lease_until=lease, alive_at=heartbeat(services))
        put_record(services.ledger, self.key, record)


FETCH_LEASE_S = 3600  # renewed every quarter of it while pages land
# The heartbeat: a running fetch stamps ALIVE_AT when it starts and then before a page at most
# every HEARTBEAT_S. Unlike the lease it is short and cleared when the fetch stops by raising
# (`replay.fetch_in_progress`), so "running" means a holder that is alive, not a claim that
# outlived it.
HEARTBEAT_S = 15
ALIVE_AT = "alive_at"


def heartbeat(services: Services) -> str:
    """The time in ALIVE_AT that says this fetch's holder is alive now."""
    return services.clock().isoformat()


def _let_go(services: Services, key: str, state: FetchRecord) -> None:
    """A stop signal during the fetch: its claim ends now (the lease expires at once), so
    `status` says the fetch was interrupted instead of `fetching` for up to the lease's hour,
    and the next request resumes it at once. A killed process (SIGKILL) still relies on the
    lease."""
    now = services.clock().isoformat()
    put_record(services.ledger, key, replace(state, lease_until=now, interrupted_at=now))


def _manifest_pages(services: Services, manifest_name: str) -> dict[int, tuple[str, str]]:
    """Page number -> (blob, sha256) of a landed manifest; none when it cannot be read (then
    every page counts as changed, and the day is fetched again as a whole)."""
    try:
        manifest = json.loads(services.blobs.get(names.RAW_CONTAINER, manifest_name))
        return {int(p["page"]): (str(p["blob"]), str(p["sha256"])) for p in manifest["pages"]}
    except (BlobNotFound, ValueError, TypeError, KeyError, AttributeError):
        log.warning("manifest %s is unreadable; the re-check fetches the day again", manifest_name)
        return {}


def _same_pages(pages: list[LandedPage], previous: dict[int, tuple[str, str]]) -> bool:
    """The re-checked day equals the last landed one (contract section 1: by the manifest's
    checksums): as many pages, each with the same bytes. The same records paged or ordered
    differently count as a change, landed and rebuilt like any correction."""
    return len(pages) == len(previous) and all(previous.get(p.number, ("", ""))[1] == p.sha256 for p in pages)


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
        return _land_page(services, client, day, run_id, number, resuming=resuming, previous=previous)

    pages = [land(1)]
    total = pages[0].total_pages
    if workers > 1 and pages[0].has_next_page and total is not None and total > 1:
        # Up to the cap only: past it the sequential walk below fails as it always did.
        pages += _land_concurrently(range(2, min(total, max_pages) + 1), land, workers, client.stop)
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


def _land_concurrently(
    numbers: range, land: Callable[[int], LandedPage], workers: int, stop: Callable[[], None]
) -> list[LandedPage]:
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
    futures = _run_pool(numbers, _PageGate(numbers, land).land, workers, stop)
    landed, failures = _unbroken_landed(numbers, futures)
    ended = next((p.number for p in landed if not p.has_next_page), None)
    if ended is not None:
        for number, error in failures:
            if number > ended:
                log.info("page %d failed (%s) but page %d ended the day; ignored", number, error, ended)
        return [p for p in landed if p.number <= ended]
    if failures:
        decisive = [e for n, e in failures if isinstance(e, UsageApiError) and n <= numbers[0] + len(landed)]
        raise decisive[0] if decisive else failures[0][1]
    return landed


class _PageGate:
    """Which queued pages still start: none above a page that failed, none past a page that
    said it is the last."""

    def __init__(self, numbers: range, land: Callable[[int], LandedPage]) -> None:
        self._land = land
        self._lowest_failed = numbers[-1] + 1
        self._last_needed = numbers[-1]  # lowered by a page that says it is the last
        self._lock = threading.Lock()

    def land(self, number: int) -> LandedPage | None:
        with self._lock:
            if number >= self._lowest_failed or number > self._last_needed:
                return None  # not started: a lower page failed, or the day ends before it
        try:
            page = self._land(number)
        except BaseException:
            with self._lock:  # before the pool can hand this worker another page
                self._lowest_failed = min(self._lowest_failed, number)
            raise
        if not page.has_next_page:
            with self._lock:
                self._last_needed = min(self._last_needed, number)
        return page


def _run_pool(
    numbers: range, task: Callable[[int], LandedPage | None], workers: int, stop: Callable[[], None]
) -> list[Future[LandedPage | None]]:
    """Every page's future, once all are done. A stop (Ctrl-C) wakes the waiting workers, starts
    no other page and is raised at once, without waiting for the workers."""
    pool = ThreadPoolExecutor(max_workers=min(workers, len(numbers)), thread_name_prefix="fetch-page")
    try:  # not `with`: leaving it would wait for the workers, a stop must not
        # Each worker runs in a copy of this context, so its log lines keep the day and run id.
        futures = [pool.submit(contextvars.copy_context().run, task, n) for n in numbers]
        _wait_interruptibly(futures)
    except BaseException:
        stop()
        pool.shutdown(wait=False, cancel_futures=True)
        raise
    pool.shutdown(wait=True)
    return futures


def _unbroken_landed(
    numbers: range, futures: list[Future[LandedPage | None]]
) -> tuple[list[LandedPage], list[tuple[int, BaseException]]]:
    """The unbroken run of landed pages from the first, and every page's failure."""
    landed: list[LandedPage] = []
    failures: list[tuple[int, BaseException]] = []
    for number, future in zip(numbers, futures, strict=True):
        error = future.exception()
        if error is not None:
            failures.append((number, error))
            continue
        page = future.result()
        if page is not None and not failures and len(landed) == number - numbers[0]:
            landed.append(page)
    return landed, failures


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
) -> LandedPage:
    """Land page `number` (or, resuming a run, read it back when an earlier attempt landed it).

    Re-checking (`previous`: the last manifest's pages), a page whose bytes equal the landed
    one's is not written again: it stays the blob it was landed as."""
    blob = names.page_blob(day, run_id, number)
    page = _landed_page(services, blob, number) if resuming else None
    if page is not None:
        return LandedPage.of(blob, page, reused=True)
    page = client.fetch_page(day, number)
    landed = LandedPage.of(blob, page, reused=False)
    same = (previous or {}).get(number)
    if same is not None and same[1] == landed.sha256:
        return dataclasses.replace(landed, blob=same[0], reused=True)
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


def _new_run(services: Services, key: str, run_id: str, force: bool, *, note: str = "") -> FetchRecord:
    """Start a fetch run of the day, one generation after the day's last run (compare-and-swap:
    two runs started at once get two generations). A later run's manifest always replaces an
    earlier one's, whatever the clocks said. `note`: why the lookback fetches the day (never
    fetched, or its last fetch failed), kept for `run` and `status` to say."""
    lookback = note in (NEVER_FETCHED, RETRIED)

    def start(current: FetchRecord | None) -> FetchRecord:
        started = new_entry(
            FetchRecord,
            run_id=run_id,
            status="running",
            force=force,
            started_at=services.clock().isoformat(),
            lease_until=_lease_until(services),
            alive_at=heartbeat(services),
            generation=(current.generation if current else 0) + 1,
        )
        if lookback:
            at = services.clock().isoformat(timespec="seconds")
            started = replace(started, lookback_fetch=note, lookback_fetch_at=at)
        if current is None:
            return started
        # When the day was last checked outlives its runs.
        return replace(
            started,
            last_checked_at=current.last_checked_at,
            last_check=current.last_check,
            last_check_error=current.last_check_error,
        )

    return update_record(services.ledger, FetchRecord, key, start) or start(None)


def _announce_manifest(services: Services, manifest_name: str) -> None:
    """Send the manifest's BlobCreated event again so staging catches up after a crash.

    Staging is idempotent, so announcing a manifest that was already staged changes nothing.
    """
    info = services.blobs.info(names.RAW_CONTAINER, manifest_name)
    event = blob_events.make_event(names.RAW_CONTAINER, manifest_name, size=info.size)
    services.bus.send(names.INGEST_QUEUE, [OutgoingMessage(body=event, message_id=event["id"])])
