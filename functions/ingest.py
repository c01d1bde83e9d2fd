"""`ingest-events` trigger: Event Grid BlobCreated -> the usage or CRM loader."""

from __future__ import annotations

import azure.functions as func

from functions._messages import json_body, settle_permanent_errors
from functions._settings import services_for
from shared.observability.context import log_context
from shared.services.staging import handle_blob_created


def on_blob_created(msg: func.ServiceBusMessage) -> None:
    # The loader adds the day and the run to the log context once it knows them.
    with log_context(stage="ingest"), settle_permanent_errors("ingest", msg):
        handle_blob_created(services_for("ingest"), json_body(msg), msg.message_id)
