"""RunLedger contract: SQLite and Table storage (on Azurite) behave the same."""

from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest

from shared.ports import ConcurrencyConflict, RunLedger

# =========================================================================================
# RunLedger contract
# =========================================================================================


def test_ledger_get_missing(ledger: RunLedger) -> None:
    assert ledger.get("fetch", "2024-05-01") is None
    ledger.put("fetch", "2024-05-02", {"state": "done"})
    ledger.put("usage", "2024-05-01", {"state": "done"})
    assert ledger.get("fetch", "2024-05-01") is None  # other key, other partition


def test_ledger_put_then_get(ledger: RunLedger) -> None:
    written = ledger.put("fetch", "2024-05-01", {"state": "running", "pages": 3})
    got = ledger.get("fetch", "2024-05-01")
    assert got is not None
    assert (got.partition, got.key) == ("fetch", "2024-05-01")
    assert dict(got.data) == {"state": "running", "pages": 3}
    assert isinstance(got.etag, str) and got.etag
    assert got.etag == written.etag
    assert dict(written.data) == {"state": "running", "pages": 3}


def test_ledger_put_without_etag_overwrites_whole_entry(ledger: RunLedger) -> None:
    first = ledger.put("fetch", "k1", {"state": "running", "pages": 3})
    second = ledger.put("fetch", "k1", {"state": "done"})
    got = ledger.get("fetch", "k1")
    assert got is not None
    assert dict(got.data) == {"state": "done"}  # replaced, not merged
    assert got.etag == second.etag != first.etag


def test_ledger_put_with_current_etag(ledger: RunLedger) -> None:
    first = ledger.put("fetch", "k1", {"n": 1})
    second = ledger.put("fetch", "k1", {"n": 2}, etag=first.etag)
    assert second.etag != first.etag
    got = ledger.get("fetch", "k1")
    assert got is not None and dict(got.data) == {"n": 2} and got.etag == second.etag
    third = ledger.put("fetch", "k1", {"n": 3}, etag=second.etag)
    assert third.etag not in (first.etag, second.etag)


def test_ledger_put_with_stale_etag_conflicts(ledger: RunLedger) -> None:
    first = ledger.put("fetch", "k1", {"n": 1})
    second = ledger.put("fetch", "k1", {"n": 2}, etag=first.etag)
    with pytest.raises(ConcurrencyConflict):
        ledger.put("fetch", "k1", {"n": 99}, etag=first.etag)
    got = ledger.get("fetch", "k1")
    assert got is not None and dict(got.data) == {"n": 2} and got.etag == second.etag


def test_ledger_put_with_etag_on_missing_entry_conflicts(ledger: RunLedger) -> None:
    other = ledger.put("fetch", "k1", {"n": 1})
    with pytest.raises(ConcurrencyConflict):
        ledger.put("fetch", "k2", {"n": 1}, etag=other.etag)
    assert ledger.get("fetch", "k2") is None


def test_ledger_create_only_if_absent(ledger: RunLedger) -> None:
    created = ledger.put("alerts", "fp-1", {"count": 1}, etag="")
    with pytest.raises(ConcurrencyConflict):
        ledger.put("alerts", "fp-1", {"count": 2}, etag="")
    got = ledger.get("alerts", "fp-1")
    assert got is not None and dict(got.data) == {"count": 1} and got.etag == created.etag


def test_ledger_query_partition_sorted(ledger: RunLedger) -> None:
    keys = ["2024-05-03", "2024-05-01", "2024-05-10", "2024-05-02", "2024-04-30"]
    for i, key in enumerate(keys):
        ledger.put("days", key, {"i": i})
    ledger.put("days-x", "2024-05-01", {"i": -1})
    ledger.put("day", "2024-05-01", {"i": -2})
    ledger.put("usage", "2024-05-01", {"i": -3})

    entries = ledger.query("days")
    assert [e.key for e in entries] == sorted(keys)
    assert all(e.partition == "days" for e in entries)
    assert {e.key: e.data["i"] for e in entries} == {k: i for i, k in enumerate(keys)}
    for entry in entries:
        got = ledger.get("days", entry.key)
        assert got is not None and got.etag == entry.etag
    assert ledger.query("nothing") == []
    assert [e.key for e in ledger.query("day")] == ["2024-05-01"]


