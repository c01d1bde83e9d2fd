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
from shared.observability.redact import redact


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


KEY = "sk-live-4f9a2c7e1b3d8a6f0c2"
HOOK = "https://hooks.example.com/services/T0123456/B0987654/XQ9fT3kLm2Zp8Rw4Yb6N?sig=abcdef123456"
STORAGE = (
    "DefaultEndpointsProtocol=http;AccountName=devstoreaccount1;AccountKey=Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50"
    "uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw==;BlobEndpoint=http://127.0.0.1:10000/devstoreaccount1;"
)
SQL = "Server=tcp:x.database.windows.net;Database=ca;Uid=app;Pwd=Hunter2Hunter2!;Encrypt=yes"


@pytest.mark.parametrize(
    ("text", "shown"),
    [
        (f"Authorization: Bearer {KEY}", "Authorization: Bearer ***"),
        (f"x-api-key: {KEY[:18]} end", "x-api-key: *** end"),  # 18 of 27 characters
        (f"[{KEY[5:13]}]", "[***]"),  # any 8 characters of it
        (f"[{KEY[5:12]}]", f"[{KEY[5:12]}]"),  # 7 are not a secret
        (f"{KEY[:10]}{KEY[10:]}", "***"),
        ("POST /services/T0123456/B0987654/XQ9fT3kLm2Zp8Rw4Yb6N failed", "POST *** failed"),
        ("token XQ9fT3kLm2Zp8R", "token ***"),
        ("AccountKey Eby8vdM02xNOcqFl", "AccountKey ***"),
        ("login Hunter2Hunter", "login ***"),
        ("http://svc:s3cretpassw0rd@h:1/v2 Basic c3ZjOnMzY3JldHBhc3N3MHJk", "http://***@h:1/v2 Basic ***"),
        # What the secrets share with ordinary text is not a secret.
        (
            "https://hooks.example.com/services/ http://127.0.0.1:10000/x shared/services/fetch.py basic English",
            "https://hooks.example.com/services/ http://127.0.0.1:10000/x shared/services/fetch.py basic English",
        ),
    ],
)
def test_every_piece_of_a_secret_of_8_characters_is_redacted(text: str, shown: str) -> None:
    from shared.observability.redact import redact

    secrets = [KEY, HOOK, STORAGE, SQL, "http://svc:s3cretpassw0rd@h:1"]
    assert redact(text, secrets) == shown


def test_settings_count_a_password_in_the_api_url_as_a_secret() -> None:
    settings = Settings(usage_api_base_url="https://svc:pw@api.example.com", usage_api_key=KEY)
    assert "http://svc:pw@" in settings.secrets()  # the user-info, not the host or path
    assert Settings.secret_values({"USAGE_API_BASE_URL": "https://api.example.com/a@b"}) == []
    assert Settings.secret_values({"USAGE_API_BASE_URL": "https://svc:pw@h"}) == ["http://svc:pw@"]


def test_a_password_in_the_api_url_hides_itself_not_the_url_around_it() -> None:
    # A wrong path is the whole problem in "no such path": it must stay readable.
    url = "http://bob:Sup3rS3cretPw0rd@127.0.0.1:18519/nope"
    secrets = Settings(usage_api_base_url=url).secrets()
    shown = redact(f"GET {url}/v2/usage answered 404: no such path: /nope/v2/usage", secrets)
    assert shown == "GET http://***@127.0.0.1:18519/nope/v2/usage answered 404: no such path: /nope/v2/usage"
    # An unparsable host (a broken IPv6 literal) still hides the password, and only it.
    broken = "https://user:s3cretpassw0rd@[::1"
    assert redact(f"got {broken!r}", Settings.secret_values({"USAGE_API_BASE_URL": broken})) == (
        "got 'https://***@[::1'"
    )


def test_printed_output_is_redacted_and_cannot_drive_the_terminal() -> None:
    import io

    from shared.observability.redact import RedactingWriter

    sink = io.StringIO()
    out = RedactingWriter(sink, [KEY])
    print(f"key {KEY[:4]}", end="", file=out)
    print(f"{KEY[4:]} \x1b[31mred\u202e", file=out)
    print("progress", end="", file=out, flush=True)
    assert sink.getvalue() == "key *** \\x1b[31mred\\u202e\nprogress"
