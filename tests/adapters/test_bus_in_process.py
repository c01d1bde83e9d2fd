"""The in-process bus: the Service Bus semantics the handlers rely on (Service Bus itself cannot run here)."""

from __future__ import annotations

import random
import threading
from concurrent.futures import ThreadPoolExecutor
from types import SimpleNamespace

import pytest

from shared.adapters import bus_in_process
from shared.adapters.bus_in_process import InProcessBus
from shared.domain import names
from shared.ports import OutgoingMessage

# =========================================================================================
# InProcessBus: the local stand-in for Azure Service Bus (no twin that runs here)
#
# The Service Bus behaviour it mimics, as the handlers rely on it:
# * peek-lock, at-least-once: a received message is locked; `complete` removes it,
#   `abandon` unlocks it and it is delivered again with DeliveryCount + 1;
# * MaxDeliveryCount: when a delivery that reaches the limit is abandoned, the message
#   moves to the queue's dead-letter sub-queue with DeadLetterReason
#   "MaxDeliveryCountExceeded"; the queues are created with `forwardDeadLetteredMessagesTo`
#   = `alerts`, so a copy lands on `alerts` (whose own dead letters are terminal);
# * duplicate detection: a MessageId seen on the same queue within the window is dropped;
# * no ordering promise: receivers must cope with any order (`receive(rng=...)`).
# =========================================================================================

Q = names.FETCH_QUEUE
ALERTS = names.ALERTS_QUEUE


def _msg(message_id: str, **properties: str | int | bool) -> OutgoingMessage:
    return OutgoingMessage(
        body={"id": message_id, "day": "2024-05-01"}, message_id=message_id, properties=properties
    )


@pytest.fixture
def bus() -> InProcessBus:
    return InProcessBus(max_delivery_count=3)


def test_bus_send_receive(bus: InProcessBus) -> None:
    bus.send(Q, [_msg("m1", Kind="fetch")])
    envelope = bus.receive(Q)
    assert envelope is not None
    assert envelope.message_id == "m1"
    assert envelope.json() == {"id": "m1", "day": "2024-05-01"}
    assert envelope.properties == {"Kind": "fetch"}
    assert envelope.delivery_count == 1
    assert envelope.queue == Q
    assert bus.receive(Q) is None  # locked: not delivered twice at once
    assert bus.receive(names.TRANSFORM_QUEUE) is None


def test_bus_complete_removes(bus: InProcessBus) -> None:
    bus.send(Q, [_msg("m1")])
    envelope = bus.receive(Q)
    assert envelope is not None
    bus.complete(envelope)
    assert bus.depth(Q) == 0
    assert bus.receive(Q) is None
    assert bus.dead_letters == {}


def test_bus_abandon_redelivers(bus: InProcessBus) -> None:
    bus.send(Q, [_msg("m1")])
    first = bus.receive(Q)
    assert first is not None
    assert bus.abandon(first, "transient") is False
    again = bus.receive(Q)
    assert again is not None
    assert again.message_id == "m1" and again.delivery_count == 2
    assert again.json() == {"id": "m1", "day": "2024-05-01"}


def test_bus_max_deliveries_dead_letters_and_forwards_to_alerts(bus: InProcessBus) -> None:
    bus.send(Q, [_msg("m1", Kind="fetch")])
    for attempt in range(1, bus.max_delivery_count + 1):
        envelope = bus.receive(Q)
        assert envelope is not None and envelope.delivery_count == attempt
        dead = bus.abandon(envelope, f"boom on attempt {attempt}")
        assert dead is (attempt == bus.max_delivery_count)
    assert bus.receive(Q) is None
    assert [e.message_id for e in bus.dead_letters[Q]] == ["m1"]
    assert bus.dead_letters[Q][0].dead_letter_reason == "MaxDeliveryCountExceeded"

    alert = bus.receive(ALERTS)
    assert alert is not None
    assert alert.message_id == "m1"
    assert alert.json() == {"id": "m1", "day": "2024-05-01"}
    assert alert.delivery_count == 1
    assert alert.dead_letter_reason == "MaxDeliveryCountExceeded"
    assert alert.dead_letter_error_description is not None
    assert "boom on attempt 3" in alert.dead_letter_error_description
    assert alert.dead_letter_source == Q
    assert alert.properties["Kind"] == "fetch"
    assert alert.properties["DeadLetterReason"] == "MaxDeliveryCountExceeded"
    assert "boom on attempt 3" in str(alert.properties["DeadLetterErrorDescription"])
    assert bus.receive(ALERTS) is None


def test_bus_alerts_dead_letters_are_terminal(bus: InProcessBus) -> None:
    bus.send(Q, [_msg("m1")])
    for _ in range(bus.max_delivery_count):  # dead-letter it on Q: forwarded to alerts
        envelope = bus.receive(Q)
        assert envelope is not None
        bus.abandon(envelope, "boom")
    for _ in range(bus.max_delivery_count):  # the alert handler fails too
        alert = bus.receive(ALERTS)
        assert alert is not None
        bus.abandon(alert, "alert webhook down")
    assert bus.receive(ALERTS) is None  # not forwarded to itself again
    assert [e.message_id for e in bus.dead_letters[ALERTS]] == ["m1"]
    assert all(not pending for pending in bus.queues.values())
    assert bus.idle()


