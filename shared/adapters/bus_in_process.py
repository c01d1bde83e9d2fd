"""In-process message bus with Service Bus semantics that matter to the handlers.

* at-least-once: a message stays until completed; abandoning it redelivers it with a
  higher delivery count;
* max deliveries: past `max_delivery_count` it is dead-lettered, and dead letters are
  forwarded to the `alerts` queue (whose own dead letters are terminal), as the Bicep
  configures `forwardDeadLetteredMessagesTo`;
* duplicate detection: a message id seen within the window is dropped on send;
* scheduled delivery: `delay_s` is kept as an ordering hint (the local host does not sleep for
  it); a message with `scheduled_enqueue_time_utc` in the future is held apart, not counted by
  `idle()` or `depth()`, and delivered by the first `receive` after that time (the journal
  keeps it across processes: the first command after that time delivers it);
* durability (with a journal): messages outlive the process; one whose consumer died is
  delivered again, and past the maximum deliveries it is dead-lettered ("lock lost").
"""

from __future__ import annotations

import itertools
import json
import random
import threading
import time
from collections.abc import Iterable
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from typing import Any

from shared.adapters.bus_journal import BusJournal
from shared.domain import names
from shared.ports import OutgoingMessage


def utc_now() -> datetime:
    """The wall clock scheduled messages wait for."""
    return datetime.now(UTC)


@dataclass
class Envelope:
    queue: str
    message_id: str
    body: bytes
    properties: dict[str, Any]
    sequence_number: int
    enqueued_at: datetime
    available_at: float
    delivery_count: int = 0
    locked: bool = False  # received and not yet settled
    dead_letter_reason: str | None = None
    dead_letter_error_description: str | None = None
    dead_letter_source: str | None = None
    scheduled_at: datetime | None = None  # not delivered before this time (UTC)

    def json(self) -> Any:
        return json.loads(self.body)