def test_ledger_query_range_both_ends_included(ledger: RunLedger) -> None:
    keys = ["2024-04-30", "2024-05-01", "2024-05-02", "2024-05-03", "2024-05-10", "2024-06-01"]
    for i, key in enumerate(reversed(keys)):
        ledger.put("days", key, {"i": i})
    ledger.put("days-x", "2024-05-02", {"i": -1})  # the same keys in other partitions
    ledger.put("day", "2024-05-02", {"i": -2})
    ledger.put("usage", "2024-05-02", {"i": -3})

    entries = ledger.query_range("days", "2024-05-01", "2024-05-10")
    assert [e.key for e in entries] == ["2024-05-01", "2024-05-02", "2024-05-03", "2024-05-10"]
    assert all(e.partition == "days" for e in entries)
    whole = {e.key: e for e in ledger.query("days")}
    assert all(e == whole[e.key] for e in entries)  # the same data and etags as a whole read
    # Bounds need not be keys; a range with no entry, or an empty one, is empty.
    assert [e.key for e in ledger.query_range("days", "2024-05-04", "2024-05-31")] == ["2024-05-10"]
    assert [e.key for e in ledger.query_range("days", "2024-05-02", "2024-05-02")] == ["2024-05-02"]
    assert ledger.query_range("days", "2024-05-04", "2024-05-09") == []
    assert ledger.query_range("days", "2024-05-10", "2024-05-01") == []
    assert ledger.query_range("nothing", "0000", "9999") == []
    assert [e.key for e in ledger.query_range("days", "0", "9")] == keys


def test_ledger_query_range_compares_keys_as_text(ledger: RunLedger) -> None:
    """Character by character, as Table storage orders RowKeys: a longer key after its prefix,
    digits before letters, upper case before lower case."""
    keys = ["2024-05-01", "2024-05-01a", "2024-05-01~", "2024-05-1", "2024-05-A", "2024-05-a", "quota:x"]
    for key in keys:
        ledger.put("replays", key, {"k": key})
    assert [e.key for e in ledger.query_range("replays", "2024-05-01", "2024-05-01~")] == keys[:3]
    assert [e.key for e in ledger.query_range("replays", "2024-05-1", "2024-05-a")] == keys[3:6]
    assert [e.key for e in ledger.query_range("replays", "2024-05-01", "2024-05-31")] == keys[:4]
    assert [e.data["k"] for e in ledger.query_range("replays", "quota:", "quota:~")] == ["quota:x"]


TYPED_VALUES: dict[str, Any] = {
    "text": "done",
    "empty_text": "",
    "unicode": "ünï 日本 😀",
    "digits_text": "0042",
    "int": 42,
    "zero": 0,
    "negative": -7,
    "big_int": 2**40,
    "float": 1.5,
    "whole_float": 2.0,
    "tiny_float": 1e-9,
    "true": True,
    "false": False,
    "none": None,
}


def test_ledger_values_keep_their_types(ledger: RunLedger) -> None:
    written = ledger.put("fetch", "typed", TYPED_VALUES)
    got = ledger.get("fetch", "typed")
    (queried,) = ledger.query("fetch")
    for entry in (written, got, queried):
        assert entry is not None
        assert dict(entry.data) == TYPED_VALUES
        for field_name, value in TYPED_VALUES.items():
            assert type(entry.data[field_name]) is type(value), field_name


def test_ledger_concurrent_read_modify_write(ledger: RunLedger) -> None:
    ledger.put("counters", "c", {"n": 0})
    threads, increments = 8, 25
    start = threading.Barrier(threads)

    def worker() -> int:
        conflicts = 0
        start.wait()
        for _ in range(increments):
            while True:
                entry = ledger.get("counters", "c")
                assert entry is not None
                try:
                    ledger.put("counters", "c", {"n": entry.data["n"] + 1}, etag=entry.etag)
                    break
                except ConcurrencyConflict:
                    conflicts += 1
        return conflicts

    with ThreadPoolExecutor(threads) as pool:
        futures = [pool.submit(worker) for _ in range(threads)]
        [f.result(timeout=60) for f in futures]  # re-raises any worker error
    final = ledger.get("counters", "c")
    assert final is not None and final.data["n"] == threads * increments
