"""Message bus on Azure Service Bus (azure-servicebus).

Message ids are the caller's (duplicate detection on the queue drops repeats within its
window); application properties carry routing hints; a delay becomes a scheduled enqueue time.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Callable, Iterable
from datetime import UTC, datetime, timedelta
from typing import Any

from shared.config import Settings
from shared.ports import OutgoingMessage


class ServiceBusBus:
    def __init__(self, client: Any, peek_client: Callable[[], Any] | None = None) -> None:
        self.client = client
        # Makes a client of its own for each peek (the health check peeks every queue at once):
        # a peek then neither waits for nor holds the senders' lock.
        self._peek_client = peek_client
        self._senders: dict[str, Any] = {}
        self._lock = threading.Lock()  # a sender is not thread-safe

    @classmethod
    def from_settings(cls, settings: Settings, credential: Any = None) -> ServiceBusBus:
        from azure.servicebus import ServiceBusClient

        if settings.service_bus_connection:
            connection = settings.service_bus_connection
            return cls(
                ServiceBusClient.from_connection_string(connection),
                lambda: ServiceBusClient.from_connection_string(connection),
            )
        if credential is None:
            from azure.identity import DefaultAzureCredential

            credential = DefaultAzureCredential()
        namespace = settings.service_bus_namespace
        return cls(ServiceBusClient(namespace, credential), lambda: ServiceBusClient(namespace, credential))

    def send(self, queue: str, messages: Iterable[OutgoingMessage]) -> None:
        from azure.servicebus import ServiceBusMessage

        now = datetime.now(UTC)
        outgoing = [
            ServiceBusMessage(
                json.dumps(m.body, default=str),
                message_id=m.message_id,
                content_type="application/json",
                application_properties={str(k): v for k, v in m.properties.items()},
                scheduled_enqueue_time_utc=m.scheduled_enqueue_time_utc
                or (now + timedelta(seconds=m.delay_s) if m.delay_s > 0 else None),
            )
            for m in messages
        ]
        if not outgoing:
            return
        with self._lock:
            sender = self._senders.get(queue)
            if sender is None:
                sender = self._senders[queue] = self.client.get_queue_sender(queue)
            batch = sender.create_message_batch()
            for message in outgoing:
                try:
                    batch.add_message(message)
                except ValueError:  # the batch is full: send it and start the next
                    sender.send_messages(batch)
                    batch = sender.create_message_batch()
                    batch.add_message(message)
            sender.send_messages(batch)

    def peek(self, queue: str) -> int:
        """A peek needs the Listen right (Azure Service Bus Data Receiver) and locks nothing:
        no function sees it. On a client of its own when there is a way to make one; the shared
        client is not thread-safe, so a peek on it takes the senders' lock."""
        if self._peek_client is not None:
            with self._peek_client() as client, client.get_queue_receiver(queue, max_wait_time=5) as receiver:
                return len(receiver.peek_messages(max_message_count=1, timeout=5))
        with self._lock, self.client.get_queue_receiver(queue, max_wait_time=5) as receiver:
            return len(receiver.peek_messages(max_message_count=1, timeout=5))

    def close(self) -> None:
        with self._lock:
            for sender in self._senders.values():
                sender.close()
            self._senders.clear()
            self.client.close()
