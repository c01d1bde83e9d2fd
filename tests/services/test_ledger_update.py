"""The one compare-and-swap loop: a racing writer makes the change run again; too many races raise."""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Any

import pytest

from shared.adapters.ledger_sqlite import SqliteLedger
from shared.ports import ConcurrencyConflict, LedgerEntry
from shared.services.ledger import ATTEMPTS, update_entry


def test_no_update_is_lost_under_concurrent_writers(tmp_path: Path) -> None:
    ledger = SqliteLedger(tmp_path / "ledger.sqlite3")
    landed: list[int] = []

    def bump() -> None:
        for _ in range(20):
            try:
                update_entry(ledger, "p", "k", lambda cur: {"n": int((cur or {}).get("n", 0)) + 1})
                landed.append(1)
            except ConcurrencyConflict:
                pass  # gave up: the caller's message would be redelivered

    threads = [threading.Thread(target=bump) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    entry = ledger.get("p", "k")
    assert entry is not None and entry.data["n"] == len(landed)  # every landed update counted once
    assert len(landed) >= 60  # the jittered retries let most of 4 x 20 racing updates through


def test_a_change_that_returns_none_writes_nothing(tmp_path: Path) -> None:
    ledger = SqliteLedger(tmp_path / "ledger.sqlite3")
    first = ledger.put("p", "k", {"version": "2"})
    kept = update_entry(ledger, "p", "k", lambda cur: None)
    assert kept == first and ledger.get("p", "k") == first


class AlwaysRacing(SqliteLedger):
    def put(self, partition: str, key: str, data: Any, *, etag: str | None = None) -> LedgerEntry:
        self.calls = getattr(self, "calls", 0) + 1
        raise ConcurrencyConflict(f"ledger entry {partition}/{key} changed concurrently")


def test_it_gives_up_after_its_attempts_with_the_conflict(tmp_path: Path) -> None:
    ledger = AlwaysRacing(tmp_path / "ledger.sqlite3")
    with pytest.raises(ConcurrencyConflict):
        update_entry(ledger, "p", "k", lambda cur: {"x": 1})
    assert ledger.calls == ATTEMPTS