@dataclass
class InProcessBus:
    max_delivery_count: int = 5
    duplicate_window_s: float = 86_400.0  # P1D, as the Bicep gives the Service Bus queues
    dead_letter_forward_to: str | None = names.ALERTS_QUEUE
    queues: dict[str, list[Envelope]] = field(default_factory=dict)
    dead_letters: dict[str, list[Envelope]] = field(default_factory=dict)
    sent_count: dict[str, int] = field(default_factory=dict)
    _seen_ids: dict[tuple[str, str], float] = field(default_factory=dict)
    _in_flight: int = 0
    _sequence: itertools.count = field(default_factory=itertools.count)
    _lock: threading.RLock = field(default_factory=threading.RLock)
    journal: BusJournal | None = None
    scheduled: list[Envelope] = field(default_factory=list)  # not due yet
    # (queue, date) of the scheduled messages released since this process took up the journal:
    # one more that comes due for the same day waits for the next command (or `resync`).
    _released: set[tuple[str, str]] = field(default_factory=set)

    def __post_init__(self) -> None:
        self._load_journal()

    def close(self) -> None:
        """Let go of the journal's file (the messages in it stay)."""
        with self._lock:
            if self.journal is not None:
                self.journal.close()

    def resync(self) -> None:
        """Take up the journal again, as a new process would: what other processes left
        undelivered, the ids they sent, the sequence they reached. Only while idle (`serve`
        calls it when it starts working after another command has had the folder)."""
        with self._lock:
            if self.journal is None or not self.idle():
                return
            self.queues.clear()
            self.scheduled.clear()
            self._released.clear()
            self._seen_ids.clear()
            self._load_journal()

    def _load_journal(self) -> None:
        if self.journal is None:
            return
        now = time.monotonic()
        for queue, message_id, age in self.journal.recent_ids(self.duplicate_window_s):
            self._seen_ids[(queue, message_id)] = now - age
        self._sequence = itertools.count(self.journal.max_seq() + 1)
        for row in self.journal.pending():  # what a previous process left undelivered
            envelope = Envelope(
                queue=row["queue"],
                message_id=row["message_id"],
                body=bytes(row["body"]),
                properties=row["properties"],
                sequence_number=row["seq"],
                enqueued_at=datetime.fromisoformat(row["enqueued_at"]),
                available_at=now,
                delivery_count=row["delivery_count"],
                dead_letter_reason=row["dead_letter_reason"],
                dead_letter_error_description=row["dead_letter_error_description"],
                dead_letter_source=row["dead_letter_source"],
                scheduled_at=datetime.fromisoformat(row["scheduled_at"]) if row.get("scheduled_at") else None,
            )
            self._place(envelope)

    # --- MessageBus port ---
    def send(self, queue: str, messages: Iterable[OutgoingMessage]) -> None:
        now = time.monotonic()
        with self._lock:
            for message in messages:
                key = (queue, message.message_id)
                seen = self._seen_ids.get(key)
                if seen is not None and now - seen < self.duplicate_window_s:
                    continue  # duplicate detection, as Service Bus does within its window
                self._seen_ids[key] = now
                if self.journal is not None:
                    self.journal.sent(queue, message.message_id)
                self._enqueue(
                    Envelope(
                        queue=queue,
                        message_id=message.message_id,
                        body=json.dumps(message.body, default=str).encode(),
                        properties=dict(message.properties),
                        sequence_number=next(self._sequence),
                        enqueued_at=datetime.now(UTC),
                        available_at=now + message.delay_s,
                        scheduled_at=message.scheduled_enqueue_time_utc,
                    )
                )

    def peek(self, queue: str) -> int:
        """From its own state: the in-process bus holds every queue it has (names.QUEUES)."""
        if queue not in names.QUEUES:
            raise KeyError(f"no queue {queue!r}; the queues are {', '.join(names.QUEUES)}")
        with self._lock:
            return min(1, len(self.queues.get(queue, ())))

    def _enqueue(self, envelope: Envelope) -> None:
        if self.journal is not None:
            self.journal.add(envelope)
        self._place(envelope)
        self.sent_count[envelope.queue] = self.sent_count.get(envelope.queue, 0) + 1

    def _place(self, envelope: Envelope) -> None:
        """On its queue, or apart until its scheduled time."""
        if envelope.scheduled_at is not None and envelope.scheduled_at > utc_now():
            self.scheduled.append(envelope)
        else:
            self.queues.setdefault(envelope.queue, []).append(envelope)

    def _release_due(self) -> None:
        """Scheduled messages whose time has come join their queues, one per day and queue
        while this process has the journal: a fetch the API keeps asking to wait a moment is
        rescheduled a moment later each time, and a command delivering each of those would
        never end (issue 23). The next command delivers the one held back."""
        if not self.scheduled:
            return
        now = utc_now()
        due = [e for e in self.scheduled if e.scheduled_at is None or e.scheduled_at <= now]
        for envelope in due:
            day = envelope.properties.get("date")
            key = (envelope.queue, str(day))
            if day is not None and key in self._released:
                continue
            if day is not None:
                self._released.add(key)
            self.scheduled.remove(envelope)
            self.queues.setdefault(envelope.queue, []).append(envelope)

    def scheduled_messages(self, queue: str) -> list[tuple[datetime, Any]]:
        """(time, body) of the messages of `queue` scheduled for later, earliest first."""
        with self._lock:
            return sorted(
                ((e.scheduled_at, e.json()) for e in self.scheduled if e.queue == queue and e.scheduled_at),
                key=lambda item: item[0],
            )

    # --- what the local host uses to play the Functions runtime ---
    def receive(self, queue: str, rng: random.Random | None = None) -> Envelope | None:
        """Lock the next message (earliest available first, or any with `rng`: Service Bus does
        not promise order); None when the queue is empty."""
        with self._lock:
            self._release_due()
            while True:
                pending = self.queues.get(queue)
                if not pending:
                    return None
                if rng is not None:
                    envelope = rng.choice(pending)
                else:
                    envelope = min(pending, key=lambda e: (e.available_at, e.sequence_number))
                pending.remove(envelope)
                if envelope.delivery_count >= self.max_delivery_count:
                    # Its consumer died holding it, past the last allowed delivery.
                    self._dead_letter(
                        envelope, "MaxDeliveryCountExceeded", "lock lost: the process handling it stopped"
                    )
                    continue
                envelope.delivery_count += 1
                envelope.locked = True
                self._in_flight += 1
                if self.journal is not None:
                    self.journal.delivered(envelope)
                return envelope

    def _settle(self, envelope: Envelope) -> None:
        if not envelope.locked:
            raise ValueError(f"message {envelope.message_id} is not locked: it was settled already")
        envelope.locked = False
        self._in_flight -= 1

    def complete(self, envelope: Envelope) -> None:
        with self._lock:
            self._settle(envelope)
            if self.journal is not None:
                self.journal.remove(envelope)

    def give_back(self, envelope: Envelope) -> None:
        """Put the message back as if it had not been received (the user stopped the command
        delivering it): its delivery is not counted, so no number of Ctrl-C dead-letters it."""
        with self._lock:
            self._settle(envelope)
            envelope.delivery_count = max(0, envelope.delivery_count - 1)
            if self.journal is not None:
                self.journal.delivered(envelope)
            self.queues.setdefault(envelope.queue, []).append(envelope)

    def abandon(self, envelope: Envelope, error: str) -> bool:
        """Give the message back; returns True when that dead-lettered it."""
        with self._lock:
            self._settle(envelope)
            if envelope.delivery_count < self.max_delivery_count:
                self.queues.setdefault(envelope.queue, []).append(envelope)
                return False
            self._dead_letter(envelope, "MaxDeliveryCountExceeded", error)
            return True

    def _dead_letter(self, envelope: Envelope, reason: str, description: str) -> None:
        envelope.dead_letter_reason = reason
        envelope.dead_letter_error_description = description[:4096]
        self.dead_letters.setdefault(envelope.queue, []).append(envelope)
        if self.journal is not None:
            self.journal.dead_lettered(envelope)
        target = self.dead_letter_forward_to
        if target and envelope.queue != target:
            forwarded = Envelope(
                queue=target,
                message_id=envelope.message_id,
                body=envelope.body,
                properties={
                    **envelope.properties,
                    "DeadLetterReason": reason,
                    "DeadLetterErrorDescription": envelope.dead_letter_error_description,
                },
                sequence_number=next(self._sequence),
                enqueued_at=datetime.now(UTC),
                available_at=time.monotonic(),
                dead_letter_reason=reason,
                dead_letter_error_description=envelope.dead_letter_error_description,
                dead_letter_source=envelope.queue,
            )
            self._enqueue(forwarded)

    def idle(self) -> bool:
        with self._lock:
            return self._in_flight == 0 and not any(self.queues.values())

    def in_flight(self) -> int:
        """Messages received and not yet settled."""
        with self._lock:
            return self._in_flight

    def queued(self, queue: str, message_id: str) -> bool:
        """A message with this id waits in the queue."""
        with self._lock:
            return any(e.message_id == message_id for e in self.queues.get(queue, ()))

    def depth(self, queue: str) -> int:
        with self._lock:
            return len(self.queues.get(queue, ()))

    def waiting(self, queue: str) -> list[Envelope]:
        """Copies of the messages waiting in `queue`, in queue order: for looking in (tests,
        diagnostics) without reaching into the bus's state; changing them changes nothing."""
        with self._lock:
            return [replace(e, properties=dict(e.properties)) for e in self.queues.get(queue, ())]
