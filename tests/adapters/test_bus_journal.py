"""The local bus's journal: messages outlive the process that held them, as on Service Bus."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from shared.adapters.bus_in_process import InProcessBus
from shared.adapters.bus_journal import BusJournal
from shared.ports import OutgoingMessage


def bus(path: Path, **kwargs: object) -> InProcessBus:
    return InProcessBus(journal=BusJournal(path), **kwargs)  # type: ignore[arg-type]


def test_pending_messages_survive_a_restart_in_order(tmp_path: Path) -> None:
    first = bus(tmp_path / "bus.sqlite3")
    first.send("transform", [OutgoingMessage({"n": i}, f"m{i}") for i in range(3)])
    done = first.receive("transform")
    assert done is not None
    first.complete(done)
    held = first.receive("transform")  # the process dies holding this one
    assert held is not None and held.message_id == "m1"

    second = bus(tmp_path / "bus.sqlite3")
    redelivered = second.receive("transform")
    assert redelivered is not None
    assert (redelivered.message_id, redelivered.delivery_count) == ("m1", 2)  # the lost lock counted
    assert second.receive("transform").message_id == "m2"  # type: ignore[union-attr]
    assert second.receive("transform") is None


def test_duplicate_detection_survives_a_restart(tmp_path: Path) -> None:
    bus(tmp_path / "bus.sqlite3").send("alerts", [OutgoingMessage({"a": 1}, "same")])
    again = bus(tmp_path / "bus.sqlite3")
    again.send("alerts", [OutgoingMessage({"a": 1}, "same")])
    assert again.depth("alerts") == 1


def test_a_message_whose_consumers_keep_dying_is_dead_lettered(tmp_path: Path) -> None:
    path = tmp_path / "bus.sqlite3"
    bus(path, max_delivery_count=2).send("transform", [OutgoingMessage({"poison": True}, "p")])
    for _ in range(2):  # two processes die while handling it
        assert bus(path, max_delivery_count=2).receive("transform") is not None
    last = bus(path, max_delivery_count=2)
    assert last.receive("transform") is None
    assert [e.message_id for e in last.dead_letters["transform"]] == ["p"]
    forwarded = last.receive("alerts")
    assert forwarded is not None and "lock lost" in (forwarded.dead_letter_error_description or "")
    assert bus(path, max_delivery_count=2).depth("transform") == 0  # gone for good


def test_a_scheduled_message_waits_for_its_time_across_restarts(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import shared.adapters.bus_in_process as bus_in_process

    at = datetime.now(UTC) + timedelta(hours=24)
    first = bus(tmp_path / "bus.sqlite3")
    first.send(
        "fetch-requests", [OutgoingMessage({"date": "2026-10-01"}, "later", scheduled_enqueue_time_utc=at)]
    )
    assert first.idle() and first.depth("fetch-requests") == 0  # a drain does not wait for it
    assert first.receive("fetch-requests") is None
    assert [when for when, _ in first.scheduled_messages("fetch-requests")] == [at]
    first.close()

    second = bus(tmp_path / "bus.sqlite3")  # the next command, before that time
    assert second.receive("fetch-requests") is None
    second.close()

    monkeypatch.setattr(bus_in_process, "utc_now", lambda: at + timedelta(seconds=1))
    third = bus(tmp_path / "bus.sqlite3")  # the first command after it delivers it
    delivered = third.receive("fetch-requests")
    assert delivered is not None and delivered.json() == {"date": "2026-10-01"}
    third.complete(delivered)
    assert bus(tmp_path / "bus.sqlite3").receive("fetch-requests") is None


def test_a_journal_written_before_scheduled_messages_is_read(tmp_path: Path) -> None:
    import sqlite3

    path = tmp_path / "bus.sqlite3"
    old = sqlite3.connect(path)
    old.executescript(
        "CREATE TABLE messages (seq INTEGER PRIMARY KEY, queue TEXT NOT NULL, message_id TEXT NOT NULL,"
        " body BLOB NOT NULL, properties TEXT NOT NULL, delivery_count INTEGER NOT NULL,"
        " enqueued_at TEXT NOT NULL, dead_letter_reason TEXT, dead_letter_error_description TEXT,"
        " dead_letter_source TEXT);"
    )
    old.execute(
        "INSERT INTO messages VALUES (1, 'transform', 'm1', ?, '{}', 0, ?, NULL, NULL, NULL)",
        (b'{"n": 1}', datetime.now(UTC).isoformat()),
    )
    old.commit()
    old.close()

    delivered = bus(path).receive("transform")
    assert delivered is not None and delivered.message_id == "m1"
