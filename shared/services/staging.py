"""Staging loaders: a landed usage manifest or a dropped CRM file -> `stg.*`, quarantine, ledger, transform.

Both are idempotent: loading the same input twice stages it once, and an input older than the
one already staged (a late redelivery) is recognised as stale and changes nothing.
"""

from __future__ import annotations

import gc
import hashlib
import json
import logging
import uuid
from array import array
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, replace
from datetime import date
from typing import Any, Literal

from shared.domain import blob_events, names
from shared.domain.alerts import Alert
from shared.domain.blob_names import check_blob_name
from shared.domain.crm_csv import NUL_REASON, CrmFileRejected, CrmReader, CrmRow, RejectedRow
from shared.domain.crm_drop import (
    Accept,
    CheckedDrop,
    PreviousSnapshot,
    Reject,
    check_drop_date,
    decide_drop,
    replaced_snapshot_warning,
)
from shared.domain.errors import PermanentError
from shared.domain.ledger_records import CrmRecord, FileRecord, FileStatus, UsageRecord
from shared.domain.quality import summarize_quarantine
from shared.domain.transform_plan import InputKind, days_to_mark
from shared.domain.usage_page import parse_page
from shared.domain.usage_records import ValidatedDay, validate_page
from shared.observability.context import bind
from shared.ports import BlobNotFound, Lineage, OutgoingMessage, Services, StageStatus
from shared.services.alerts import raise_alert
from shared.services.ledger import put_record, query_records, read_record, update_record
from shared.services.pending import mark_days, marking_inputs

log = logging.getLogger(__name__)


class ManifestError(PermanentError, ValueError):
    """A manifest that cannot be read, or whose pages are missing or do not match it: a
    redelivery would find the same blobs."""

    kind = "bad_manifest"


class DropMissing(PermanentError, LookupError):
    """The announced CRM file was deleted before it could be loaded."""

    kind = "crm_drop_missing"


@dataclass(frozen=True)
class StageOutcome:
    status: StageStatus | Literal["rejected"]
    key: str  # the activity or snapshot date
    run_id: str
    staged: int = 0
    quarantined: int = 0
    message: str = ""


# Part of every usage checksum: change it when the record rules change, so that pages staged
# under the old rules are staged again under the new ones instead of being "unchanged".
USAGE_RULES_VERSION = "usage-records/3"  # 3: 12.0 is a count, reasons say what was there
UNKNOWN_NAMED = 5  # companies with unknown usage named in the ledger (status shows them)


def _usage_checksum(pages: list[dict[str, Any]]) -> str:
    """What a staged usage day was made from: its pages' SHA-256s in page order (already in the
    manifest) and the record rules. The same pages give the same rows, so a re-announced
    manifest, or a re-fetch that returned the same bytes, is "unchanged" without touching a
    record; a re-fetch that listed the same records in another order is staged again, which
    changes no row."""
    digest = hashlib.sha256(USAGE_RULES_VERSION.encode())
    for page in pages:
        digest.update(f"\n{page['sha256']}".encode())
    return digest.hexdigest()


@contextmanager
def _gc_paused() -> Iterator[None]:
    """Parsing a million rows allocates millions of tuples that all stay alive; the cyclic
    collector would walk them again and again for nothing (about a tenth of the parse)."""
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if enabled:
            gc.enable()


def jsonl_line(item: Any) -> str:
    """One quarantined record as a line of JSON, whatever it holds: UTF-8 as sent, but a string
    that is not valid Unicode (a lone surrogate, which json.loads makes of "\\ud800") is written
    escaped, as the API sent it, instead of failing the whole load."""
    text = json.dumps(item, ensure_ascii=False, default=str)
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        text = json.dumps(item, default=str)
    return text + "\n"


def _quarantine(
    services: Services, source_container: str, source_blob: str, run_id: str, leaf: str, data: bytes
) -> str:
    """Quarantine paths keep the original blob name: quarantine/<container>/<blob>/<run>/<leaf>."""
    name = _quarantine_folder(source_container, source_blob, run_id) + leaf
    services.blobs.put(names.QUARANTINE_CONTAINER, name, data)
    return name


