"""`transform` trigger -> fan-in, quality gate and MERGE."""

from __future__ import annotations

import azure.functions as func

from functions._messages import json_body
from shared.bootstrap import get_services
from shared.transform import TransformRequest, run_transform


def on_transform(msg: func.ServiceBusMessage) -> None:
    run_transform(get_services(), TransformRequest.from_json(json_body(msg)))
