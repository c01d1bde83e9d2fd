"""Event Grid Microsoft.Storage.BlobCreated events, as published locally and on Azure."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from shared.domain import blob_events, names
from shared.domain.blob_events import NotABlobEvent, make_event, parse_event, wanted

RAW = names.RAW_CONTAINER
CRM = names.CRM_CONTAINER

# =========================================================================================
# blob_events: Event Grid Microsoft.Storage.BlobCreated, as published locally and on Azure
# =========================================================================================

MANIFEST = names.manifest_blob(datetime(2024, 5, 1).date(), "run-1")
PAGE = names.page_blob(datetime(2024, 5, 1).date(), "run-1", 1)


def test_event_round_trip() -> None:
    when = datetime(2024, 5, 1, 10, 20, 30, 123456, tzinfo=UTC)
    event = make_event(RAW, MANIFEST, size=321, event_time=when, etag="0xABC")
    json.dumps(event)  # a message body: must be JSON
    parsed = parse_event(event)
    assert parsed is not None
    assert (parsed.container, parsed.name, parsed.size) == (RAW, MANIFEST, 321)
    assert parsed.api == "PutBlob"
    assert parsed.etag == "0xABC"
    assert parsed.event_time == when


def test_event_round_trip_unicode_name() -> None:
    parsed = parse_event(make_event(CRM, "ünï/drop 1.csv", size=0))
    assert parsed is not None
    assert (parsed.container, parsed.name, parsed.size) == (CRM, "ünï/drop 1.csv", 0)


@pytest.mark.parametrize("api", sorted(blob_events.FINISHING_APIS))
def test_event_finishing_apis_parse(api: str) -> None:
    parsed = parse_event(make_event(RAW, MANIFEST, size=5, api=api))
    assert parsed is not None and parsed.api == api and parsed.name == MANIFEST


@pytest.mark.parametrize("api", ["CreateFile", "PutBlock", "AppendBlock", "PutPage", "", "putblob"])
def test_event_unfinished_apis_ignored(api: str) -> None:
    assert parse_event(make_event(RAW, MANIFEST, size=5, api=api)) is None


@pytest.mark.parametrize(
    "event_type",
    [
        "Microsoft.Storage.BlobDeleted",
        "Microsoft.Storage.BlobTierChanged",
        "Microsoft.Storage.DirectoryCreated",
        None,
    ],
)
def test_event_other_types_ignored(event_type: str | None) -> None:
    event = make_event(RAW, MANIFEST, size=5)
    event["eventType"] = event_type
    assert parse_event(event) is None


def test_event_cloudevents_schema() -> None:
    event = make_event(RAW, MANIFEST, size=5)
    event["type"] = event.pop("eventType")
    event["time"] = event.pop("eventTime")
    parsed = parse_event(event)
    assert parsed is not None and parsed.name == MANIFEST


def test_event_batch_of_one_accepted_others_refused() -> None:
    event = make_event(RAW, MANIFEST, size=5)
    parsed = parse_event([event])
    assert parsed is not None and parsed.name == MANIFEST
    with pytest.raises(NotABlobEvent):
        parse_event([event, make_event(RAW, PAGE, size=5)])
    with pytest.raises(NotABlobEvent):
        parse_event([])


@pytest.mark.parametrize("body", ["a string", 42, None, ["not a dict"]], ids=repr)
def test_event_not_an_object_refused(body: Any) -> None:
    with pytest.raises(NotABlobEvent):
        parse_event(body)


@pytest.mark.parametrize(
    "subject",
    [
        "",
        "garbage",
        "/blobServices/default/containers/raw",
        "/blobServices/default/containers/raw/usage/x.json",
        "/blobServices/default/containers//blobs/x.json",
        "/blobServices/default/containers/raw/blobs/",
        "/fileServices/default/shares/raw/files/x.json",
    ],
)
def test_event_malformed_subject_refused(subject: str) -> None:
    event = make_event(RAW, MANIFEST, size=5)
    event["subject"] = subject
    with pytest.raises(NotABlobEvent):
        parse_event(event)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("2024-05-01T10:20:30.1234567Z", datetime(2024, 5, 1, 10, 20, 30, 123456, tzinfo=UTC)),
        ("2024-05-01T10:20:30.5Z", datetime(2024, 5, 1, 10, 20, 30, 500000, tzinfo=UTC)),
        ("2024-05-01T10:20:30Z", datetime(2024, 5, 1, 10, 20, 30, tzinfo=UTC)),
    ],
)
def test_event_time_utc(text: str, expected: datetime) -> None:
    event = make_event(RAW, MANIFEST, size=5)
    event["eventTime"] = text
    parsed = parse_event(event)
    assert parsed is not None
    assert parsed.event_time == expected
    assert parsed.event_time.utcoffset() == timedelta(0)


@pytest.mark.parametrize(
    "text",
    [
        "2024-05-01T12:20:30+02:00",
        "2024-05-01T12:20:30.123+02:00",
        "2024-05-01T12:20:30.123456+02:00",
        "2024-05-01T12:20:30.1234567+02:00",
    ],
)
def test_event_time_with_offset(text: str) -> None:
    event = make_event(RAW, MANIFEST, size=5)
    event["eventTime"] = text
    parsed = parse_event(event)
    assert parsed is not None
    expected = datetime(2024, 5, 1, 10, 20, 30, tzinfo=UTC)
    assert abs(parsed.event_time - expected) < timedelta(seconds=1)


@pytest.mark.parametrize(
    ("container", "name"),
    [
        (RAW, MANIFEST),
        (RAW, names.manifest_blob(datetime(2023, 12, 31).date(), "20231231T235959Z-abc")),
        (CRM, "companies_2024-05-01.csv"),
        (CRM, "sub/folder/any file.txt"),
        (CRM, "manifest.json"),
    ],
)
def test_wanted_accepts(container: str, name: str) -> None:
    assert wanted(container, name)


@pytest.mark.parametrize(
    ("container", "name"),
    [
        (RAW, PAGE),
        (RAW, MANIFEST + ".tmp"),
        (RAW, "usage/2024-05-01/run-1/not-a-manifest.json"),
        (RAW, "other/2024-05-01/run-1/manifest.json"),
        (RAW, "manifest.json"),
        (names.QUARANTINE_CONTAINER, MANIFEST),
        (names.QUARANTINE_CONTAINER, "companies_2024-05-01.csv"),
        ("raw2", MANIFEST),
        ("other", "companies_2024-05-01.csv"),
        (CRM, "folder/"),
    ],
)
def test_wanted_refuses(container: str, name: str) -> None:
    assert not wanted(container, name)
