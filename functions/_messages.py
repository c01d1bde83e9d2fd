"""Reading trigger payloads, and settling a message that can never succeed."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import azure.functions as func

from shared.bootstrap import get_services
from shared.config import settings_of
from shared.domain.alerts import Alert
from shared.domain.errors import PermanentError
from shared.domain.json_input import NotJson, parse_json
from shared.services.alerts import raise_alert

log = logging.getLogger(__name__)


class UnreadableMessage(PermanentError, ValueError):
    """A message body that is not JSON; retrying will not help."""

    kind = "unreadable_message"


def json_body(msg: func.ServiceBusMessage) -> Any:
    try:
        return parse_json(msg.get_body())
    except NotJson as exc:
        raise UnreadableMessage(f"message {msg.message_id} is not JSON: {exc}") from None


@contextmanager
def settle_permanent_errors(stage: str, msg: func.ServiceBusMessage) -> Iterator[None]:
    """Complete a message that can never succeed, with one alert, instead of letting it be
    redelivered until it dead-letters. Any other exception abandons it (redelivery)."""
    try:
        yield
    except PermanentError as exc:
        message = f"{stage}: message {msg.message_id} cannot succeed and was completed: {exc}"
        log.error("%s", message)
        body = msg.get_body()[:2000].decode("utf-8", "replace")
        raise_alert(
            get_services(settings_of("storage", "bus", "alerts")).bus,
            Alert("error", stage, exc.kind, message[:500], detail=f"body: {body}"),
        )