def _quarantine_folder(source_container: str, source_blob: str, run_id: str) -> str:
    return f"{source_container}/{source_blob}/{run_id}/"


def _send_transform(
    services: Services, kind: InputKind, key: str, run_id: str, checksum: str, force: bool
) -> None:
    """Wake the transform. The id is new with every wake-up: the work owed is in the ledger's
    pending marks, and a wake-up that reused an earlier one's id (the same file dropped again,
    a snapshot reverted to an earlier file) would be dropped by duplicate detection (a day on
    Service Bus) and leave its marks unbuilt. Event Grid's own retries are still dropped: the
    ingest messages carry the events' ids. A redelivered load sends another wake-up, which
    finds the marks built and does nothing."""
    body = {"kind": kind, "date": key, "run_id": run_id, "force": force}
    message_id = f"transform-{kind}-{key}-{checksum[:12]}-{int(force)}-{uuid.uuid4().hex}"
    services.bus.send(
        names.TRANSFORM_QUEUE,
        [OutgoingMessage(body=body, message_id=message_id, properties={"kind": kind, "date": key})],
    )


StagedRecord = UsageRecord | CrmRecord


def _record_latest(services: Services, key: str, record: StagedRecord) -> None:
    """Write the ledger entry unless a newer version is recorded already."""

    def newest(current: StagedRecord | None) -> StagedRecord | None:
        return None if current and current.version > record.version else record

    update_record(services.ledger, type(record), key, newest)


def _announce_staged(
    services: Services,
    kind: InputKind,
    outcome: StageOutcome,
    record: StagedRecord,
    source: str,
    extra: str,
    *,
    force: bool,
) -> None:
    """After a load: unless it was stale, record the staged input in the ledger (never moving it
    back to an older version), mark the days it affects for the transform, and wake the transform.

    The marks come after the record (a transform that sees a mark sees the input) and are
    themselves recorded (`days_marked`), so a redelivered load marks again only if the first one
    died before it had marked: a re-run of what is staged already rebuilds nothing."""
    if outcome.status == "stale":
        log.info("%s %s: %s is older than what is staged; nothing to do", kind, outcome.key, source)
        return
    before = read_record(services.ledger, type(record), outcome.key)
    marked = (
        before is not None
        and before.checksum == record.checksum
        and _forced(before) == force
        and before.days_marked
    )
    _record_latest(services, outcome.key, replace(record, days_marked=marked))
    if not marked:
        _mark_affected_days(services, kind, date.fromisoformat(outcome.key), outcome.run_id)

        def days_marked(current: StagedRecord | None) -> StagedRecord | None:
            return (
                replace(current, days_marked=True)
                if current and current.checksum == record.checksum
                else None
            )

        update_record(services.ledger, type(record), outcome.key, days_marked)
    log.info(
        "%s %s %s from %s: %d staged, %d quarantined, %s (run %s)",
        kind,
        outcome.key,
        outcome.status,
        source,
        outcome.staged,
        outcome.quarantined,
        extra,
        outcome.run_id,
    )
    _send_transform(services, kind, outcome.key, outcome.run_id, record.checksum, force)


def _forced(record: StagedRecord) -> bool:
    """A forced load is a load of its own (a snapshot is never forced)."""
    return record.force if isinstance(record, UsageRecord) else False


def _mark_affected_days(services: Services, kind: InputKind, day: date, run_id: str) -> None:
    """The days the staged input affects, among those with usage staged, marked for the transform."""
    staged, snapshots = marking_inputs(services, day)
    max_age = services.settings.crm_max_snapshot_age_days
    mark_days(services, days_to_mark(kind, day, snapshots, max_age, staged), run_id)


def handle_blob_created(services: Services, event: Any, message_id: str = "") -> StageOutcome | None:
    """Route a BlobCreated event to its loader; ignore other events and paths.

    A name that could escape the store or alias another blob raises UnsafeBlobName, a
    PermanentError: redelivering it would fail the same way.
    """
    blob = blob_events.parse_event(event)
    if blob is None or not blob_events.wanted(blob.container, blob.name):
        log.info("ignored event %s", message_id)
        return None
    check_blob_name(blob.container, blob.name)
    if blob.container == names.CRM_CONTAINER:
        return load_crm_drop(services, blob.name)
    return load_usage_manifest(services, blob.name)


