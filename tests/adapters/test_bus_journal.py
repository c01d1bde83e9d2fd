"""The local bus's journal: messages outlive the process that held them, as on Service Bus."""

from __future__ import annotations

from pathlib import Path

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
