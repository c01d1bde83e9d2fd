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
import hashlib
import json
import logging
import threading
import uuid
from collections.abc import Callable
from concurrent.futures import FIRST_EXCEPTION, ThreadPoolExecutor, wait
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from typing import Any, Literal

from shared.domain import blob_events, names
from shared.domain.alerts import Alert
from shared.domain.usage_page import Page, parse_page
from shared.observability.context import bind
from shared.ports import (
    ApiUnreachable,
    BlobNotFound,
    OutgoingMessage,
    Services,
    TransientApiError,
    UsageApi,
    UsageApiError,
)
from shared.services.alerts import raise_alert
from shared.services.ledger import update_entry

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class FetchOutcome:
    status: Literal["fetched", "already-fetched", "failed"]
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
    services: Services, day: date, *, force: bool = False, client: UsageApi | None = None
) -> FetchOutcome:
    """Fetch `day` unless it is already fetched (then re-announce its manifest), or resume a cut-off run.

    Permanent API errors fail the run with an alert and return; transient ones that outlast the
    retries raise, so the message is redelivered and finally dead-lettered to `alerts`.
    """
    key = day.isoformat()
    entry = services.ledger.get(names.FETCH, key)
    state = dict(entry.data) if entry else {}
    complete = state.get("status") == "complete"
    if complete and not force and services.blobs.exists(names.RAW_CONTAINER, state["manifest"]):
        _announce_manifest(services, state["manifest"])
        return FetchOutcome(
            "already-fetched",
            state["run_id"],
            state.get("pages", 0),
            state.get("records", 0),
            message=f"{key} already fetched by {state['run_id']}; re-announced its manifest",
        )
    resuming = state.get("status") == "running" or (complete and not force)
    if resuming:
        run_id, force = state["run_id"], bool(state.get("force")) or force  # resume the cut-off run
    else:
        run_id = new_run_id("fetch", services.clock())
        state = _new_run(services, key, run_id, force)
    bind(run_id=run_id)

    try:
        _not_known_unreachable(services, key)
        client = client or services.usage_api(services.settings)
        try:
            pages = _land_pages(services, client, day, run_id, resuming=resuming)
        except ApiUnreachable as exc:
            if exc.page != 1:
                raise
            # Nothing answered at all: fail now, with one alert, instead of redelivering; the
            # next days of a backfill fail at once instead of trying the same dead API again.
            _remember_unreachable(services, key, str(exc))
            raise UsageApiError(f"{exc}; replay the day once it answers") from None
    except TransientApiError as exc:
        # Raised on, so the request is redelivered; the ledger says why the run is unfinished.
        services.ledger.put(names.FETCH, key, {**state, "last_error": str(exc)})
        raise
    except UsageApiError as exc:
        message = f"fetch of {key} failed: {exc}"
        services.ledger.put(
            names.FETCH,
            key,
            {**state, "status": "failed", "error": str(exc), "finished_at": services.clock().isoformat()},
        )
        raise_alert(services.bus, Alert("error", "fetch", "fetch_failed", message, run_id, key))
        return FetchOutcome("failed", run_id, message=message)

    manifest = {
        "activity_date": key,
        "run_id": run_id,
        "force": force,
        # Orders re-fetches of the day: the ledger's count of its runs, never the clock (which
        # may be stepped back); fetched_at is only said.
        "generation": int(state.get("generation") or 0),
        "fetched_at": services.clock().isoformat(timespec="microseconds"),
        "page_size": client.page_size,
        "total_pages_reported": pages[0].total_pages if pages else None,
        "record_count": sum(p.records for p in pages),
        "pages": [
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
        **{k: v for k, v in state.items() if k != "last_error"},
        "status": "complete",
        "manifest": manifest_name,
        "pages": len(pages),
        "records": manifest["record_count"],
        "finished_at": services.clock().isoformat(),
    }
    services.ledger.put(names.FETCH, key, done)
    log.info(
        "fetched %s: %d pages (%d reused), %d records, run %s",
        key,
        len(pages),
        reused,
        manifest["record_count"],
        run_id,
    )
    return FetchOutcome("fetched", run_id, len(pages), manifest["record_count"], reused)


def _remember_unreachable(services: Services, day: str, message: str) -> None:
    """Record that the API did not answer at all, in the ledger, so that every fetch (of this
    process or another instance) fails at once for USAGE_API_UNREACHABLE_S instead of spending
    the same budget again: a 93-day backfill against a dead API takes one minute, not 93."""
    until = services.clock() + timedelta(seconds=services.settings.usage_api_unreachable_s)
    verdict = {
        "url": services.settings.usage_api_base_url,
        "until": until.isoformat(),
        "message": message,
        "day": day,
    }
    services.ledger.put(names.API, UNREACHABLE_KEY, verdict)


def _not_known_unreachable(services: Services, day: str) -> None:
    """Fail at once when the API was found unreachable a moment ago (the same verdict)."""
    entry = services.ledger.get(names.API, UNREACHABLE_KEY)
    if (
        entry is None
        or entry.data.get("url") != services.settings.usage_api_base_url
        or entry.data.get("day") == day
    ):
        return
    until = datetime.fromisoformat(str(entry.data["until"]))
    if until <= services.clock():
        return
    raise UsageApiError(
        f"{entry.data['message']} (found while fetching {entry.data['day']}; not tried again before"
        f" {until:%H:%M:%S} UTC); replay the day once it answers"
    )


UNREACHABLE_KEY = "unreachable"


def _land_pages(
    services: Services, client: UsageApi, day: date, run_id: str, *, resuming: bool
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
                f"has_next_page still true after {max_pages} pages for {day}; stopped at the page cap"
                " (USAGE_API_MAX_PAGES)"
            )
        return _land_page(services, client, day, run_id, number, resuming=resuming)

    pages = [land(1)]
    total = pages[0].total_pages
    if workers > 1 and pages[0].has_next_page and total is not None and total > 1:
        # Up to the cap only: past it the sequential walk below fails as it always did.
        pages += _land_concurrently(range(2, min(total, max_pages) + 1), land, workers)
    while pages[-1].has_next_page:
        pages.append(land(pages[-1].number + 1))
    return pages


def _land_concurrently(numbers: range, land: Callable[[int], LandedPage], workers: int) -> list[LandedPage]:
    """Land `numbers` with at most `workers` at a time; the pages up to and including the first
    that says `has_next_page` false (all of them if none does), in page order.

    After a failure no new page is started; pages in flight finish and stay landed (a resume
    reads them back). Then a permanent error is raised if any page had one (redelivering
    cannot get past it), else the lowest page's error: the one a page-by-page walk would have
    met first.
    """
    failed = threading.Event()
    last_needed = [numbers[-1]]  # lowered by a page that says it is the last
    lock = threading.Lock()

    def task(number: int) -> LandedPage | None:
        with lock:
            if failed.is_set() or number > last_needed[0]:
                return None  # not started: the run is failing, or the day ends before it
        try:
            page = land(number)
        except BaseException:
            failed.set()  # before the pool can hand this worker another page
            raise
        if not page.has_next_page:
            with lock:
                last_needed[0] = min(last_needed[0], number)
        return page

    with ThreadPoolExecutor(max_workers=min(workers, len(numbers)), thread_name_prefix="fetch-page") as pool:
        # Each worker runs in a copy of this context, so its log lines keep the day and run id.
        futures = [pool.submit(contextvars.copy_context().run, task, n) for n in numbers]
        wait(futures, return_when=FIRST_EXCEPTION)
        if failed.is_set():
            pool.shutdown(wait=True, cancel_futures=True)

    errors = [e for f in futures if not f.cancelled() and (e := f.exception()) is not None]
    if errors:  # in page order
        raise next((e for e in errors if isinstance(e, UsageApiError)), errors[0])
    landed: list[LandedPage] = []
    for future in futures:
        page = future.result()
        if page is None:  # skipped: only pages after one that said it was the last
            break
        landed.append(page)
        if not page.has_next_page:
            break  # the day shrank: what follows is not part of it
    return landed


def _land_page(
    services: Services, client: UsageApi, day: date, run_id: str, number: int, *, resuming: bool
) -> LandedPage:
    """Land page `number` (or, resuming a run, read it back when an earlier attempt landed it)."""
    blob = names.page_blob(day, run_id, number)
    page = _landed_page(services, blob, number) if resuming else None
    if page is not None:
        return LandedPage.of(blob, page, reused=True)
    page = client.fetch_page(day, number)
    services.blobs.put(names.RAW_CONTAINER, blob, page.body)
    return LandedPage.of(blob, page, reused=False)


def _landed_page(services: Services, blob: str, number: int) -> Page | None:
    """A page an earlier, cut-off attempt of this run already landed, or None."""
    try:
        return parse_page(number, services.blobs.get(names.RAW_CONTAINER, blob))
    except BlobNotFound:
        return None
    except Exception:  # a damaged landing: fetch it again
        log.warning("landed page %s is unreadable; fetching it again", blob)
        return None


def _new_run(services: Services, key: str, run_id: str, force: bool) -> dict[str, Any]:
    """Start a fetch run of the day, one generation after the day's last run (compare-and-swap:
    two runs started at once get two generations). A later run's manifest always replaces an
    earlier one's, whatever the clocks said."""

    def start(current: Any) -> dict[str, Any]:
        return {
            "run_id": run_id,
            "status": "running",
            "force": force,
            "started_at": services.clock().isoformat(),
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