# --- usage ------------------------------------------------------------------------------------


MANIFEST_FIELDS = ("activity_date", "run_id", "fetched_at", "pages")
PAGE_FIELDS = {"page", "blob", "sha256"}


def _read_manifest(services: Services, manifest_name: str) -> dict[str, Any]:
    """The manifest, with the fields staging relies on checked, or ManifestError."""
    try:
        manifest = json.loads(services.blobs.get(names.RAW_CONTAINER, manifest_name))
        missing = [f for f in MANIFEST_FIELDS if not isinstance(manifest, dict) or f not in manifest]
        if missing:
            raise ValueError(f"missing {', '.join(missing)}")
        date.fromisoformat(manifest["activity_date"])
        pages = manifest["pages"]
        if not isinstance(pages, list) or not all(
            isinstance(p, dict) and p.keys() >= PAGE_FIELDS for p in pages
        ):
            raise ValueError("'pages' is not a list of pages")
    except BlobNotFound:
        raise ManifestError(f"manifest {manifest_name} does not exist") from None
    except (UnicodeDecodeError, ValueError, TypeError) as exc:
        raise ManifestError(f"manifest {manifest_name} is unreadable: {exc}") from None
    return dict(manifest)


def _read_page(services: Services, entry: dict[str, Any]) -> list[Any]:
    """The records of a landed page, checked against its manifest entry."""
    try:
        body = services.blobs.get(names.RAW_CONTAINER, entry["blob"])
    except BlobNotFound:
        raise ManifestError(f"page {entry['blob']} of the manifest does not exist") from None
    if hashlib.sha256(body).hexdigest() != entry["sha256"]:
        raise ManifestError(f"page {entry['blob']} does not match its manifest checksum")
    try:
        return parse_page(int(entry["page"]), body).records
    except ValueError as exc:  # TruncatedPage, MalformedPage: the fetch checked it; it changed since
        raise ManifestError(f"page {entry['blob']} is unreadable: {exc}") from None


def manifest_version(manifest: dict[str, Any]) -> str:
    """What orders the manifests of one day: the fetch run's generation (the ledger counts a
    day's runs), so a re-fetch always replaces what it re-fetched, even with the clock stepped
    back. A manifest from before generations is ordered by its fetch time, and below any
    generation ("g" sorts after every digit)."""
    generation = manifest.get("generation")
    if isinstance(generation, int) and not isinstance(generation, bool) and generation > 0:
        return f"g{generation:012d}"
    return str(manifest["fetched_at"])


def load_usage_manifest(services: Services, manifest_name: str) -> StageOutcome:
    manifest = _read_manifest(services, manifest_name)
    key = manifest["activity_date"]
    day = date.fromisoformat(key)
    run_id = str(manifest["run_id"])
    bind(date=key, run_id=run_id)
    force = bool(manifest.get("force"))

    validated = ValidatedDay()
    with _gc_paused():
        for entry in manifest["pages"]:
            validate_page(validated, key, entry["blob"], _read_page(services, entry))

    by_page: dict[str, list[dict[str, Any]]] = {}
    for rejected in validated.rejected:
        by_page.setdefault(rejected.source_blob, []).append(
            {"index": rejected.index, "reason": rejected.reason, "record": rejected.record}
        )
    files = []
    for page_blob, records in by_page.items():
        lines = "".join(map(jsonl_line, records))
        files.append(
            _quarantine(
                services, names.RAW_CONTAINER, page_blob, run_id, "rejected-records.jsonl", lines.encode()
            )
        )

    rows = validated.rows_to_stage()
    unknown = sorted(validated.unknown_companies().items())
    validated.positions.clear()  # the columns hold the rows; the index by company is not needed
    quarantined = len(validated.rejected)
    checksum = _usage_checksum(manifest["pages"])
    version = manifest_version(manifest)
    status = services.warehouse.replace_usage_day(
        day,
        rows,
        Lineage(run_id, manifest_name, services.clock()),
        checksum=checksum,
        quarantined=quarantined,
        version=version,
        unknown=unknown,
    )
    outcome = StageOutcome(status, key, run_id, len(rows), quarantined)
    record = UsageRecord(
        version=version,
        run_id=run_id,
        manifest=manifest_name,
        checksum=checksum,
        received=validated.received,
        staged=len(rows),
        quarantined=quarantined,
        unknown=len(unknown),
        # The first companies whose usage is unknown (status names them; the warehouse's
        # stg.usage_unknown holds them all, with their reasons).
        unknown_companies=tuple(c for c, _ in unknown[:UNKNOWN_NAMED]),
        duplicates=validated.duplicates,
        # What the quality gate says of the quarantined records (kinds of reason, companies,
        # examples, where they are), small: the records themselves are in quarantine.
        quarantine_summary=summarize_quarantine(validated.rejected, files),
        force=force,
        loaded_at=services.clock().isoformat(),
    )
    _announce_staged(
        services, "usage", outcome, record, manifest_name, f"{validated.duplicates} duplicates", force=force
    )
    return outcome


