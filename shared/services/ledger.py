"""Read-modify-write of a ledger entry, written once: every conditional update goes through here."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from tenacity import Retrying, retry_if_exception_type, stop_after_attempt, wait_random

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
