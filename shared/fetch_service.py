"""Fetch one day of product usage into the `raw` container: pages as received, then a manifest.

The manifest is written last; its creation is what starts staging. A run cut off part way is
resumed by the next request for the same day: same run id, pages already landed are read back
from the store instead of being fetched again.
"""

from __future__ import annotations

import hashlib
import json
import logging
import uuid
from dataclasses import dataclass
from datetime import date
from typing import Any

from shared import blob_events, names
from shared.alerts import Alert, raise_alert
from shared.bootstrap import Services
from shared.ports import BlobNotFound, OutgoingMessage
from shared.usage_api import Page, TransientApiError, UsageApiClient, UsageApiError, parse_page

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class FetchOutcome:
    status: str  # fetched, already-fetched, failed
    run_id: str
    pages: int = 0
    records: int = 0
    pages_reused: int = 0
    message: str = ""


def new_run_id(kind: str, clock_now: Any) -> str:
    return f"{kind}-{clock_now:%Y%m%dT%H%M%S}-{uuid.uuid4().hex[:6]}"


def make_client(services: Services) -> UsageApiClient:
    s = services.settings
    return UsageApiClient(
        s.usage_api_base_url,
        s.usage_api_key,
        timeout_s=s.usage_api_timeout_s,
        page_size=s.usage_api_page_size,
        max_attempts=s.usage_api_max_attempts,
        backoff_base_s=s.usage_api_backoff_base_s,
        backoff_max_s=s.usage_api_backoff_max_s,
    )


def fetch_day(
    services: Services, day: date, *, force: bool = False, client: UsageApiClient | None = None
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
    if state.get("status") == "running" or (complete and not force):
        run_id, force = state["run_id"], bool(state.get("force")) or force  # resume the cut-off run
    else:
        run_id = new_run_id("fetch", services.clock())
        state = {
            "run_id": run_id,
            "status": "running",
            "force": force,
            "started_at": services.clock().isoformat(),
        }
        services.ledger.put(names.FETCH, key, state)

    try:
        client = client or make_client(services)
        pages, reused = _land_pages(services, client, day, run_id)
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
        "fetched_at": services.clock().isoformat(timespec="microseconds"),  # orders re-fetches
        "page_size": client.page_size,
        "total_pages_reported": pages[0][1].total_pages if pages else None,
        "record_count": sum(len(p.records) for _, p in pages),
        "pages": [
            {
                "page": p.number,
                "blob": blob,
                "records": len(p.records),
                "bytes": len(p.body),
                "sha256": hashlib.sha256(p.body).hexdigest(),
            }
            for blob, p in pages
        ],
    }
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


def _land_pages(
    services: Services, client: UsageApiClient, day: date, run_id: str
) -> tuple[list[tuple[str, Page]], int]:
    pages: list[tuple[str, Page]] = []
    reused = 0
    max_pages = services.settings.usage_api_max_pages
    number = 1
    while True:
        if number > max_pages:
            raise UsageApiError(
                f"has_next_page still true after {max_pages} pages for {day}; stopped at the page cap"
                " (USAGE_API_MAX_PAGES)"
            )
        blob = names.page_blob(day, run_id, number)
        page = _landed_page(services, blob, number)
        if page is None:
            page = client.fetch_page(day, number)
            services.blobs.put(names.RAW_CONTAINER, blob, page.body)
        else:
            reused += 1
        pages.append((blob, page))
        if not page.has_next_page:
            return pages, reused
        number += 1


def _landed_page(services: Services, blob: str, number: int) -> Page | None:
    """A page an earlier, cut-off attempt of this run already landed, or None."""
    try:
        return parse_page(number, services.blobs.get(names.RAW_CONTAINER, blob))
    except BlobNotFound:
        return None
    except Exception:  # a damaged landing: fetch it again
        log.warning("landed page %s is unreadable; fetching it again", blob)
        return None


def _announce_manifest(services: Services, manifest_name: str) -> None:
    """Send the manifest's BlobCreated event again so staging catches up after a crash.

    Staging is idempotent, so announcing a manifest that was already staged changes nothing.
    """
    info = services.blobs.info(names.RAW_CONTAINER, manifest_name)
    event = blob_events.make_event(names.RAW_CONTAINER, manifest_name, size=info.size)
    services.bus.send(names.INGEST_QUEUE, [OutgoingMessage(body=event, message_id=event["id"])])
