"""Read-modify-write of a ledger entry, written once: every conditional update goes through here.
And the typed records of `shared.domain.ledger_records` read, written and updated."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from datetime import date
from typing import Any

from tenacity import Retrying, retry_if_exception_type, stop_after_attempt, wait_random

from shared.domain.ledger_records import LedgerRecord, R, from_data, to_data
from shared.ports import ConcurrencyConflict, LedgerEntry, RunLedger

Change = Callable[[Mapping[str, Any] | None], Mapping[str, Any] | None]
ATTEMPTS = 10


def update_entry(ledger: RunLedger, partition: str, key: str, change: Change) -> LedgerEntry | None:
    """Apply `change` to the entry with compare-and-swap on its etag.

    `change` gets the stored data (None when there is none) and returns the data to write, or
    None to leave the entry as it is. A racing writer makes the read and the change run again;
    after ATTEMPTS lost races ConcurrencyConflict is raised, so the message is redelivered.
    """
    for attempt in Retrying(
        stop=stop_after_attempt(ATTEMPTS),
        wait=wait_random(0, 0.02),  # racing writers that retry in step would race again
        retry=retry_if_exception_type(ConcurrencyConflict),
        reraise=True,
    ):
        with attempt:
            current = ledger.get(partition, key)
            data = change(current.data if current else None)
            if data is None:
                return current
            return ledger.put(partition, key, data, etag=current.etag if current else "")
    raise AssertionError("unreachable: Retrying either returns or raises")


def read_record(ledger: RunLedger, cls: type[R], key: str) -> R | None:
    """The typed entry `key` of the record's partition, None when there is none."""
    entry = ledger.get(cls.PARTITION, key)
    return from_data(cls, entry.data) if entry is not None else None


def query_records(ledger: RunLedger, cls: type[R]) -> dict[str, R]:
    """Every typed entry of the record's partition, by key, in key order."""
    return {entry.key: from_data(cls, entry.data) for entry in ledger.query(cls.PARTITION)}


def entries_between(ledger: RunLedger, partition: str, first: date, last: date) -> list[LedgerEntry]:
    """The entries of a partition keyed by day (`days`, `usage`, `crm`, `fetch`) from `first` to
    `last`, both included, in date order: ISO dates (four-digit years) sort as text as they do as
    dates, so the ledger reads those days alone, however long the history."""
    return ledger.query_range(partition, first.isoformat(), last.isoformat())


def put_record(ledger: RunLedger, key: str, record: LedgerRecord) -> LedgerEntry:
    """Write the whole entry (no compare-and-swap: the entry has one writer at a time)."""
    return ledger.put(record.PARTITION, key, to_data(record))


def update_record(
    ledger: RunLedger, cls: type[R], key: str, change: Callable[[R | None], R | None]
) -> R | None:
    """`update_entry` on typed records: `change` gets the stored record (None when there is none)
    and returns the record to write, or None (or the record unchanged, or an empty one where
    there was none) to leave it as it is. Fields the record does not know are written back."""

    def typed(current: Mapping[str, Any] | None) -> Mapping[str, Any] | None:
        before = from_data(cls, current) if current is not None else None
        after = change(before)
        unchanged = before if before is not None else from_data(cls, None)
        return None if after is None or after == unchanged else to_data(after)

    entry = update_entry(ledger, cls.PARTITION, key, typed)
    return from_data(cls, entry.data) if entry is not None else None
