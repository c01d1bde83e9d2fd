"""`ingest-events` trigger: Event Grid BlobCreated -> the usage or CRM loader."""

from __future__ import annotations

import logging

import azure.functions as func

from functions._messages import json_body
from shared import blob_events, names
from shared.bootstrap import get_services
from shared.staging import load_crm_drop, load_usage_manifest

log = logging.getLogger(__name__)


def on_blob_created(msg: func.ServiceBusMessage) -> None:
    blob = blob_events.parse_event(json_body(msg))
    if blob is None or not blob_events.wanted(blob.container, blob.name):
        log.info("ignored event %s", msg.message_id)
        return
    services = get_services()
    if blob.container == names.CRM_CONTAINER:
        load_crm_drop(services, blob.name)
    else:
        load_usage_manifest(services, blob.name)
