"""Event Grid `Microsoft.Storage.BlobCreated` events: build them (local store) and read them (loaders).

Azure delivers these to the `ingest-events` queue through an Event Grid subscription; the
local folder store publishes exactly the same shape, so the loaders cannot tell the difference.
"""

from __future__ import annotations

import hashlib
import re
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from shared.domain import names
from shared.domain.errors import PermanentError

BLOB_CREATED = "Microsoft.Storage.BlobCreated"
# Blob operations that finish a blob. Others (e.g. a block blob's intermediate writes on
# ADLS: CreateFile before FlushWithClose) leave a blob that is not complete yet.
FINISHING_APIS = frozenset({"PutBlob", "PutBlockList", "CopyBlob", "FlushWithClose"})
_EXTRA_DIGITS = re.compile(r"(\.\d{6})\d+")
LOCAL_ACCOUNT_URL = "http://127.0.0.1/devstoreaccount1"


@dataclass(frozen=True)
class BlobCreated:
    container: str
    name: str
    api: str
    event_time: datetime
    etag: str
    size: int


class NotABlobEvent(PermanentError, ValueError):
    """The message is not an Event Grid BlobCreated event we understand."""

    kind = "not_a_blob_event"


def wanted(container: str, name: str) -> bool:
    """Which new blobs start staging: a usage manifest or a CRM drop. Mirrors the Bicep filter."""
    if container == names.CRM_CONTAINER:
        return not name.endswith("/")
    return (
        container == names.RAW_CONTAINER
        and name.startswith("usage/")
        and name.endswith("/" + names.MANIFEST_NAME)
    )


def make_event(
    container: str,
    name: str,
    *,
    size: int,
    api: str = "PutBlob",
    account_url: str = LOCAL_ACCOUNT_URL,
    event_time: datetime | None = None,
    etag: str | None = None,
) -> dict[str, Any]:
    """An Event Grid schema event as Azure Storage publishes it."""
    when = event_time or datetime.now(UTC)
    return {
        "id": str(uuid.uuid4()),
        "topic": "/subscriptions/local/resourceGroups/local/providers/Microsoft.Storage/storageAccounts/local",
        "subject": f"/blobServices/default/containers/{container}/blobs/{name}",
        "eventType": BLOB_CREATED,
        "eventTime": when.isoformat().replace("+00:00", "Z"),
        "data": {
            "api": api,
            "clientRequestId": str(uuid.uuid4()),
            "requestId": str(uuid.uuid4()),
            "eTag": etag
            or "0x" + hashlib.sha1(f"{container}/{name}/{when}".encode()).hexdigest()[:16].upper(),
            "contentType": "application/octet-stream",
            "contentLength": size,
            "blobType": "BlockBlob",
            "url": f"{account_url}/{container}/{name}",
            "sequencer": f"{int(when.timestamp() * 1e6):032x}",
            "storageDiagnostics": {"batchId": str(uuid.uuid4())},
        },
        "dataVersion": "",
        "metadataVersion": "1",
    }


def parse_event(event: Any) -> BlobCreated | None:
    """The blob an event announces, or None for events that are not a finished blob.

    Event Grid may deliver a single event or (with batching) a one-element array.
    """
    if isinstance(event, list):
        if len(event) != 1:
            raise NotABlobEvent(f"expected one Event Grid event, got {len(event)}")
        event = event[0]
    if not isinstance(event, dict):
        raise NotABlobEvent("message body is not an Event Grid event object")
    event_type = event.get("eventType") or event.get("type")  # Event Grid or CloudEvents schema
    if event_type != BLOB_CREATED:
        return None
    data = event.get("data") or {}
    if data.get("api") not in FINISHING_APIS:
        return None
    subject = str(event.get("subject", ""))
    marker = "/blobServices/default/containers/"
    if not subject.startswith(marker) or "/blobs/" not in subject:
        raise NotABlobEvent(f"unexpected BlobCreated subject {subject!r}")
    container, _, name = subject[len(marker) :].partition("/blobs/")
    if not container or not name:
        raise NotABlobEvent(f"unexpected BlobCreated subject {subject!r}")
    event_time = _parse_time(str(event.get("eventTime") or event.get("time") or ""))
    return BlobCreated(
        container=container,
        name=name,
        api=str(data.get("api")),
        event_time=event_time,
        etag=str(data.get("eTag", "")),
        size=int(data.get("contentLength") or 0),
    )


def _parse_time(text: str) -> datetime:
    try:
        # Event Grid uses 7 fractional digits; fromisoformat takes at most 6.
        parsed = datetime.fromisoformat(_EXTRA_DIGITS.sub(r"\1", text.replace("Z", "+00:00")))
    except ValueError:
        return datetime.now(UTC)
    return parsed.replace(tzinfo=UTC) if parsed.tzinfo is None else parsed.astimezone(UTC)
