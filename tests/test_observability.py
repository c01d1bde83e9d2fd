"""What the Functions worker's OpenTelemetry log handler exports from our log lines: the stage,
date and run id as attributes (customDimensions in Application Insights), and no secret."""

from __future__ import annotations

import logging
from collections.abc import Iterator

import pytest
from opentelemetry.sdk._logs import LoggerProvider
from opentelemetry.sdk._logs.export import SimpleLogRecordProcessor

try:  # where azure-monitor-opentelemetry takes its handler from
    from opentelemetry.instrumentation.logging.handler import LoggingHandler
except ImportError:  # older releases
    from opentelemetry.sdk._logs import LoggingHandler  # type: ignore[no-redef]

try:
    from opentelemetry.sdk._logs.export import InMemoryLogRecordExporter as InMemoryExporter
except ImportError:  # older SDKs
    from opentelemetry.sdk._logs.export import InMemoryLogExporter as InMemoryExporter

from shared.config import Settings
from shared.observability.context import bind, log_context
from shared.observability.logs import configure_logging


@pytest.fixture
def exported() -> Iterator[InMemoryExporter]:
    """A handler on the root logger, as the worker installs one before it imports function_app."""
    exporter = InMemoryExporter()
    provider = LoggerProvider()
    provider.add_log_record_processor(SimpleLogRecordProcessor(exporter))
    handler = LoggingHandler(logger_provider=provider)
    root = logging.getLogger()
    level = root.level
    root.addHandler(handler)
    root.setLevel(logging.INFO)
    yield exporter
    root.removeHandler(handler)
    root.setLevel(level)


def test_the_log_context_and_no_secret_reach_application_insights(exported: InMemoryExporter) -> None:
    configure_logging(Settings(usage_api_key="sk-test-9d1e7c55aa"))
    with log_context(stage="fetch", date="2026-11-20"):
        bind(run_id="fetch-20261121T023000-1a2b3c")
        logging.getLogger("shared.services.fetch").info("page 3 answered 401 for key sk-test-9d1e7c55aa")
    [record] = [r.log_record for r in exported.get_finished_logs() if "page 3" in str(r.log_record.body)]
    assert {k: record.attributes[k] for k in ("stage", "date", "run_id")} == {
        "stage": "fetch",
        "date": "2026-11-20",
        "run_id": "fetch-20261121T023000-1a2b3c",
    }
    assert "sk-test-9d1e7c55aa" not in str(record.body)


def test_a_urls_user_info_and_a_webhooks_path_are_redacted() -> None:
    from shared.observability.redact import redact, secret_url_parts

    text = "usage API https://bob:hunter2@api.example.com/v2 failed; mail bob@example.com"
    assert redact(text) == "usage API https://***@api.example.com/v2 failed; mail bob@example.com"
    hook = "https://hooks.example.com/services/T1/B2/s3cret?sig=x1y2&z=1"
    parts = secret_url_parts(hook)
    assert "/services/T1/B2/s3cret" in parts and "sig=x1y2&z=1" in parts
    assert "s3cret" not in redact("POST /services/T1/B2/s3cret failed", parts)
    assert secret_url_parts("") == [] and secret_url_parts("https://host.example") == []
