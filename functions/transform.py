"""`transform` trigger -> fan-in, quality gate and MERGE."""

from __future__ import annotations

import azure.functions as func

from functions._messages import json_body, settle_permanent_errors
from functions._settings import services_for
from shared.domain.transform_plan import TransformRequest
from shared.observability.context import log_context
from shared.services.transform import run_transform


def on_transform(msg: func.ServiceBusMessage) -> None:
    with log_context(stage="transform"), settle_permanent_errors("transform", msg):
        services = services_for("transform")
        request = TransformRequest.from_json(json_body(msg))
        with log_context(date=request.day, run_id=request.run_id):
            run_transform(services, request, holder=msg.message_id or "")
