"""Storage, queue and ledger names fixed by the contract (section 4) and the raw layout."""

from __future__ import annotations

import hashlib
from datetime import date

RAW_CONTAINER = "raw"
CRM_CONTAINER = "crm-drop"
QUARANTINE_CONTAINER = "quarantine"
CONTAINERS = (RAW_CONTAINER, CRM_CONTAINER, QUARANTINE_CONTAINER)
LEDGER_TABLE = "pipelineruns"
# GET /api/health writes, reads and deletes a probe blob under health/ here: a container of its
# own, which no Event Grid subscription watches and nothing lists.
HEALTH_CONTAINER = "health"
HEALTH_BLOB_PREFIX = "health/"

FETCH_QUEUE = "fetch-requests"
INGEST_QUEUE = "ingest-events"
TRANSFORM_QUEUE = "transform"
ALERTS_QUEUE = "alerts"
QUEUES = (FETCH_QUEUE, INGEST_QUEUE, TRANSFORM_QUEUE, ALERTS_QUEUE)

MANIFEST_NAME = "manifest.json"

# Ledger partitions.
FETCH = "fetch"  # key: activity date; one fetch run's progress
USAGE = "usage"  # key: activity date; the staged usage dataset
CRM = "crm"  # key: snapshot date; the staged snapshot
FILES = "files"  # key: hash of a CRM blob name; what happened to each dropped file
DAYS = "days"  # key: activity date; the build state of the analytics day
ALERTS = "alerts"  # key: fingerprint; de-duplicates repeated alerts
REPLAYS = "replays"  # key: activity date, or "quota:<key hash>"; fetches queued, forced days a minute
LOCKS = "locks"  # key: what is locked; the transform's build lease
API = "api"  # key: "unreachable"; the last time the Product Usage API did not answer at all
HEALTH = "health"  # key: "probe"; written and read by GET /api/health, read by nothing else


def usage_prefix(day: date, run_id: str) -> str:
    return f"usage/{day.isoformat()}/{run_id}/"


def page_blob(day: date, run_id: str, page: int) -> str:
    return f"{usage_prefix(day, run_id)}page-{page:05d}.json"


def manifest_blob(day: date, run_id: str) -> str:
    return usage_prefix(day, run_id) + MANIFEST_NAME


def file_key(blob_name: str) -> str:
    """Ledger key of a dropped CRM file: Table storage keys may not contain '/', so its name is hashed."""
    return hashlib.sha256(blob_name.encode()).hexdigest()[:32]
