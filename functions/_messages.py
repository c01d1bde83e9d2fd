"""Reading trigger payloads."""

from __future__ import annotations

import json
from typing import Any

import azure.functions as func


class UnreadableMessage(ValueError):
    """A message body that is not JSON; retrying will not help."""


def json_body(msg: func.ServiceBusMessage) -> Any:
    try:
        return json.loads(msg.get_body())
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise UnreadableMessage(f"message {msg.message_id} is not JSON: {exc}") from None
