"""`ingest-events` trigger: Event Grid BlobCreated -> the usage or CRM loader."""

from __future__ import annotations

import azure.functions as func

from functions._messages import json_body
from shared.bootstrap import get_services
from shared.log_context import log_context
from shared.staging import handle_blob_created


def on_blob_created(msg: func.ServiceBusMessage) -> None:
    with log_context(stage="ingest"):  # the loader adds the day and run once it knows them
        handle_blob_created(get_services(), json_body(msg), msg.message_id)