# --- CRM --------------------------------------------------------------------------------------


class DropChanged(RuntimeError):
    """The CRM drop was replaced while it was being read. Not permanent: a redelivery reads the
    new version whole (and its own event loads it too)."""


def load_crm_drop(services: Services, blob_name: str) -> StageOutcome:
    """Check a CRM drop and stage it, holding no more of it than a chunk at a time: one pass
    hashes it, one checks every row (keeping one fingerprint per row for the duplicate rule),
    and the warehouse reads it once more as it stages it. Whether it is staged is
    `shared.domain.crm_drop`'s decision; this carries it out."""
    drop = _open_drop(services, blob_name)
    read = check_drop_date(drop.reader.snapshot_date, services.clock().date()) or _read_rows(drop)
    if isinstance(read, Reject):
        return _reject_crm_file(services, drop, read)
    checked, lost = read
    previous = _previous_snapshot(services, checked.snapshot_date)
    decision = decide_drop(checked, previous, forced=drop.forced)
    if isinstance(decision, Reject):
        return _reject_crm_file(services, drop, decision)
    return _stage_drop(services, drop, checked, lost, decision)


# What a dropped file became. unchanged: the same snapshot was already staged, and nothing is
# rebuilt for it; superseded: a later drop of its day is staged already.
FILE_STATUS: dict[StageStatus, FileStatus] = {
    "staged": "staged",
    "unchanged": "unchanged",
    "stale": "superseded",
}


@dataclass(frozen=True)
class _Drop:
    """The CRM drop being loaded: this version of the blob, and a reader of its bytes."""

    blob_name: str
    run_id: str  # deterministic: a redelivered event is the same run
    version: str  # the later drop of a day wins
    content_hash: str  # its checksum: the same drop again is "unchanged" without staging a row
    has_nul: bool
    forced: bool
    reader: CrmReader


def _open_drop(services: Services, blob_name: str) -> _Drop:
    try:
        info = services.blobs.info(names.CRM_CONTAINER, blob_name)
        content_hash, has_nul = _scan(services.blobs.chunks(names.CRM_CONTAINER, blob_name))
    except BlobNotFound:
        raise DropMissing(f"CRM drop {blob_name} no longer exists") from None
    run_id = f"crm-{content_hash[:12]}"
    bind(run_id=run_id)

    def chunks() -> Iterator[bytes]:
        """The drop once more, checked to be the bytes that were hashed."""
        digest = hashlib.sha256()
        for chunk in services.blobs.chunks(names.CRM_CONTAINER, blob_name):
            digest.update(chunk)
            yield chunk
        if digest.hexdigest() != content_hash:
            raise DropChanged(f"CRM drop {blob_name} changed while it was read; it is read again")

    return _Drop(
        blob_name,
        run_id,
        f"{info.last_modified.isoformat(timespec='microseconds')}|{blob_name}",
        content_hash,
        has_nul,
        str(info.metadata.get("force", "")).lower() == "true",
        CrmReader(chunks, blob_name, info.created_at),
    )