def test_bus_duplicate_detection_within_window(bus: InProcessBus) -> None:
    bus.send(Q, [_msg("m1"), _msg("m1")])  # same batch
    bus.send(Q, [_msg("m1")])  # later send
    assert bus.depth(Q) == 1
    bus.send(names.TRANSFORM_QUEUE, [_msg("m1")])  # another queue: its own ids
    assert bus.depth(names.TRANSFORM_QUEUE) == 1


def test_bus_duplicate_detection_window_zero() -> None:
    bus = InProcessBus(duplicate_window_s=0)
    bus.send(Q, [_msg("m1")])
    bus.send(Q, [_msg("m1")])
    assert bus.depth(Q) == 2


def test_bus_duplicate_detection_window_expires(monkeypatch: pytest.MonkeyPatch) -> None:
    now = [1000.0]
    monkeypatch.setattr(bus_in_process, "time", SimpleNamespace(monotonic=lambda: now[0]))
    bus = InProcessBus(duplicate_window_s=600)
    bus.send(Q, [_msg("m1")])
    now[0] += 599.0
    bus.send(Q, [_msg("m1")])
    assert bus.depth(Q) == 1
    now[0] += 1.5  # 600.5 s after the first send
    bus.send(Q, [_msg("m1")])
    assert bus.depth(Q) == 2


def test_bus_idle(bus: InProcessBus) -> None:
    assert bus.idle()
    bus.send(Q, [_msg("m1")])
    assert not bus.idle()  # pending
    envelope = bus.receive(Q)
    assert envelope is not None
    assert not bus.idle()  # locked, queue empty
    bus.complete(envelope)
    assert bus.idle()


def test_bus_receive_with_rng_delivers_all_in_any_order(bus: InProcessBus) -> None:
    ids = [f"m{i:02d}" for i in range(30)]
    bus.send(Q, [_msg(i) for i in ids])
    rng = random.Random(1234)
    order: list[str] = []
    while (envelope := bus.receive(Q, rng)) is not None:
        assert envelope.delivery_count == 1
        order.append(envelope.message_id)
        bus.complete(envelope)
    assert sorted(order) == ids  # each exactly once
    assert order != ids  # not simply FIFO
    assert bus.idle()


def test_bus_receive_without_rng_is_fifo(bus: InProcessBus) -> None:
    ids = [f"m{i:02d}" for i in range(10)]
    bus.send(Q, [_msg(i) for i in ids])
    order = []
    while (envelope := bus.receive(Q)) is not None:
        order.append(envelope.message_id)
    assert order == ids


def test_bus_thread_safe_send(bus: InProcessBus) -> None:
    threads, per_thread = 4, 250
    start = threading.Barrier(threads)

    def sender(t: int) -> None:
        start.wait()
        for i in range(per_thread):
            bus.send(Q, [_msg(f"t{t}-{i}")])

    with ThreadPoolExecutor(threads) as pool:
        [f.result(timeout=60) for f in [pool.submit(sender, t) for t in range(threads)]]
    assert bus.depth(Q) == threads * per_thread
    received = set()
    while (envelope := bus.receive(Q)) is not None:
        received.add(envelope.message_id)
        bus.complete(envelope)
    assert received == {f"t{t}-{i}" for t in range(threads) for i in range(per_thread)}
    assert bus.idle()


def test_bus_peek_sees_without_receiving(bus: InProcessBus) -> None:
    """GET /api/health peeks every queue: nothing is locked, received or sent (issue 20)."""
    assert [bus.peek(q) for q in names.QUEUES] == [0, 0, 0, 0]
    bus.send(Q, [_msg("m1"), _msg("m2")])
    assert bus.peek(Q) == 1  # at most one is looked at
    assert bus.depth(Q) == 2 and bus.idle() is False
    received = bus.receive(Q)
    assert received is not None and received.delivery_count == 1  # the peek was no delivery
    assert bus.sent_count == {Q: 2}
    with pytest.raises(KeyError, match="no queue"):
        bus.peek("fetch-request")


def test_a_scheduled_message_for_a_day_comes_due_once_per_process(monkeypatch: pytest.MonkeyPatch) -> None:
    # A fetch the API keeps asking to wait a moment is rescheduled a moment later each time:
    # one command delivers one of them that came due while it ran, the next command the next.
    from datetime import UTC, datetime, timedelta

    now = datetime(2026, 10, 2, 6, 0, tzinfo=UTC)
    monkeypatch.setattr(bus_in_process, "utc_now", lambda: now)
    bus = InProcessBus()

    def later(message_id: str, seconds: int, day: str = "2026-10-01") -> OutgoingMessage:
        at = now + timedelta(seconds=seconds)
        return OutgoingMessage({"date": day}, message_id, {"date": day}, scheduled_enqueue_time_utc=at)

    bus.send(Q, [later("first", 1), later("second", 2), later("other-day", 2, "2026-10-02")])
    monkeypatch.setattr(bus_in_process, "utc_now", lambda: now + timedelta(seconds=3))

    delivered = [bus.receive(Q), bus.receive(Q), bus.receive(Q)]

    assert [e.message_id if e else None for e in delivered] == ["first", "other-day", None]
    assert [body["date"] for _, body in bus.scheduled_messages(Q)] == ["2026-10-01"]  # held
    for envelope in delivered[:2]:
        assert envelope is not None
        bus.complete(envelope)
    assert bus.idle()  # the command ends
