"""`transform` trigger -> fan-in, quality gate and MERGE."""

from __future__ import annotations

import azure.functions as func

from functions._messages import json_body
from shared.bootstrap import get_services
from shared.log_context import log_context
from shared.transform import TransformRequest, run_transform


def on_transform(msg: func.ServiceBusMessage) -> None:
    body = json_body(msg)
    context = body if isinstance(body, dict) else {}
    with log_context(stage="transform", date=context.get("date"), run_id=context.get("run_id")):
        run_transform(get_services(), TransformRequest.from_json(body))