def _read_rows(drop: _Drop) -> tuple[CheckedDrop, set[int]] | Reject:
    """Every row checked: what the decision needs, and the lines of the duplicates a later row
    replaced (left out of staging); or the file's rejection."""
    reader = drop.reader
    try:
        if drop.has_nul:
            raise CrmFileRejected(NUL_REASON)
        with _gc_paused():
            fingerprints, lines = array("q"), array("q")
            for line, row in reader.valid_rows():
                fingerprints.append(hash(row[0]))
                lines.append(line)
            losers = reader.duplicate_losers(fingerprints, lines)
            rejected, warnings = reader.finish(losers)
    except CrmFileRejected as exc:
        return Reject(str(exc), tuple(exc.rejected), exc.data_rows or 0)
    checked = CheckedDrop(
        reader.snapshot_date, reader.data_rows, len(lines) - len(losers), rejected, warnings
    )
    return checked, {r.line for r in losers}


def _stage_drop(
    services: Services, drop: _Drop, checked: CheckedDrop, lost: set[int], decision: Accept
) -> StageOutcome:
    """Stage an accepted drop: its warnings alerted, its rejected rows quarantined, the snapshot
    replaced in the warehouse, the file and the snapshot recorded, the transform woken."""
    key = checked.snapshot_date.isoformat()
    for warning in decision.alerts:
        _warn(services, drop, f"CRM file {drop.blob_name}: {warning}", key)
    bind(date=key)
    quarantined_at = _quarantine_rows(services, drop, checked.rejected)
    for warning in decision.warnings:
        log.warning("CRM file %s: %s", drop.blob_name, warning)
    previous = read_record(services.ledger, CrmRecord, key)  # the drop staged for that day so far
    status = _replace_snapshot(services, drop, checked, lost)
    warnings = list(decision.warnings)
    replaced = replaced_snapshot_warning(drop.blob_name, previous.blob, key) if previous else None
    if status == "staged" and replaced:
        warnings.append(replaced)
        log.warning("CRM file %s: %s", drop.blob_name, replaced)
        _warn(services, drop, f"CRM file {replaced}", key)
    staged = FileRecord(
        blob=drop.blob_name,
        status=FILE_STATUS[status],
        snapshot_date=key,
        run_id=drop.run_id,
        data_rows=checked.data_rows,
        staged=checked.companies,
        quarantined=len(checked.rejected),
        quarantine=quarantined_at,
        warnings=tuple(warnings),
        loaded_at=services.clock().isoformat(),
    )
    put_record(services.ledger, names.file_key(drop.blob_name), staged)
    snapshot = CrmRecord(
        version=drop.version,
        run_id=drop.run_id,
        blob=drop.blob_name,
        checksum=drop.content_hash,
        data_rows=checked.data_rows,
        staged=checked.companies,
        quarantined=len(checked.rejected),
        loaded_at=services.clock().isoformat(),
    )
    outcome = StageOutcome(status, key, drop.run_id, checked.companies, len(checked.rejected))
    extra = f"{checked.data_rows} data rows"
    _announce_staged(services, "crm", outcome, snapshot, drop.blob_name, extra, force=False)
    return outcome


def _warn(services: Services, drop: _Drop, message: str, key: str) -> None:
    raise_alert(services.bus, Alert("warning", "crm-load", "crm_file_warning", message, drop.run_id, key))


def _quarantine_rows(services: Services, drop: _Drop, rejected: Sequence[RejectedRow]) -> str:
    """The drop's rejected rows, quarantined: where they are ("" when there are none)."""
    if not rejected:
        return ""
    text = "".join(json.dumps(_row_record(r), ensure_ascii=False) + "\n" for r in rejected)
    leaf = _quarantine(
        services, names.CRM_CONTAINER, drop.blob_name, drop.run_id, "rejected-rows.jsonl", text.encode()
    )
    return f"{names.QUARANTINE_CONTAINER}/{leaf}"


def _replace_snapshot(services: Services, drop: _Drop, checked: CheckedDrop, lost: set[int]) -> StageStatus:
    """The snapshot's rows replaced in the warehouse; a warehouse that cannot take them (out of
    memory) leaves the file recorded as failed, and the alert says why."""
    try:
        with _gc_paused():
            return services.warehouse.replace_crm_snapshot(
                checked.snapshot_date,
                _StagedRows(drop.reader, lost),
                Lineage(drop.run_id, drop.blob_name, services.clock()),
                checksum=drop.content_hash,
                version=drop.version,
            )
    except PermanentError as exc:
        failed = FileRecord(
            blob=drop.blob_name,
            status="failed",
            reason=str(exc),
            snapshot_date=checked.snapshot_date.isoformat(),
            run_id=drop.run_id,
            data_rows=checked.data_rows,
            loaded_at=services.clock().isoformat(),
        )
        put_record(services.ledger, names.file_key(drop.blob_name), failed)
        raise


def _scan(chunks: Iterable[bytes]) -> tuple[str, bool]:
    """The file's SHA-256 (its run id and checksum) and whether it holds a NUL byte (UTF-16 and
    binary uploads are often "valid" UTF-8, and csv would choke on NUL anyway)."""
    digest, has_nul = hashlib.sha256(), False
    for chunk in chunks:
        digest.update(chunk)
        has_nul = has_nul or b"\x00" in chunk
    return digest.hexdigest(), has_nul


class _StagedRows:
    """The rows to stage, read from the file again each time they are iterated (a warehouse may
    retry its transaction): the valid rows less the duplicates a later row replaced."""

    def __init__(self, reader: CrmReader, lost: set[int]) -> None:
        self.reader, self.lost = reader, lost

    def __iter__(self) -> Iterator[CrmRow]:
        lost = self.lost
        return (row for line, row in self.reader.valid_rows() if line not in lost)


def _reject_crm_file(services: Services, drop: _Drop, rejection: Reject) -> StageOutcome:
    """Nothing from the file is staged: it goes to quarantine with the reason, the ledger says
    so, and one alert is raised."""
    blob_name, run_id, reason = drop.blob_name, drop.run_id, rejection.reason
    try:
        data = services.blobs.get(names.CRM_CONTAINER, blob_name)  # the failure path: held once, to copy it
    except BlobNotFound:
        raise DropMissing(f"CRM drop {blob_name} no longer exists") from None
    _quarantine(services, names.CRM_CONTAINER, blob_name, run_id, blob_name.rsplit("/", 1)[-1], data)
    rejected_rows = [_row_record(r) for r in rejection.rejected]
    _quarantine(
        services,
        names.CRM_CONTAINER,
        blob_name,
        run_id,
        "reason.json",
        json.dumps(
            {"blob": blob_name, "reason": reason, "rejected_rows": rejected_rows},
            ensure_ascii=False,
            indent=1,
        ).encode(),
    )
    folder = _quarantine_folder(names.CRM_CONTAINER, blob_name, run_id)
    rejected = FileRecord(
        blob=blob_name,
        status="rejected",
        reason=reason,
        run_id=run_id,
        data_rows=rejection.data_rows,
        quarantined=len(rejected_rows),
        quarantine=f"{names.QUARANTINE_CONTAINER}/{folder}",
        loaded_at=services.clock().isoformat(),
    )
    put_record(services.ledger, names.file_key(blob_name), rejected)
    raise_alert(
        services.bus,
        Alert("error", "crm-load", "crm_file_rejected", f"CRM file {blob_name} rejected: {reason}", run_id),
    )
    return StageOutcome("rejected", "", run_id, message=reason)


def _previous_snapshot(services: Services, snapshot: date) -> PreviousSnapshot | None:
    """The latest staged snapshot before this one: the size check's yardstick."""
    earlier = [
        (k, r) for k, r in query_records(services.ledger, CrmRecord).items() if k < snapshot.isoformat()
    ]
    if not earlier:
        return None
    key, record = max(earlier, key=lambda kr: kr[0])
    return PreviousSnapshot(date.fromisoformat(key), record.staged)


def _row_record(row: RejectedRow) -> dict[str, Any]:
    return {"line": row.line, "reason": row.reason, "fields": row.fields}
